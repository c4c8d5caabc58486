"""Payments: record one, refund one."""

from __future__ import annotations

import strawberry

from models import payments
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid
from schema.core.permissions import OWNERS
from schema.invoices import Invoice
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


@strawberry.type
class Mutation:
    @mutation(
        description="Record money received against an approved invoice. Partial payments add up "
        "(PARTIALLY_PAID, then PAID); more than the amount due is refused (AmountExceededError).",
        scopes=OWNERS, idempotent=True,
    )
    async def record_payment(self, info: Info, input: RecordPaymentInput) -> RecordPaymentPayload:
        done = await payments.record_payment(
            info.context.principal, node_uuid(input.invoice_id, "Invoice", field="invoiceId"), amount=input.amount,
            paid_on=input.paid_on, method=input.method, reference=input.reference,
        )
        return PaymentRecorded(
            payment=Payment.from_model(done.payment, done.invoice.currency), invoice=Invoice.from_model(done.invoice)
        )

    @mutation(
        description="Return all or part of a payment (PARTIALLY_REFUNDED, or REFUNDED once all that was "
        "paid went back). The amount due does not change: a refund does not reopen the invoice.",
        scopes=OWNERS, idempotent=True,
    )
    async def refund_payment(self, info: Info, input: RefundPaymentInput) -> RefundPaymentPayload:
        done = await payments.refund_payment(
            info.context.principal, node_uuid(input.payment_id, "Payment", field="paymentId"), amount=input.amount,
            refunded_on=input.refunded_on, reason=input.reason, notify_customer=input.notify_customer,
        )
        return PaymentRefunded(
            refund=Refund.from_model(done.refund, done.invoice.currency), invoice=Invoice.from_model(done.invoice)
        )

