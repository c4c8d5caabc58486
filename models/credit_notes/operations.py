"""Issuing credit notes, and using the credit they leave beyond their invoice.

Every operation locks the invoice it changes first (`lock_invoice`, as payments do), then
writes the credit note or the use of its credit, the invoice's running sums and payment
status, and timeline events, in one transaction: a refused request writes nothing, and two
concurrent credits cannot together credit more than the invoice's total.

Money: a credit note lowers what its invoice leaves due (`amount_due` = total - credited -
paid - credit applied, never negative). The part of it the invoice did not owe any more when
it was issued (the invoice was paid) is the account's credit: the MSP refunds it
(`refund_credit`) or applies it to another approved invoice of the account
(`apply_credit`), where it counts as a payment does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from models.billing_periods import BillingPeriod
from models.billing_profiles import BillingProfile
from models.credit_notes import amounts
from models.credit_notes.amounts import CHARGE_KINDS, LineCredit
from models.credit_notes.documents import TEMPLATE_VERSION, build_view
from models.credit_notes.numbering import next_number
from models.credit_notes.queries import credit_used, remaining_credit, usable_credit, visible_credit_notes
from models.credit_notes.tables import CreditMode, CreditNote, CreditNoteLine, CreditUse, CreditUseEntry
from models.currencies import round_money
from models.errors import AmountExceeded, CreditExceeded, ErrorCode, InvalidTransition, NotFound, ValidationFailed
from models.invoices.lifecycle import lock_invoice
from models.invoices.queries import amount_due, organization_today, visible_invoices
from models.invoices.tables import (
    DeliveryStatus,
    Invoice,
    InvoiceEvent,
    InvoiceLineItem,
    InvoiceRevision,
    InvoiceStatus,
    LineKind,
)
from models.managed_accounts import ManagedAccount
from models.organizations import Organization
from models.outbox import Entity, Transition, record
from models.parties import parties
from models.payments.ledger import payment_status

MAX_REASON = 1024


@dataclass
class CreditNoteIssued:
    credit_note: CreditNote
    invoice: Invoice


@dataclass
class CreditUsed:
    credit_note: CreditNote
    entry: CreditUseEntry
    # The invoice the credit went to (apply), else None (refund).
    invoice: Invoice | None


def _checked_reason(reason: str, mode: CreditMode, lines: list[LineCredit] | None, amount: Decimal | None) -> str:
    """The reason, stripped, once the request's fields agree with its mode."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Say why the invoice is credited.", field="reason")
    if len(reason) > MAX_REASON:
        raise ValidationFailed(f"At most {MAX_REASON} characters.", field="reason")
    if mode != CreditMode.LINES and lines is not None:
        raise ValidationFailed("Lines are chosen only to credit by lines.", field="lines")
    if mode != CreditMode.AMOUNT and amount is not None:
        raise ValidationFailed("An amount is given only to credit by amount.", field="amount")
    return reason


