"""Credit notes in exports, next to the invoices they credit.

- XERO: Xero's credit note import template (Business > Invoices > Credit notes > Import): the
  sales-invoice template with `*CreditNoteNumber` and `*CreditNoteDate` in place of the invoice
  number and date, and no due date. Xero books an imported credit note as a credit against the
  contact, so its amounts are written positive, as printed on the credit note (a credited
  discount line stays negative, as on the invoice); `Reference` names the credited invoice.
  Taxes are lines of their own with the billing profile's tax type, as in the invoices file, so
  each credit note totals in Xero exactly what it credited.
- DETAILED: every line of every credit note with its totals and the use of its credit.

Xero imports invoices and credit notes through two different screens, so they are two files."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from models.credit_notes.queries import remaining_credit, usable_credit
from models.credit_notes.tables import CreditNote, CreditNoteLine
from models.currencies import round_money
from models.invoices.tables import LineKind

XERO_CREDIT_NOTE_COLUMNS = (
    "*ContactName", "EmailAddress", "POAddressLine1", "POAddressLine2", "POAddressLine3",
    "POAddressLine4", "POCity", "PORegion", "POPostalCode", "POCountry", "*CreditNoteNumber",
    "Reference", "*CreditNoteDate", "InventoryItemCode", "*Description", "*Quantity",
    "*UnitAmount", "Discount", "*AccountCode", "*TaxType", "TrackingName1", "TrackingOption1",
    "TrackingName2", "TrackingOption2", "Currency", "BrandingTheme",
)
DETAILED_CREDIT_NOTE_COLUMNS = (
    "CreditNoteNumber", "InvoiceNumber", "Account", "CustomerName", "Period", "IssueDate", "Currency",
    "Mode", "Reason", "DeliveryStatus", "LinePosition", "LineKind", "Description", "InvoiceLinePosition",
    "Amount", "CreditNoteSubtotal", "CreditNoteCharges", "CreditNoteTotal", "Allocated", "AmountRefunded",
    "AmountApplied", "RemainingCredit",
)


@dataclass
class ExportedCreditNote:
    note: CreditNote
    lines: list[dict[str, Any]]
    # The credited invoice as the export loaded it (with its account and period).
    invoice: Any
    # The credit its invoice's credit notes gave back (refunded or applied).
    used: Decimal = Decimal(0)

    def money(self, amount: Decimal) -> Decimal:
        return round_money(amount, self.note.currency)


async def load_credit_notes(invoices: list[Any]) -> list[ExportedCreditNote]:
    """The credit notes of `invoices` (already loaded with their accounts and periods) with
    their lines, in number order (two statements)."""
    by_id = {invoice.id: invoice for invoice in invoices}
    notes = await CreditNote.filter(invoice_id__in=list(by_id)).order_by("number") if by_id else []
    lines: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    if notes:
        for line in await CreditNoteLine.filter(credit_note_id__in=[n.id for n in notes]).order_by("position").values():
            lines[line["credit_note_id"]].append(line)
    used: dict[Any, Decimal] = defaultdict(Decimal)
    for n in notes:
        used[n.invoice_id] += n.amount_refunded + n.amount_applied
    return [ExportedCreditNote(n, lines[n.id], by_id[n.invoice_id], used[n.invoice_id]) for n in notes]


def xero_rows(item: ExportedCreditNote, dated: Callable[[date], str], profile: Any) -> list[list[Any]]:
    account, note = item.invoice.managed_account, item.note
    email = next(iter(account.billing_emails), "") or account.contact_email
    contact = [
        account.official_company_name or account.name, email, account.address_line1, account.address_line2,
        account.address_line3, account.address_line4, account.city, account.region, account.postal_code,
        account.country, note.number, item.invoice.number, dated(note.issue_date),
    ]
    return [
        [
            *contact, "", line["description"] or LineKind(line["kind"]).value.title(), Decimal(1),
            item.money(line["amount"]), "", profile.xero_account_code, profile.xero_tax_type, "", "", "", "",
            note.currency, "",
        ]
        for line in item.lines
    ]


def detailed_rows(item: ExportedCreditNote, dated: Callable[[date], str]) -> list[list[Any]]:
    note, invoice, money = item.note, item.invoice, item.money
    account = invoice.managed_account
    head = [
        note.number, invoice.number, account.name, account.official_company_name or account.name,
        invoice.billing_period.start_date.strftime("%Y-%m"), dated(note.issue_date), note.currency, note.mode.value,
        note.reason, note.delivery_status.value,
    ]
    totals = [
        money(note.subtotal), money(note.charges), money(note.total), money(note.allocated),
        money(note.amount_refunded), money(note.amount_applied),
        usable_credit(remaining_credit(note), note.currency, invoice, item.used),
    ]
    return [
        [*head, line["position"], LineKind(line["kind"]).value, line["description"], line["invoice_line_position"],
         money(line["amount"]), *totals]
        for line in item.lines
    ]
