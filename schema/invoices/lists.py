"""What the invoice list takes and mutations and subscriptions answer: the page, its order
and filter, bulk results and the live status event."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from models import invoices as domain
from schema.errors import InvalidTransitionError, NotFoundError, UserError, ValidationError
from schema.invoices.types import DeliveryStatus, Invoice, InvoiceDatePreset, InvoiceStatus, PaymentStatus
from schema.pagination import CountedConnection, Direction
from schema.scalars import Month


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
    pass


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
    InvoiceActionResults | ValidationError,
    strawberry.union("BulkInvoicePayload", description="Per-id outcomes, or why the request was refused."),
]


@strawberry.type(description="The invoice's e-mail was queued again.")
class InvoiceResendQueued:
    invoice: Invoice = strawberry.field(description="The invoice.")


ResendInvoicePayload = Annotated[
    InvoiceResendQueued | NotFoundError | InvalidTransitionError,
    strawberry.union("ResendInvoicePayload", description="The result of `resendInvoice`."),
]
