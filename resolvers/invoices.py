"""Invoices: the list with its filters, and one invoice by number."""

from __future__ import annotations

import strawberry

from jobs import dispatch
from models import invoices
from models.errors import DomainError, NotFound
from models.invoices import DeliveryStatus, actions
from schema.context import Info
from schema.errors import ValidationError, user_error
from schema.invoices import (
    BulkInvoicePayload,
    Invoice,
    InvoiceActionResult,
    InvoiceActionResults,
    InvoiceConnection,
    InvoiceFilter,
    InvoiceOrder,
    InvoiceOrderField,
    InvoiceResendQueued,
    ResendInvoicePayload,
)
from schema.nodes import node_uuid
from schema.pagination import Direction, paginate
from schema.permissions import ANY_USER, OWNERS, requires


def invoice_query(where: InvoiceFilter | None) -> invoices.InvoiceQuery:
    if where is None:
        return invoices.InvoiceQuery()
    return invoices.InvoiceQuery(
        statuses=where.status, payment_statuses=where.payment_status,
        account_ids=_account_ids(where.account_ids), period_from=where.period_from,
        period_to=where.period_to, issued_from=where.issued_from, issued_to=where.issued_to,
        preset=where.preset, search=where.search,
    )


def _account_ids(ids: list[str] | None):
    """Account ids of the filter; an id that is malformed or of another type matches nothing."""
    if ids is None:
        return None
    valid = []
    for global_id in ids:
        try:
            valid.append(node_uuid(global_id, "ManagedAccount"))
        except NotFound:
            continue
    return valid


@strawberry.type
class Query:
    @strawberry.field(
        description="Invoices visible to you: your organization's, or (for a customer) your "
        "approved ones.",
        extensions=requires(*ANY_USER),
    )
    async def invoices(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
        filter: InvoiceFilter | None = None, order_by: InvoiceOrder | None = None,
    ) -> InvoiceConnection:
        principal = info.context.principal
        today = invoices.organization_today(principal.user.organization.timezone)
        query = invoices.filter_invoices(invoices.visible_invoices(principal), invoice_query(filter), today)
        order = order_by or InvoiceOrder(field=InvoiceOrderField.CREATED_AT, direction=Direction.DESC)
        return await paginate(
            info,
            InvoiceConnection, query, Invoice.from_model,
            order, first=first, after=after, last=last, before=before,
        )

    @strawberry.field(
        description="One invoice by its number (INV-2026-0042); null when not visible.",
        extensions=requires(*ANY_USER),
    )
    async def invoice(self, info: Info, number: str) -> Invoice | None:
        row = await invoices.visible_invoices(info.context.principal).get_or_none(number=number.strip())
        return Invoice.from_model(row) if row else None


def invoice_ids(ids: list[strawberry.ID]) -> list:
    """Database ids of invoice global ids; a malformed one (or of another type) is None,
    so that it fails alone, as not found."""
    decoded = []
    for gid in ids:
        try:
            decoded.append(node_uuid(gid, "Invoice"))
        except NotFound:
            decoded.append(None)
    return decoded


def _results(outcomes) -> InvoiceActionResults:
    return InvoiceActionResults(results=[
        InvoiceActionResult(
            id=gid, invoice=Invoice.from_model(o.invoice) if o.invoice else None,
            error=user_error(o.error) if o.error else None,
        )
        for gid, o in outcomes
    ])


async def _bulk(info: Info, ids: list[strawberry.ID], operation) -> BulkInvoicePayload:
    """Decode the ids (a bad one fails alone, as not found), run the domain operation, map."""
    if len(ids) > actions.MAX_BULK:
        return ValidationError(code="INVALID", message=f"At most {actions.MAX_BULK} ids at once.", field="ids")
    outcomes = await operation(info.context.principal, invoice_ids(ids))
    return _results(list(zip(ids, outcomes)))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Generate invoices that are ready to invoice: each moves to GENERATING and "
        "its PDF is made in the background.",
        extensions=requires(*OWNERS),
    )
    async def generate_invoices(self, info: Info, ids: list[strawberry.ID]) -> BulkInvoicePayload:
        payload = await _bulk(info, ids, lambda p, d: actions.request_generation(p, d, regenerate=False))
        await _enqueue_generated(info, payload)
        return payload

    @strawberry.mutation(
        description="Generate again invoices awaiting approval or in error (same number, new "
        "revision). Approved invoices cannot be regenerated.",
        extensions=requires(*OWNERS),
    )
    async def regenerate_invoices(self, info: Info, ids: list[strawberry.ID]) -> BulkInvoicePayload:
        payload = await _bulk(info, ids, lambda p, d: actions.request_generation(p, d, regenerate=True))
        await _enqueue_generated(info, payload)
        return payload

    @strawberry.mutation(
        description="Approve invoices awaiting approval and e-mail them to the billing e-mails. "
        "Approved invoices never change. Approving twice is harmless.",
        extensions=requires(*OWNERS),
    )
    async def approve_invoices(self, info: Info, ids: list[strawberry.ID]) -> BulkInvoicePayload:
        payload = await _bulk(info, ids, actions.approve)
        if isinstance(payload, InvoiceActionResults):
            for result in payload.results:
                if result.invoice and result.invoice.model.delivery_status == DeliveryStatus.QUEUED:
                    await dispatch.enqueue_send(info.context.redis, result.invoice.model.id)
        return payload

    @strawberry.mutation(description="E-mail an approved invoice again.", extensions=requires(*OWNERS))
    async def resend_invoice(self, info: Info, id: strawberry.ID) -> ResendInvoicePayload:
        try:
            invoice = await actions.request_resend(info.context.principal, node_uuid(id, "Invoice"))
        except DomainError as exc:
            return user_error(exc)
        await dispatch.enqueue_send(info.context.redis, invoice.id, attempt=str(invoice.updated_at.timestamp()))
        return InvoiceResendQueued(invoice=Invoice.from_model(invoice))


async def _enqueue_generated(info: Info, payload) -> None:
    if isinstance(payload, InvoiceActionResults):
        await dispatch.enqueue_generation(
            info.context.redis, [r.invoice.model.id for r in payload.results if r.invoice]
        )
