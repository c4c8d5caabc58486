"""Invoices: the list with its filters, and one invoice by number."""

from __future__ import annotations

import strawberry

from models import invoices
from models.errors import NotFound
from schema.context import Info
from schema.invoices import Invoice, InvoiceConnection, InvoiceFilter, InvoiceOrder, InvoiceOrderField
from schema.nodes import node_uuid
from schema.pagination import Direction, order_fields, paginate
from schema.permissions import ANY_USER, requires


def _conditions(where: InvoiceFilter | None) -> invoices.InvoiceQuery:
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
        query = invoices.filter_invoices(invoices.visible_invoices(principal), _conditions(filter), today)
        order = order_by or InvoiceOrder(field=InvoiceOrderField.CREATED_AT, direction=Direction.DESC)
        return await paginate(
            InvoiceConnection, query, Invoice.from_model,
            order_by=order_fields(order.field.value, order.direction),
            max_page_size=info.context.settings.max_page_size,
            first=first, after=after, last=last, before=before,
        )

    @strawberry.field(
        description="One invoice by its number (INV-2026-0042); null when not visible.",
        extensions=requires(*ANY_USER),
    )
    async def invoice(self, info: Info, number: str) -> Invoice | None:
        row = await invoices.visible_invoices(info.context.principal).get_or_none(number=number.strip())
        return Invoice.from_model(row) if row else None
