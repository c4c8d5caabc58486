"""Recording payments and refunds against approved invoices, and the payment status rule.

Every change locks the invoice row first (`lock_invoice`), then writes the payment or refund,
the invoice's running sums and status, and a timeline event in one transaction: concurrent
payments on one invoice cannot lose an update or together pay more than the total."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tortoise.expressions import Subquery
from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from models.actors import Actor
from models.currencies import MINOR_UNITS, round_money
from models.errors import AmountExceeded, ErrorCode, InvalidTransition, NotFound, ValidationFailed
from models.invoices.lifecycle import lock_invoice
from models.invoices.queries import amount_due, organization_today, visible_invoices
from models.invoices.tables import Invoice, InvoiceEvent, InvoiceStatus, PaymentStatus
from models.organizations import Organization
from models.outbox import Entity, Transition, record
from models.payments.tables import Payment, PaymentMethod, Refund

P = PaymentStatus


def payment_status(
    total: Decimal, paid: Decimal, refunded: Decimal, past_due: bool, *,
    credited: Decimal = Decimal(0), applied: Decimal = Decimal(0),
) -> PaymentStatus:
    """The one rule for `paymentStatus`. Once anything is refunded the refund is what the
    status tells (REFUNDED when all that was paid went back); an invoice settled in full is
    PAID; otherwise it is OVERDUE while something is due after the due date, else
    PARTIALLY_PAID or UNPAID. Its own credit notes (`credited`) lower what is owed, and
    credit applied from other credit notes (`applied`) counts as received, as payments do:
    a fully credited invoice is settled (PAID, as Xero shows it), never due or OVERDUE. The
    hourly overdue job applies the same rule to invoices whose due date passes."""
    received = paid + applied
    if refunded > 0:
        return P.REFUNDED if refunded >= paid else P.PARTIALLY_REFUNDED
    if (received > 0 or credited > 0) and received >= total - credited:
        return P.PAID
    if past_due:
        return P.OVERDUE
    return P.PARTIALLY_PAID if received > 0 else P.UNPAID


def visible_payments(principal):
    """Payments of the invoices the principal may see (the select brings the invoice's currency)."""
    return Payment.filter(invoice_id__in=Subquery(visible_invoices(principal).values("id"))).select_related("invoice")


def visible_refunds(principal):
    return Refund.filter(invoice_id__in=Subquery(visible_invoices(principal).values("id"))).select_related("invoice")


@dataclass
class PaymentRecorded:
    invoice: Invoice
    payment: Payment


@dataclass
class PaymentRefunded:
    invoice: Invoice
    refund: Refund


async def record_payment(
    principal, invoice_id: Any, *, amount: Decimal, paid_on: date, method: PaymentMethod, reference: str = "",
    actor: Actor | None = None,
) -> PaymentRecorded:
    """Record money received against an approved invoice. Partial payments add up; more
    than the amount due is refused (AmountExceeded, nothing written). `actor` is who records
    it when that is not the principal's user (payments read back from Xero)."""
    actor = actor or Actor(user_id=principal.user.id)
    reference = _text(reference, 255, "reference")
    async with in_transaction() as conn:
        invoice = await lock_invoice(conn, visible_invoices(principal), invoice_id, field="invoiceId")
        if invoice.status != InvoiceStatus.APPROVED:
            raise InvalidTransition("Payments are recorded against approved invoices only.", field="invoiceId")
        amount = _amount(amount, invoice.currency)
        today = await _today(invoice, conn)
        _not_after(paid_on, today, "paidOn")
        due = round_money(amount_due(invoice), invoice.currency)
        if amount > due:
            raise AmountExceeded(
                f"The payment is more than the {due} {invoice.currency} due.",
                maximum=due, field="amount", code=ErrorCode.OVERPAYMENT,
            )
        payment = await Payment.create(
            invoice_id=invoice.id, amount=amount, paid_on=paid_on, method=method, reference=reference,
            recorded_by_id=actor.user_id, using_db=conn,
        )
        await _apply(conn, invoice, actor, today, paid=invoice.amount_paid + amount, refunded=invoice.amount_refunded,
                     kind="PAYMENT_RECORDED", detail={
                         "payment": str(payment.id), "amount": str(amount), "paidOn": paid_on.isoformat(),
                         "method": method.value, "reference": reference,
                     })
    done = PaymentRecorded(invoice=await Invoice.get(id=invoice.id), payment=payment)
    record(Entity.PAYMENT, Transition.RECORDED, [payment], invoice=done.invoice)
    return done


async def refund_payment(
    principal, payment_id: Any, *, amount: Decimal, refunded_on: date, reason: str = "", notify_customer: bool = False,
) -> PaymentRefunded:
    """Refund all or part of one payment: never more than is left of it. A refund does not
    reopen the invoice (the amount due stays the total less payments). With `notify_customer`
    the billing e-mails are told once it committed."""
    reason = _text(reason, 1024, "reason")
    payment = await visible_payments(principal).get_or_none(id=payment_id) if payment_id else None
    if payment is None:
        raise NotFound("No such payment.", field="paymentId")
    async with in_transaction() as conn:
        invoice = await lock_invoice(conn, visible_invoices(principal), payment.invoice_id, field="paymentId")
        if invoice.status != InvoiceStatus.APPROVED:
            raise InvalidTransition("Refunds are made on approved invoices only.", field="paymentId")
        amount = _amount(amount, invoice.currency)
        today = await _today(invoice, conn)
        _not_after(refunded_on, today, "refundedOn")
        if refunded_on < payment.paid_on:
            raise ValidationFailed("A refund cannot be dated before the payment it returns.", field="refundedOn")
        (already,) = await Refund.filter(payment_id=payment.id).using_db(conn).annotate(
            sum=Sum("amount")).values_list("sum", flat=True)
        refundable = round_money(payment.amount - (already or 0), invoice.currency)
        if amount > refundable:
            raise AmountExceeded(
                f"At most {refundable} {invoice.currency} of this payment can be refunded.",
                maximum=refundable, field="amount", code=ErrorCode.REFUND_EXCEEDS_PAYMENT,
            )
        refund = await Refund.create(
            invoice_id=invoice.id, payment_id=payment.id, amount=amount, refunded_on=refunded_on,
            reason=reason, recorded_by_id=principal.user.id, using_db=conn,
        )
        await _apply(conn, invoice, Actor(user_id=principal.user.id), today, paid=invoice.amount_paid,
                     refunded=invoice.amount_refunded + amount,
                     kind="PAYMENT_REFUNDED", detail={
                         "refund": str(refund.id), "payment": str(payment.id), "amount": str(amount),
                         "refundedOn": refunded_on.isoformat(), "reason": reason,
                     })
    done = PaymentRefunded(invoice=await Invoice.get(id=invoice.id), refund=refund)
    record(Entity.PAYMENT, Transition.REFUNDED, [refund], invoice=done.invoice, notify_customer=notify_customer)
    return done


async def _apply(conn, invoice: Invoice, actor: Actor, today: date, *, paid: Decimal, refunded: Decimal,
                 kind: str, detail: dict) -> None:
    """Write the invoice's new sums and status, and the timeline event, in the caller's transaction."""
    # Payments and refunds are made on approved invoices, which have their dates.
    assert invoice.due_date is not None
    status = payment_status(
        invoice.total, paid, refunded, invoice.due_date < today,
        credited=invoice.amount_credited, applied=invoice.credit_applied,
    )
    await Invoice.filter(id=invoice.id).using_db(conn).update(
        amount_paid=paid, amount_refunded=refunded, payment_status=status, updated_at=datetime.now(UTC),
    )
    await InvoiceEvent.create(
        invoice_id=invoice.id, actor_id=actor.user_id, actor_label=actor.label, kind=kind, using_db=conn,
        detail={**detail, "paymentStatus": status.value, "previousPaymentStatus": invoice.payment_status.value},
    )


def _amount(value: Any, currency: str) -> Decimal:
    try:
        amount = Decimal(value)
        exact = amount.is_finite() and amount == amount.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency]))
    except (InvalidOperation, TypeError, ValueError):
        exact = False
    if not exact or amount <= 0:
        raise ValidationFailed(
            f"An amount is a positive number with at most {MINOR_UNITS[currency]} decimals in {currency}.",
            field="amount",
        )
    return amount


def _not_after(day: date, today: date, field: str) -> None:
    if day > today:
        raise ValidationFailed("The date cannot be in the future.", field=field)


def _text(value: str | None, limit: int, field: str) -> str:
    value = (value or "").strip()
    if len(value) > limit:
        raise ValidationFailed(f"At most {limit} characters.", field=field)
    return value


async def _today(invoice: Invoice, conn) -> date:
    organization = await Organization.get(id=invoice.organization_id, using_db=conn)
    return organization_today(organization.timezone)
