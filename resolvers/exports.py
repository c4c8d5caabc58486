"""Exports: invoices as Xero or detailed CSV behind a signed link, and the export settings."""

from __future__ import annotations

import strawberry

from infra import links
from models import exports, invoices
from models.errors import DomainError
from resolvers.invoices import invoice_ids, invoice_query
from schema.context import Info
from schema.errors import user_error
from schema.exports import (
    ExportFormat,
    ExportInvoicesPayload,
    ExportSettingsUpdated,
    InvoiceExport,
    UpdateExportSettingsPayload,
)
from schema.invoices import InvoiceFilter
from schema.organizations import ExportDateFormat, Organization
from schema.permissions import MSP_USERS, OWNERS, requires


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Export approved invoices, chosen by `ids` or by `filter` (give one), as a "
        "CSV file (or a zip of them) behind a signed link valid for a few minutes. Drafts are "
        "never exported.",
        extensions=requires(*MSP_USERS),
    )
    async def export_invoices(
        self, info: Info, format: ExportFormat, ids: list[strawberry.ID] | None = None,
        filter: InvoiceFilter | None = None,
    ) -> ExportInvoicesPayload:
        principal = info.context.principal
        today = invoices.organization_today(principal.user.organization.timezone)
        chosen = None if ids is None else invoice_ids(ids)
        where = None if filter is None else invoice_query(filter)
        try:
            file = await exports.export_invoices(principal, format, ids=chosen, where=where, today=today)
        except DomainError as exc:
            return user_error(exc)
        link = links.publish_export(info.context.settings, principal, file.filename, file.data)
        return InvoiceExport(
            url=link.url, filename=file.filename, invoice_count=file.invoice_count, expires_at=link.expires_at
        )

    @strawberry.mutation(
        description="Set how exports write dates, for the whole organization.", extensions=requires(*OWNERS)
    )
    async def update_export_settings(self, info: Info, date_format: ExportDateFormat) -> UpdateExportSettingsPayload:
        organization = await exports.set_date_format(info.context.principal, date_format)
        return ExportSettingsUpdated(organization=Organization.from_model(organization))