async def create_credit_note(
    principal, invoice_id: Any, *, reason: str, mode: CreditMode, lines: list[LineCredit] | None = None,
    amount: Decimal | None = None, notify_customer: bool = True,
) -> CreditNoteIssued:
    """Credit an approved invoice in full, by lines or by an amount (models/credit_notes/amounts.py
    says how taxes and charges follow). Never more than is left to credit: the invoice's total
    less its earlier credit notes (CreditExceeded, nothing written)."""
    reason = _checked_reason(reason, mode, lines, amount)
    async with in_transaction() as conn:
        invoice = await lock_invoice(conn, visible_invoices(principal), invoice_id, field="invoiceId")
        if invoice.status != InvoiceStatus.APPROVED:
            raise InvalidTransition("Only an approved invoice can be credited.", field="invoiceId")
        currency = invoice.currency
        revision = await InvoiceRevision.get(id=invoice.current_revision_id, using_db=conn)
        printed = await InvoiceLineItem.filter(revision_id=revision.id).using_db(conn).order_by("position").values(
            "position", "kind", "description", "amount")
        left = round_money(invoice.total - invoice.amount_credited, currency)
        credit = amounts.credit(
            mode, printed, await _credited(conn, invoice), left, currency, invoice.number or "", lines, amount,
            revision.locale,
        )
        subtotal = sum((c.amount for c in credit if c.kind not in CHARGE_KINDS), Decimal(0))
        charges = sum((c.amount for c in credit if c.kind in CHARGE_KINDS), Decimal(0))
        total = subtotal + charges
        organization = await Organization.get(id=invoice.organization_id, using_db=conn)
        today = organization_today(organization.timezone)
        number = await next_number(conn, organization.id, today.year)
        view = build_view(
            number=number, issue_date=today, invoice=invoice,
            printed=await _printed_parties(conn, invoice, organization, revision.snapshot),
            period_label=revision.snapshot.get("period", {}).get("label") or await _period_label(conn, invoice),
            reason=reason, lines=credit, subtotal=subtotal, charges=charges, total=total,
            locale=revision.locale, period_start=revision.snapshot.get("period", {}).get("start"),
        )
        note = await CreditNote.create(
            organization_id=invoice.organization_id, invoice_id=invoice.id,
            managed_account_id=invoice.managed_account_id, number=number, issue_date=today, reason=reason,
            mode=mode, currency=currency, subtotal=subtotal, charges=charges,
            tax_total=sum((c.amount for c in credit if c.kind == LineKind.TAX), Decimal(0)), total=total,
            allocated=min(total, amount_due(invoice)),
            delivery_status=DeliveryStatus.QUEUED if notify_customer else DeliveryStatus.NOT_SENT,
            template_version=TEMPLATE_VERSION, snapshot=view, created_by_id=principal.user.id, using_db=conn,
        )
        await _issued(conn, principal, invoice, note, credit, today, notify_customer)
    done = CreditNoteIssued(credit_note=await CreditNote.get(id=note.id), invoice=await Invoice.get(id=invoice.id))
    record(Entity.CREDIT_NOTE, Transition.ISSUED, [done.credit_note], invoice=done.invoice)
    return done


async def _issued(
    conn, principal, invoice: Invoice, note: CreditNote, credit: list[amounts.CreditLine], today: date,
    notify_customer: bool,
) -> None:
    """Write the credit note's lines, what it leaves the invoice owing, and the timeline event."""
    await CreditNoteLine.bulk_create([
        CreditNoteLine(
            credit_note_id=note.id, position=i, kind=c.kind, description=c.description[:1024],
            invoice_line_position=c.invoice_line_position, amount=c.amount,
        )
        for i, c in enumerate(credit, start=1)
    ], using_db=conn)
    credited = invoice.amount_credited + note.total
    status = _status(invoice, today, credited=credited)
    await Invoice.filter(id=invoice.id).using_db(conn).update(
        amount_credited=credited, payment_status=status, updated_at=datetime.now(UTC),
    )
    currency = invoice.currency
    await InvoiceEvent.create(
        invoice_id=invoice.id, actor_id=principal.user.id, kind="CREDIT_NOTE_ISSUED", using_db=conn,
        detail={
            "creditNote": str(note.id), "number": note.number, "mode": note.mode.value, "reason": note.reason,
            "total": str(round_money(note.total, currency)), "allocated": str(round_money(note.allocated, currency)),
            "accountCredit": str(round_money(note.total - note.allocated, currency)),
            "notifyCustomer": notify_customer, "paymentStatus": status.value,
            "previousPaymentStatus": invoice.payment_status.value,
        },
    )


async def _credited(conn, invoice: Invoice) -> dict[int, Decimal]:
    """What earlier credit notes credited of each line of the invoice, by its position."""
    if invoice.amount_credited == 0:
        return {}
    rows = await CreditNoteLine.filter(
        credit_note__invoice_id=invoice.id, invoice_line_position__isnull=False,
    ).using_db(conn).group_by("invoice_line_position").annotate(sum=Sum("amount")).values(
        "invoice_line_position", "sum")
    return {row["invoice_line_position"]: row["sum"] for row in rows}


async def _printed_parties(conn, invoice: Invoice, organization: Organization, snapshot: dict) -> dict:
    if "msp" in snapshot and "customer" in snapshot:
        return {"msp": snapshot["msp"], "customer": snapshot["customer"]}
    account = await ManagedAccount.get(id=invoice.managed_account_id, using_db=conn)
    profile = None
    if account.billing_profile_id:
        profile = await BillingProfile.get_or_none(id=account.billing_profile_id, using_db=conn)
    return parties(organization, account, profile)


