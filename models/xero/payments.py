"""Payments made in Xero, brought back as our payments: the same `record_payment` an owner's
`recordPayment` calls, once per Xero payment id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from models import outbox
from models.actors import Actor
from models.errors import DomainError
from models.invoices.tables import InvoiceEvent
from models.payments.ledger import record_payment
from models.payments.tables import PaymentMethod
from models.xero.tables import DocumentKind, XeroPayment, XeroSync

XERO = Actor.system("xero")


@dataclass(frozen=True)
class XeroPaymentSeen:
    """A payment as Xero's Payments endpoint tells it."""

    payment_id: str
    invoice_xero_id: str
    amount: Decimal
    paid_on: date
    reference: str = ""


@dataclass(frozen=True)
class OrganizationScope:
    """The organization as a principal of scoped queries: what the poll job reads through."""

    organization_id: UUID
    is_msp_user: bool = True
    managed_account_id: None = None


@dataclass(frozen=True)
class PaymentImport:
    invoice_id: UUID
    recorded: bool
    message: str | None = None


async def import_payment(organization_id: Any, seen: XeroPaymentSeen) -> PaymentImport | None:
    """Record one Xero payment against the invoice we pushed it as. None when it is not for
    one of ours, or was read before. A payment our rules refuse (more than is due, an
    invoice voided here) is kept as skipped, with why on the invoice's timeline. The payment
    and its Xero id are written in one transaction: read twice at once, one of them wins."""
    sync = await XeroSync.get_or_none(
        organization_id=organization_id, document_kind=DocumentKind.INVOICE, xero_id=seen.invoice_xero_id
    )
    if sync is None or await XeroPayment.exists(organization_id=organization_id, xero_payment_id=seen.payment_id):
        return None
    reference = f"Xero {seen.reference}".strip() if seen.reference else "Xero"
    # The payment's own record (its invoice announced) waits for this transaction's commit.
    async with outbox.transaction() as conn:
        try:
            done = await record_payment(
                OrganizationScope(organization_id), sync.invoice_id, amount=seen.amount, paid_on=seen.paid_on,
                method=PaymentMethod.BANK_TRANSFER, reference=reference[:255], actor=XERO,
            )
        except DomainError as exc:
            await XeroPayment.create(
                organization_id=organization_id, xero_payment_id=seen.payment_id, invoice_id=sync.invoice_id,
                message=exc.message, using_db=conn,
            )
            await InvoiceEvent.create(
                invoice_id=sync.invoice_id, actor_label=XERO.label, kind="XERO_PAYMENT_SKIPPED", using_db=conn,
                detail={"xeroPaymentId": seen.payment_id, "amount": str(seen.amount), "paidOn": seen.paid_on.isoformat(),
                        "error": exc.message},
            )
            return PaymentImport(sync.invoice_id, recorded=False, message=exc.message)
        await XeroPayment.create(
            organization_id=organization_id, xero_payment_id=seen.payment_id, invoice_id=sync.invoice_id,
            payment_id=done.payment.id, using_db=conn,
        )
    return PaymentImport(sync.invoice_id, recorded=True)
