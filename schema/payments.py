"""GraphQL types of payments and refunds, and the payloads of recording them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry import relay

from models import User as UserModel
from models import payments as domain
from models.currencies import round_money
from schema.core.context import Info
from schema.core.errors import AmountExceededError, ConflictError, InvalidTransitionError, NotFoundError, ValidationError
from schema.core.nodes import scoped_nodes
from schema.core.permissions import MSP_USERS, requires

# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
PaymentMethod = domain.PaymentMethod
strawberry.enum(PaymentMethod, description="How a payment was made.")

_PAYMENT_COLUMNS = ("id", "invoice_id", "amount", "paid_on", "method", "reference", "recorded_by_id", "created_at")
_REFUND_COLUMNS = ("id", "invoice_id", "payment_id", "amount", "refunded_on", "reason", "recorded_by_id", "created_at")


@strawberry.type(description="Money moved on an invoice: what payments and refunds share.")
class _Entry:
    amount: Decimal = strawberry.field(description="The amount, in the invoice currency.")
    currency: str = strawberry.field(description="The invoice currency (ISO 4217).")
    created_at: datetime = strawberry.field(description="When it was recorded.")
    row: strawberry.Private[dict]

    @strawberry.field(description="Who recorded it (e-mail); null once that user is gone.", extensions=requires(*MSP_USERS))
    async def recorded_by(self, info: Info) -> str | None:
        user = await info.context.loaders.by_id(UserModel).load(self.row["recorded_by_id"])
        return user.email if user else None


@strawberry.type(name="Payment", description="Money received against an invoice.")
class Payment(_Entry, relay.Node):
    id: relay.NodeID[str]
    paid_on: date = strawberry.field(description="The day the money was received.")
    method: PaymentMethod = strawberry.field(description="How it was paid.")

    @classmethod
    def from_row(cls, row: dict, currency: str) -> Payment:
        return cls(
            id=str(row["id"]), amount=round_money(row["amount"], currency), currency=currency,
            paid_on=row["paid_on"], method=row["method"], created_at=row["created_at"], row=row,
        )

    @classmethod
    def from_model(cls, payment: domain.Payment, currency: str | None = None) -> Payment:
        """`currency` is the invoice's, when the payment was loaded without its invoice."""
        return cls.from_row({c: getattr(payment, c) for c in _PAYMENT_COLUMNS}, currency or payment.invoice.currency)

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, domain.visible_payments)

    @strawberry.field(description="The bank or card reference, for reconciliation.", extensions=requires(*MSP_USERS))
    def reference(self) -> str:
        return self.row["reference"]


@strawberry.type(name="Refund", description="Money returned to the customer from one payment.")
class Refund(_Entry, relay.Node):
    id: relay.NodeID[str]
    refunded_on: date = strawberry.field(description="The day the money was returned.")

    @classmethod
    def from_row(cls, row: dict, currency: str) -> Refund:
        return cls(
            id=str(row["id"]), amount=round_money(row["amount"], currency), currency=currency,
            refunded_on=row["refunded_on"], created_at=row["created_at"], row=row,
        )

    @classmethod
    def from_model(cls, refund: domain.Refund, currency: str | None = None) -> Refund:
        """`currency` is the invoice's, when the refund was loaded without its invoice."""
        return cls.from_row({c: getattr(refund, c) for c in _REFUND_COLUMNS}, currency or refund.invoice.currency)

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, domain.visible_refunds)

    @strawberry.field(description="The payment it returns money from.")
    async def payment(self, info: Info) -> Payment:
        row = await info.context.loaders.by_id(domain.Payment).load(self.row["payment_id"])
        return Payment.from_model(row, self.currency)

    @strawberry.field(description="Why the money was returned (internal).", extensions=requires(*MSP_USERS))
    def reason(self) -> str:
        return self.row["reason"]


@strawberry.input(description="A payment received against an approved invoice.")
class RecordPaymentInput:
    invoice_id: strawberry.ID = strawberry.field(description="The invoice paid.")
    amount: Decimal = strawberry.field(
        description="Amount received, positive, with at most the currency's minor units; at most the amount due."
    )
    paid_on: date = strawberry.field(description="The day the money was received (not in the future).")
    method: PaymentMethod = strawberry.field(description="How it was paid.")
    reference: str = strawberry.field(default="", description="Bank or card reference (internal, up to 255 characters).")


@strawberry.input(description="Money to return from one payment.")
class RefundPaymentInput:
    payment_id: strawberry.ID = strawberry.field(description="The payment to refund from.")
    amount: Decimal = strawberry.field(
        description="Amount to return: positive, at most what is left of the payment after earlier refunds."
    )
    refunded_on: date = strawberry.field(description="The day the money was returned (not before the payment, not in the future).")
    reason: str = strawberry.field(default="", description="Why (internal, up to 1024 characters).")
    notify_customer: bool = strawberry.field(
        default=True, description="E-mail the account's billing e-mails about the refund."
    )


# Named, not imported: schema.invoices imports this module (an invoice's payments).
InvoiceRef = Annotated["Invoice", strawberry.lazy("schema.invoices")]  # type: ignore[name-defined]  # noqa: F821


@strawberry.type(description="The payment was recorded.")
class PaymentRecorded:
    payment: Payment = strawberry.field(description="The new payment.")
    invoice: InvoiceRef = strawberry.field(description="The invoice with its new amounts and payment status.")


@strawberry.type(description="The refund was recorded.")
class PaymentRefunded:
    refund: Refund = strawberry.field(description="The new refund.")
    invoice: InvoiceRef = strawberry.field(description="The invoice with its new amounts and payment status.")


RecordPaymentPayload = Annotated[
    PaymentRecorded | AmountExceededError | ValidationError | NotFoundError | InvalidTransitionError | ConflictError,
    strawberry.union("RecordPaymentPayload", description="The result of `recordPayment`."),
]
RefundPaymentPayload = Annotated[
    PaymentRefunded | AmountExceededError | ValidationError | NotFoundError | InvalidTransitionError | ConflictError,
    strawberry.union("RefundPaymentPayload", description="The result of `refundPayment`."),
]