async def _period_label(conn, invoice: Invoice) -> str:
    period = await BillingPeriod.get(id=invoice.billing_period_id, using_db=conn)
    return period.start_date.strftime("%B %Y")


def _status(invoice: Invoice, today: date, *, credited: Decimal | None = None, applied: Decimal | None = None):
    assert invoice.due_date is not None, "an approved invoice has its dates"
    return payment_status(
        invoice.total, invoice.amount_paid, invoice.amount_refunded, invoice.due_date < today,
        credited=invoice.amount_credited if credited is None else credited,
        applied=invoice.credit_applied if applied is None else applied,
    )


@dataclass
class _Locked:
    note: CreditNote
    # The credit note's own invoice, and the invoice credit is applied to (None for a refund).
    source: Invoice
    target: Invoice | None
    usable: Decimal


async def _lock(conn, principal, credit_note_id: Any, target_id: Any = None) -> _Locked:
    """Lock the credit note's invoice and the target invoice (in id order, so that two
    applications in opposite directions cannot deadlock), then the credit note, and tell how
    much of its credit may be used now (`usable_credit`)."""
    found = await visible_credit_notes(principal).get_or_none(id=credit_note_id) if credit_note_id else None
    if found is None:
        raise NotFound("No such credit note.", field="creditNoteId")
    target = None
    for invoice_id in sorted({found.invoice_id, target_id} - {None}, key=str):
        if invoice_id == target_id:
            target = await lock_invoice(conn, visible_invoices(principal), target_id, field="invoiceId")
        else:
            await Invoice.filter(id=invoice_id).select_for_update().using_db(conn).first()
    note = await CreditNote.filter(id=found.id).select_for_update().using_db(conn).get()
    source = await Invoice.get(id=note.invoice_id, using_db=conn)
    used = (await credit_used([source.id], conn)).get(source.id, Decimal(0))
    usable = usable_credit(remaining_credit(note), note.currency, source, used)
    return _Locked(note=note, source=source, target=target, usable=usable)


def _within_usable(locked: _Locked, amount: Decimal) -> None:
    if amount > locked.usable:
        note = locked.note
        raise CreditExceeded(
            f"Credit note {note.number} has {locked.usable} {note.currency} of credit to use.",
            maximum=locked.usable, field="amount", code=ErrorCode.CREDIT_EXCEEDS_BALANCE,
        )


def _target(locked: _Locked) -> Invoice:
    """The invoice credit is applied to: approved, another of the credit note's account, in its currency."""
    note, invoice = locked.note, locked.target
    if invoice is None:
        raise NotFound("No such invoice.", field="invoiceId")
    if invoice.status != InvoiceStatus.APPROVED:
        raise InvalidTransition("Credit is applied to approved invoices only.", field="invoiceId")
    if invoice.id == note.invoice_id or invoice.managed_account_id != note.managed_account_id:
        raise ValidationFailed(
            "Credit is applied to another invoice of the credit note's account.", field="invoiceId"
        )
    if invoice.currency != note.currency:
        raise ValidationFailed(
            f"The invoice is in {invoice.currency}, the credit in {note.currency}.", field="invoiceId"
        )
    return invoice


