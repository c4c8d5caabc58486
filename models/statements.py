"""What a managed account owes: its balance, the ageing of what it owes and its statement of
account, per currency (an account billed in two currencies has two of each; amounts in
different currencies are never added up).

- **Balance.** `open` is what its approved invoices still owe (`amount_due`: the total less
  credit notes, payments and credit applied; a voided invoice owes nothing), `overdue` the part
  of it whose due date has passed in the organization's time zone, and `credit` the account
  credit its credit notes still hold (what they credited beyond what their invoice owed, less
  what was refunded or applied, never more than the customer keeps paid: `usable_credit`).
- **Ageing.** What is owed, by days past the due date: current (not yet due), 1-30, 31-60,
  61-90 and over 90 days; the buckets add up to `open`.
- **Statement.** The account's ledger over a date range: the opening balance (everything dated
  before `start`), each document and movement of money dated within it, and the closing
  balance. An invoice raises the balance on its issue date; a credit note lowers it on its
  issue date, a payment on the day it was paid; a refund of a payment and a refund of account
  credit raise it (money went back to the customer), and voiding an invoice lowers it by what
  the invoice still claimed (its total less its credit notes and credit applied). Credit
  applied from a credit note to another invoice moves credit within the account and changes
  no balance, so it is no line. Drafts never appear: only what the customer received.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from models.billing_profiles import BillingProfile
from models.credit_notes.queries import usable_credit
from models.credit_notes.tables import CreditNote, CreditUse, CreditUseEntry
from models.currencies import round_money
from models.errors import NotFound, ValidationFailed
from models.invoices.queries import CUSTOMER_VISIBLE, amount_due, organization_today
from models.invoices.tables import Invoice, InvoiceStatus
from models.locales import DEFAULT_LOCALE
from models.managed_accounts import ManagedAccount, visible_accounts
from models.organizations import Organization
from models.parties import parties
from models.payments.tables import Payment, Refund

# The longest statement one asks for: ten years of months, a few hundred lines.
MAX_STATEMENT_DAYS = 3660
STATEMENT_TEMPLATE_VERSION = "1"
STATEMENTS_FOLDER = "statements"


class EntryKind(str, Enum):
    """What a statement line is; the order within a day is this one."""

    INVOICE = "INVOICE"
    CREDIT_NOTE = "CREDIT_NOTE"
    PAYMENT = "PAYMENT"
    REFUND = "REFUND"
    CREDIT_REFUND = "CREDIT_REFUND"
    VOID = "VOID"


_ORDER = {kind: index for index, kind in enumerate(EntryKind)}


@dataclass
class Balance:
    currency: str
    open: Decimal
    overdue: Decimal
    credit: Decimal

    @property
    def net(self) -> Decimal:
        """What the customer owes once its account credit is counted (negative: it is owed)."""
        return self.open - self.credit


@dataclass
class Ageing:
    currency: str
    current: Decimal
    days_1_30: Decimal
    days_31_60: Decimal
    days_61_90: Decimal
    over_90: Decimal

    @property
    def total(self) -> Decimal:
        return self.current + self.days_1_30 + self.days_31_60 + self.days_61_90 + self.over_90


@dataclass
class Entry:
    """One line of the statement: `amount` raises what is owed when positive, lowers it when
    negative; `balance` is the running balance after it."""

    day: date
    kind: EntryKind
    reference: str
    invoice_number: str
    amount: Decimal
    balance: Decimal = Decimal(0)


@dataclass
class CurrencyStatement:
    currency: str
    opening: Decimal
    entries: list[Entry]
    closing: Decimal


@dataclass
class Statement:
    account: ManagedAccount
    organization: Organization
    start: date
    end: date
    today: date
    currencies: list[CurrencyStatement] = field(default_factory=list)

    @property
    def locale(self) -> str:
        return self.account.locale or self.organization.locale or DEFAULT_LOCALE


async def readable_account(principal, account_id: Any) -> ManagedAccount | None:
    """The account if the principal may read what it owes: any of the organization's for its
    MSP users, a customer's own for the customer."""
    if account_id is None:
        return None
    return await visible_accounts(principal).get_or_none(id=account_id)


async def account_for(principal, account_id: Any) -> ManagedAccount:
    """`readable_account`, or NotFound naming `accountId` (another organization's answers the same)."""
    account = await readable_account(principal, account_id)
    if account is None:
        raise NotFound("No such managed account.", field="accountId")
    return account


