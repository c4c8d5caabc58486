"""Payments: record one, refund one."""

from __future__ import annotations

import strawberry

from infra import events
from jobs import dispatch
from models import payments
from models.errors import DomainError
from schema.context import Info
from schema.errors import user_error
from schema.invoices import Invoice
from schema.nodes import node_uuid
from schema.payments import (
    Payment,
    PaymentRecorded,
    PaymentRefunded,
    RecordPaymentInput,
    RecordPaymentPayload,
    Refund,
    RefundPaymentInput,
    RefundPaymentPayload,
)
from schema.permissions import OWNERS, requires


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Record money received against an approved invoice. Partial payments add up "
        "(PARTIALLY_PAID, then PAID); more than the amount due is refused (AmountExceededError).",
        extensions=requires(*OWNERS),
    )
    async def record_payment(self, info: Info, input: RecordPaymentInput) -> RecordPaymentPayload:
        try:
            done = await payments.record_payment(
                info.context.principal, node_uuid(input.invoice_id, "Invoice"), amount=input.amount,
                paid_on=input.paid_on, method=input.method, reference=input.reference,
            )
        except DomainError as exc:
            return user_error(_field(exc, "invoiceId"))
        await events.publish(info.context.redis, [done.invoice])
        return PaymentRecorded(
            payment=Payment.from_model(done.payment, done.invoice.currency), invoice=Invoice.from_model(done.invoice)
        )

    @strawberry.mutation(
        description="Return all or part of a payment (PARTIALLY_REFUNDED, or REFUNDED once all that was "
        "paid went back). The amount due does not change: a refund does not reopen the invoice.",
        extensions=requires(*OWNERS),
    )
    async def refund_payment(self, info: Info, input: RefundPaymentInput) -> RefundPaymentPayload:
        try:
            done = await payments.refund_payment(
                info.context.principal, node_uuid(input.payment_id, "Payment"), amount=input.amount,
                refunded_on=input.refunded_on, reason=input.reason,
            )
        except DomainError as exc:
            return user_error(_field(exc, "paymentId"))
        await events.publish(info.context.redis, [done.invoice])
        if input.notify_customer:
            await dispatch.enqueue_notification(info.context.redis, done.invoice.id, "refunded", done.refund.id)
        return PaymentRefunded(
            refund=Refund.from_model(done.refund, done.invoice.currency), invoice=Invoice.from_model(done.invoice)
        )


def _field(exc: DomainError, id_field: str) -> DomainError:
    # node_uuid names its field "id"; in these inputs the id is `invoiceId` or `paymentId`.
    if exc.field == "id":
        exc.field = id_field
    return exc