async def apply_credit(
    principal, credit_note_id: Any, invoice_id: Any, *, amount: Decimal | None = None, applied_on: date | None = None,
) -> CreditUsed:
    """Apply a credit note's remaining credit to another approved invoice of the same account
    and currency (the account's next invoice): it lowers that invoice's amount due as a payment
    would, and both invoices' timelines tell it. Without `amount`, as much as both allow."""
    async with in_transaction() as conn:
        locked = await _lock(conn, principal, credit_note_id, invoice_id or None)
        note, source, invoice = locked.note, locked.source, _target(locked)
        organization = await Organization.get(id=invoice.organization_id, using_db=conn)
        today = organization_today(organization.timezone)
        applied_on = _on_or_before_today(applied_on, today, "appliedOn")
        due = round_money(amount_due(invoice), invoice.currency)
        if amount is None:
            amount = min(locked.usable, due)
            if amount <= 0:
                raise CreditExceeded(
                    "Nothing to apply: the credit note has no credit left, or the invoice owes nothing.",
                    maximum=amount, field="amount", code=ErrorCode.CREDIT_EXCEEDS_BALANCE,
                )
        amount = amounts.exact_amount(amount, note.currency, "amount")
        _within_usable(locked, amount)
        if amount > due:
            raise AmountExceeded(
                f"The invoice has {due} {invoice.currency} due.", maximum=due, field="amount",
                code=ErrorCode.OVERPAYMENT,
            )
        entry = await CreditUseEntry.create(
            credit_note_id=note.id, kind=CreditUse.INVOICE, invoice_id=invoice.id, amount=amount, used_on=applied_on,
            recorded_by_id=principal.user.id, using_db=conn,
        )
        await CreditNote.filter(id=note.id).using_db(conn).update(amount_applied=note.amount_applied + amount)
        applied = invoice.credit_applied + amount
        status = _status(invoice, today, applied=applied)
        await Invoice.filter(id=invoice.id).using_db(conn).update(
            credit_applied=applied, payment_status=status, updated_at=datetime.now(UTC),
        )
        common = {"creditNote": str(note.id), "creditNoteNumber": note.number, "amount": str(amount),
                  "appliedOn": applied_on.isoformat()}
        await InvoiceEvent.bulk_create([
            InvoiceEvent(invoice_id=invoice.id, actor_id=principal.user.id, kind="CREDIT_APPLIED", detail={
                **common, "fromInvoice": source.number, "paymentStatus": status.value,
                "previousPaymentStatus": invoice.payment_status.value,
            }),
            InvoiceEvent(invoice_id=source.id, actor_id=principal.user.id, kind="CREDIT_CARRIED", detail={
                **common, "toInvoice": invoice.number,
            }),
        ], using_db=conn)
    done = CreditUsed(
        credit_note=await CreditNote.get(id=note.id), entry=entry, invoice=await Invoice.get(id=invoice.id),
    )
    record(Entity.CREDIT_NOTE, Transition.APPLIED, [entry], invoice=done.invoice)
    return done


async def refund_credit(
    principal, credit_note_id: Any, *, amount: Decimal, refunded_on: date, reference: str = "",
    notify_customer: bool = False,
) -> CreditUsed:
    """Record money paid back to the customer from a credit note's remaining credit; with
    `notify_customer` the billing e-mails are told once it committed."""
    reference = (reference or "").strip()
    if len(reference) > 255:
        raise ValidationFailed("At most 255 characters.", field="reference")
    async with in_transaction() as conn:
        locked = await _lock(conn, principal, credit_note_id)
        note = locked.note
        organization = await Organization.get(id=note.organization_id, using_db=conn)
        refunded_on = _on_or_before_today(refunded_on, organization_today(organization.timezone), "refundedOn")
        amount = amounts.exact_amount(amount, note.currency, "amount")
        _within_usable(locked, amount)
        entry = await CreditUseEntry.create(
            credit_note_id=note.id, kind=CreditUse.REFUND, amount=amount, used_on=refunded_on,
            reference=reference, recorded_by_id=principal.user.id, using_db=conn,
        )
        await CreditNote.filter(id=note.id).using_db(conn).update(amount_refunded=note.amount_refunded + amount)
        await InvoiceEvent.create(
            invoice_id=note.invoice_id, actor_id=principal.user.id, kind="CREDIT_REFUNDED", using_db=conn,
            detail={"creditNote": str(note.id), "creditNoteNumber": note.number, "amount": str(amount),
                    "refundedOn": refunded_on.isoformat(), "reference": reference},
        )
    done = CreditUsed(credit_note=await CreditNote.get(id=note.id), entry=entry, invoice=None)
    record(Entity.CREDIT_NOTE, Transition.CREDIT_REFUNDED, [entry], credit_note=done.credit_note,
           notify_customer=notify_customer)
    return done


def _on_or_before_today(day: date | None, today: date, field: str) -> date:
    if day is None:
        return today
    if day > today:
        raise ValidationFailed("The date cannot be in the future.", field=field)
    return day