def _received(account: ManagedAccount):
    """The invoices the customer received: approved, and still so or voided since."""
    return Invoice.filter(managed_account_id=account.id, status__in=CUSTOMER_VISIBLE, approved_at__isnull=False)


async def _today(account: ManagedAccount) -> date:
    organization = await Organization.get(id=account.organization_id)
    return organization_today(organization.timezone)


async def _credit_by_currency(account: ManagedAccount) -> dict[str, Decimal]:
    """Account credit per currency, counted per credited invoice: its credit notes' remaining
    credit, never more than the customer keeps paid on that invoice beyond what it owes."""
    notes = await CreditNote.filter(managed_account_id=account.id).select_related("invoice")
    by_invoice: dict[Any, list[CreditNote]] = defaultdict(list)
    for note in notes:
        by_invoice[note.invoice_id].append(note)
    credit: dict[str, Decimal] = defaultdict(Decimal)
    for group in by_invoice.values():
        invoice = group[0].invoice
        remaining = sum((n.total - n.allocated - n.amount_refunded - n.amount_applied for n in group), Decimal(0))
        used = sum((n.amount_refunded + n.amount_applied for n in group), Decimal(0))
        credit[invoice.currency] += usable_credit(remaining, invoice.currency, invoice, used)
    return credit


async def balances(account: ManagedAccount, today: date | None = None) -> list[Balance]:
    """The account's balance per currency of the invoices it received, by currency code."""
    today = today or await _today(account)
    found: dict[str, Balance] = {}
    for invoice in await _received(account):
        row = found.setdefault(invoice.currency, Balance(invoice.currency, Decimal(0), Decimal(0), Decimal(0)))
        if invoice.status != InvoiceStatus.APPROVED:
            continue
        due = amount_due(invoice)
        row.open += due
        if invoice.due_date is not None and invoice.due_date < today:
            row.overdue += due
    for currency, credit in (await _credit_by_currency(account)).items():
        found.setdefault(currency, Balance(currency, Decimal(0), Decimal(0), Decimal(0))).credit += credit
    return [_rounded_balance(found[code]) for code in sorted(found)]


def _rounded_balance(row: Balance) -> Balance:
    c = row.currency
    return Balance(c, round_money(row.open, c), round_money(row.overdue, c), round_money(row.credit, c))


def bucket(days_past_due: int) -> str:
    """The ageing bucket of an amount `days_past_due` days after its due date (0 or fewer: current)."""
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "days_1_30"
    if days_past_due <= 60:
        return "days_31_60"
    if days_past_due <= 90:
        return "days_61_90"
    return "over_90"


async def ageings(account: ManagedAccount, today: date | None = None) -> list[Ageing]:
    """What the account owes per currency, by days past due, as of `today` (the organization's
    today when not given); currencies in which it owes nothing are left out."""
    today = today or await _today(account)
    found: dict[str, dict[str, Decimal]] = {}
    for invoice in await _received(account).filter(status=InvoiceStatus.APPROVED):
        due = amount_due(invoice)
        if due <= 0 or invoice.due_date is None:
            continue
        row = found.setdefault(invoice.currency, defaultdict(Decimal))
        row[bucket((today - invoice.due_date).days)] += due
    return [
        Ageing(code, *(round_money(found[code][name], code) for name in ("current", "days_1_30", "days_31_60", "days_61_90", "over_90")))
        for code in sorted(found)
    ]


def check_range(start: date, end: date) -> None:
    if end < start:
        raise ValidationFailed("The range ends before it starts.", field="to")
    if (end - start).days >= MAX_STATEMENT_DAYS:
        raise ValidationFailed(f"A statement covers at most {MAX_STATEMENT_DAYS} days.", field="from")


