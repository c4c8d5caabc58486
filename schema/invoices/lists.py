"""What the invoice list takes and mutations and subscriptions answer: the page, its order
and filter, bulk results and the live status event."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from models import invoices as domain
from schema.core.context import Info
from schema.core.errors import ConflictError, InvalidTransitionError, NotFoundError, UserError, ValidationError
from schema.core.nodes import filter_uuids
from schema.core.pagination import CountedConnection, Direction, order_fields, page_of, paginate, sibling_page
from schema.core.scalars import Month
from schema.invoices.enums import DeliveryStatus, InvoiceDatePreset, InvoiceDisplayStatus, InvoiceStatus, PaymentStatus
from schema.invoices.parts import InvoiceItem
from schema.invoices.types import Invoice, prefetch


@strawberry.type(description="An invoice changed (any process, any cause): its statuses right after the "
                 "change, and the invoice as it is now.")
class InvoiceStatusEvent:
    status: InvoiceStatus = strawberry.field(description="Lifecycle status after the change.")
    payment_status: PaymentStatus = strawberry.field(description="Payment status after the change.")
    delivery_status: DeliveryStatus = strawberry.field(description="Delivery status after the change.")
    at: datetime = strawberry.field(description="When the change was made.")
    delivery: strawberry.Private[Any]

    @classmethod
    def from_delivery(cls, delivery: Any) -> InvoiceStatusEvent:
        change = delivery.change
        return cls(
            status=domain.InvoiceStatus(change.status), payment_status=domain.PaymentStatus(change.payment_status),
            delivery_status=domain.DeliveryStatus(change.delivery_status), at=datetime.fromisoformat(change.at),
            delivery=delivery,
        )

    @strawberry.field(description="The invoice as it is now (read once per event for all subscribers).")
    def invoice(self) -> Invoice:
        return Invoice.from_model(self.delivery.invoice)


@strawberry.type(description="A page of invoices.")
class InvoiceConnection(CountedConnection[Invoice]):
    @classmethod
    async def of_account(
        cls, info: Info, account_id: Any, where: InvoiceFilter | None, order_by: InvoiceOrder | None,
        first: int | None, after: str | None, last: int | None, before: str | None,
    ) -> InvoiceConnection:
        """`ManagedAccount.invoices`: the `invoices` list within one account (`account_id` None:
        an account the filter's `accountIds` leave out). Pages by `first`/`after` load with
        the same page of every other account of the request: a constant number of statements
        for a list of accounts. Pages by `last`/`before` are fetched one account at a time."""
        query, order = listed_invoices(info, replace(where, account_ids=None) if where else None, order_by)
        page = sibling_page(info, first, after, last, before)
        if page is None:
            query = query.filter(managed_account_id__in=[account_id] if account_id else [])
            connection = await paginate(
                info, cls, query, Invoice.from_model, order,
                first=first, after=after, last=last, before=before,
            )
        else:
            total, rows = 0, []
            if account_id is not None:
                pages = info.context.loaders.pages(
                    query, "managed_account_id", order_fields(order.field.value, order.direction), *page
                )
                total, rows = await pages.load(account_id)
            connection = page_of(info, cls, total, rows, Invoice.from_model, first, after)
        await prefetch(info, [edge.node for edge in connection.edges])
        return connection


@strawberry.enum(description="What invoices can be sorted by.")
class InvoiceOrderField(Enum):
    ISSUE_DATE = "issue_date"
    DUE_DATE = "due_date"
    NUMBER = "number"
    TOTAL = "total"
    STATUS = "status"
    CREATED_AT = "created_at"


@strawberry.input(description="Sort order of invoices.")
class InvoiceOrder:
    field: InvoiceOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.DESC, description="Direction.")


@strawberry.input(description="Narrow the invoice list; every condition given must hold.")
class InvoiceFilter:
    status: list[InvoiceStatus] | None = strawberry.field(default=None, description="Any of these statuses.")
    payment_status: list[PaymentStatus] | None = strawberry.field(
        default=None, description="Any of these payment statuses."
    )
    display_status: list[InvoiceDisplayStatus] | None = strawberry.field(
        default=None, description="Any of these display statuses (as `Invoice.displayStatus` maps them)."
    )
    account_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Any of these managed accounts."
    )
    period_from: Month | None = strawberry.field(default=None, description="Billed months from.")
    period_to: Month | None = strawberry.field(default=None, description="Billed months up to.")
    issued_from: date | None = strawberry.field(default=None, description="Issued on or after.")
    issued_to: date | None = strawberry.field(default=None, description="Issued on or before.")
    preset: InvoiceDatePreset | None = strawberry.field(default=None, description="Issue date range preset.")
    search: str | None = strawberry.field(
        default=None, description="Part of an invoice number or of the customer's name."
    )


@strawberry.type(description="The outcome for one id of a bulk request.")
class InvoiceActionResult:
    id: strawberry.ID = strawberry.field(description="The id as given.")
    invoice: Invoice | None = strawberry.field(description="The invoice after the action, if it succeeded.")
    error: UserError | None = strawberry.field(description="Why the action did not happen for this id.")


@strawberry.type(description="Per-id outcomes of a bulk invoice action, in the order of the ids.")
class InvoiceActionResults:
    results: list[InvoiceActionResult] = strawberry.field(description="One entry per id.")

    @strawberry.field(description="How many ids succeeded.")
    def succeeded(self) -> int:
        return sum(1 for r in self.results if r.error is None)


BulkInvoicePayload = Annotated[
    InvoiceActionResults | ValidationError | ConflictError,
    strawberry.union("BulkInvoicePayload", description="Per-id outcomes, or why the request was refused."),
]


@strawberry.type(description="The invoice's e-mail was queued again.")
class InvoiceResendQueued:
    invoice: Invoice = strawberry.field(description="The invoice.")


@strawberry.type(description="The voided invoice's replacement was created and is being generated.")
class InvoiceReissued:
    invoice: Invoice = strawberry.field(description="The replacement, GENERATING; numbered when generated.")
    replaced: Invoice = strawberry.field(description="The voided invoice it replaces.")


ReissueInvoicePayload = Annotated[
    InvoiceReissued | NotFoundError | InvalidTransitionError | ConflictError,
    strawberry.union("ReissueInvoicePayload", description="The result of `reissueInvoice`."),
]


@strawberry.type(
    description="The invoice changed; one that was generated already is being generated again "
    "(GENERATING) so that its totals and PDF hold the change."
)
class InvoiceChanged:
    invoice: Invoice = strawberry.field(description="The invoice.")
    item: InvoiceItem | None = strawberry.field(description="The one-off item added or changed, if any.")


InvoiceChangePayload = Annotated[
    InvoiceChanged | NotFoundError | InvalidTransitionError | ValidationError | ConflictError,
    strawberry.union(
        "InvoiceChangePayload",
        description="The result of `setInvoiceMemo`, `addInvoiceItem`, `updateInvoiceItem`, `removeInvoiceItem` "
        "and `cancelQueuedInvoice`.",
    ),
]


ResendInvoicePayload = Annotated[
    InvoiceResendQueued | NotFoundError | InvalidTransitionError | ConflictError,
    strawberry.union("ResendInvoicePayload", description="The result of `resendInvoice`."),
]


# The invoice list, as `invoices` and `ManagedAccount.invoices` read it.


def invoice_query(where: InvoiceFilter | None) -> domain.InvoiceQuery:
    if where is None:
        return domain.InvoiceQuery()
    return domain.InvoiceQuery(
        statuses=where.status, payment_statuses=where.payment_status,
        account_ids=filter_uuids(where.account_ids, "ManagedAccount"), period_from=where.period_from,
        period_to=where.period_to, issued_from=where.issued_from, issued_to=where.issued_to,
        preset=where.preset, search=where.search, display_statuses=where.display_status,
    )


def listed_invoices(info: Info, where: InvoiceFilter | None, order_by: InvoiceOrder | None):
    """The invoices of the list the viewer may see, filtered, and their order."""
    principal = info.context.authenticated()
    today = domain.organization_today(principal.user.organization.timezone)
    query = domain.filter_invoices(domain.visible_invoices(principal), invoice_query(where), today)
    return query, order_by or InvoiceOrder(field=InvoiceOrderField.CREATED_AT, direction=Direction.DESC)


async def period_invoices(
    info: Info, period_id: Any, where: InvoiceFilter | None, order_by: InvoiceOrder | None,
    first: int | None, after: str | None, last: int | None, before: str | None,
) -> InvoiceConnection:
    """`BillingPeriod.invoices`: the `invoices` list within one month."""
    query, order = listed_invoices(info, where, order_by)
    connection = await paginate(
        info, InvoiceConnection, query.filter(billing_period_id=period_id), Invoice.from_model, order,
        first=first, after=after, last=last, before=before,
    )
    await prefetch(info, [edge.node for edge in connection.edges])
    return connection
