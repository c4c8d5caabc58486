"""Exports: invoices as Xero or detailed CSV behind a signed link, and the export settings."""

from __future__ import annotations

import asyncio

import strawberry

from infra import links, storage
from models import exports, invoices
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid_or_none
from schema.core.permissions import MSP_USERS, OWNERS
from schema.exports import (
    ExportFormat,
    ExportInvoicesPayload,
    ExportSettingsUpdated,
    InvoiceExport,
    UpdateExportSettingsPayload,
)
from schema.invoices import InvoiceFilter, invoice_query
from schema.organizations import ExportDateFormat, Organization


@strawberry.type
class Mutation:
    @mutation(
        description="Export approved invoices, chosen by `ids` or by `filter` (give one), as a "
        "CSV file (or a zip of them; with the invoices' credit notes as a second file) behind a signed link "
        "valid for a few minutes. Drafts are never exported.",
        scopes=MSP_USERS,
    )
    async def export_invoices(
        self, info: Info, format: ExportFormat, ids: list[strawberry.ID] | None = None,
        filter: InvoiceFilter | None = None,
    ) -> ExportInvoicesPayload:
        principal = info.context.authenticated()
        today = invoices.organization_today(principal.user.organization.timezone)
        # A malformed id (or one of another type) fails alone, as not found.
        chosen = None if ids is None else [node_uuid_or_none(gid, "Invoice") for gid in ids]
        where = None if filter is None else invoice_query(filter)
        file = await exports.export_invoices(principal, format, ids=chosen, where=where, today=today)
        link = await asyncio.to_thread(links.publish_export, info.context.settings, principal, file.filename, file.data)
        return InvoiceExport(
            url=link.url, filename=file.filename, invoice_count=file.invoice_count,
            credit_note_count=file.credit_note_count, expires_at=link.expires_at,
        )

    @mutation(
        description="A zip of the PDFs of invoices chosen by `ids` (each must have been generated) "
        "or by `filter` (those generated), named by number, behind a signed link valid for a few minutes.",
        scopes=MSP_USERS,
    )
    async def download_invoice_pdfs(
        self, info: Info, ids: list[strawberry.ID] | None = None, filter: InvoiceFilter | None = None,
    ) -> ExportInvoicesPayload:
        principal = info.context.authenticated()
        today = invoices.organization_today(principal.user.organization.timezone)
        chosen = None if ids is None else [node_uuid_or_none(gid, "Invoice") for gid in ids]
        where = None if filter is None else invoice_query(filter)
        documents = await exports.invoice_pdfs(principal, ids=chosen, where=where, today=today)
        settings = info.context.settings
        files = [(document.filename, document.stored) for document in documents]
        data = await asyncio.to_thread(storage.zipped, settings, files)
        filename = f"invoices-{today:%Y%m%d}.zip"
        link = await asyncio.to_thread(links.publish_export, settings, principal, filename, data)
        return InvoiceExport(url=link.url, filename=filename, invoice_count=len(documents), expires_at=link.expires_at)

    @mutation(
        description="Set how exports write dates, for the whole organization.", scopes=OWNERS,
    )
    async def update_export_settings(self, info: Info, date_format: ExportDateFormat) -> UpdateExportSettingsPayload:
        organization = await exports.set_date_format(info.context.principal, date_format)
        return ExportSettingsUpdated(organization=Organization.from_model(organization))