async def ledger(account: ManagedAccount, organization: Organization, until: date) -> list[tuple[str, Entry]]:
    """Every line of the account's ledger dated `until` or earlier, with its currency, in order."""
    zone = ZoneInfo(organization.timezone)
    invoices = await _received(account).filter(issue_date__lte=until)
    numbers = {invoice.id: invoice.number or "" for invoice in invoices}
    lines: list[tuple[str, Entry]] = []
    for invoice in invoices:
        number = numbers[invoice.id]
        assert invoice.issue_date is not None  # approved invoices have their dates
        lines.append((invoice.currency, Entry(invoice.issue_date, EntryKind.INVOICE, number, number, invoice.total)))
        if invoice.status == InvoiceStatus.VOIDED and invoice.voided_at is not None:
            voided = invoice.voided_at.astimezone(zone).date()
            claimed = max(invoice.total - invoice.amount_credited - invoice.credit_applied, Decimal(0))
            if voided <= until and claimed:
                lines.append((invoice.currency, Entry(voided, EntryKind.VOID, number, number, -claimed)))
    notes = await CreditNote.filter(managed_account_id=account.id, issue_date__lte=until).select_related("invoice")
    for note in notes:
        lines.append((note.currency, Entry(note.issue_date, EntryKind.CREDIT_NOTE, note.number, note.invoice.number or "", -note.total)))
    uses = await CreditUseEntry.filter(
        credit_note__managed_account_id=account.id,
        kind=CreditUse.REFUND,
        used_on__lte=until,
    ).select_related("credit_note", "credit_note__invoice")
    for use in uses:
        note = use.credit_note
        lines.append((note.currency, Entry(use.used_on, EntryKind.CREDIT_REFUND, note.number, note.invoice.number or "", use.amount)))
    ids = list(numbers)
    for payment in await Payment.filter(invoice_id__in=ids, paid_on__lte=until).select_related("invoice"):
        number = numbers[payment.invoice_id]  # type: ignore[attr-defined]
        lines.append((payment.invoice.currency, Entry(payment.paid_on, EntryKind.PAYMENT, number, number, -payment.amount)))
    for refund in await Refund.filter(invoice_id__in=ids, refunded_on__lte=until).select_related("invoice"):
        number = numbers[refund.invoice_id]  # type: ignore[attr-defined]
        lines.append((refund.invoice.currency, Entry(refund.refunded_on, EntryKind.REFUND, number, number, refund.amount)))
    lines.sort(key=lambda item: (item[1].day, _ORDER[item[1].kind], item[1].reference))
    return lines


async def statement(account: ManagedAccount, start: date, end: date) -> Statement:
    """The account's statement from `start` to `end` (both included), per currency that has a
    balance before the range or a line within it."""
    check_range(start, end)
    organization = await Organization.get(id=account.organization_id)
    found = Statement(account, organization, start, end, organization_today(organization.timezone))
    by_currency: dict[str, CurrencyStatement] = {}
    for currency, entry in await ledger(account, organization, end):
        section = by_currency.setdefault(currency, CurrencyStatement(currency, Decimal(0), [], Decimal(0)))
        entry.amount = round_money(entry.amount, currency)  # stored to 4 places; printed to the minor unit
        section.closing += entry.amount
        if entry.day < start:
            section.opening += entry.amount
        else:
            entry.balance = round_money(section.closing, currency)
            section.entries.append(entry)
    for code in sorted(by_currency):
        section = by_currency[code]
        if section.entries or section.opening:
            section.opening = round_money(section.opening, code)
            section.closing = round_money(section.closing, code)
            found.currencies.append(section)
    return found


async def statement_view(found: Statement) -> dict[str, Any]:
    """Everything the statement's PDF prints, as plain JSON values (its file is named by their hash)."""
    account = found.account
    profile = await BillingProfile.get_or_none(id=account.billing_profile_id) if account.billing_profile_id else None
    return {
        "template_version": STATEMENT_TEMPLATE_VERSION,
        "locale": found.locale,
        **parties(found.organization, account, profile),
        "start": found.start.isoformat(),
        "end": found.end.isoformat(),
        "today": found.today.isoformat(),
        "currencies": [
            {
                "currency": s.currency,
                "opening": str(s.opening),
                "closing": str(s.closing),
                "entries": [
                    {
                        "day": e.day.isoformat(),
                        "kind": e.kind.value,
                        "reference": e.reference,
                        "invoice_number": e.invoice_number,
                        "amount": str(e.amount),
                        "balance": str(e.balance),
                    }
                    for e in s.entries
                ],
            }
            for s in found.currencies
        ],
    }


def statement_path(account: ManagedAccount, view: dict[str, Any]) -> str:
    """Where the PDF of this view is kept: named by its range and the hash of what it prints,
    so the same statement is printed once and a changed one anew."""
    digest = hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:24]
    return f"{STATEMENTS_FOLDER}/{account.organization_id}/{account.id}/{view['start']}_{view['end']}_{digest}.pdf"


def account_of_path(path: str) -> tuple[str, str] | None:
    """(organization id, account id) a stored statement's path names, else None."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != STATEMENTS_FOLDER or not parts[3].endswith(".pdf"):
        return None
    return parts[1], parts[2]
