"""What is pushed to Xero: a frozen document (an invoice's current revision as approved, or a
credit note), and its mapping to the Xero SDK's Invoice or CreditNote.

A document kind plugs in with a loader in `VIEWS` (its id -> `FrozenDocument`); the mapping,
the push and the sync state are shared. Everything comes from the frozen revision and its
stored lines, never from live data, so what Xero receives is what the customer was sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from xero_python.accounting import Contact, CreditNote, CurrencyCode, Invoice, LineAmountTypes, LineItem

from models.credit_notes.tables import CreditNote as CreditNoteModel
from models.credit_notes.tables import CreditNoteLine
from models.currencies import round_money
from models.errors import NotFound
from models.exports import xero_quantity
from models.invoices.tables import Invoice as InvoiceModel
from models.invoices.tables import InvoiceLineItem, InvoiceRevision, InvoiceStatus, LineKind
from models.xero.tables import DocumentKind, XeroAccountMapping, XeroSettings

INVOICE_URL = "https://go.xero.com/organisationlogin/default.aspx?shortcode={short_code}&redirecturl=/AccountsReceivable/View.aspx?InvoiceID={xero_id}"
CREDIT_NOTE_URL = "https://go.xero.com/organisationlogin/default.aspx?shortcode={short_code}&redirecturl=/AccountsPayable/ViewCreditNote.aspx?creditNoteID={xero_id}"
# Without the organisation's short code, Xero's link works once the user is in that organisation.
INVOICE_URL_NO_CODE = "https://go.xero.com/AccountsReceivable/View.aspx?InvoiceID={xero_id}"
CREDIT_NOTE_URL_NO_CODE = "https://go.xero.com/AccountsPayable/ViewCreditNote.aspx?creditNoteID={xero_id}"


@dataclass(frozen=True)
class FrozenLine:
    kind: LineKind
    description: str
    amount: Decimal
    quantity: Decimal | None = None
    unit_price: Decimal | None = None


@dataclass(frozen=True)
class FrozenDocument:
    """A document as it was issued. A credit note's lines are the amounts credited (positive)."""

    kind: DocumentKind
    id: UUID
    # The invoice itself, or the one a credit note corrects.
    invoice_id: UUID
    organization_id: UUID
    number: str
    contact_name: str
    issue_date: date
    currency: str
    total: Decimal
    lines: list[FrozenLine] = field(default_factory=list)
    due_date: date | None = None
    reference: str = ""
    voided: bool = False


async def invoice_view(invoice_id: Any) -> FrozenDocument:
    """An approved (or since voided) invoice as its current revision froze it."""
    invoice = await InvoiceModel.get_or_none(id=invoice_id)
    if invoice is None or invoice.approved_at is None or invoice.current_revision_id is None or not invoice.number:
        raise NotFound("Only an approved invoice goes to Xero.", field="ids")
    revision = await InvoiceRevision.get(id=invoice.current_revision_id)
    lines = await InvoiceLineItem.filter(revision_id=revision.id).order_by("position")
    snapshot = revision.snapshot
    customer = snapshot.get("customer", {})
    return FrozenDocument(
        kind=DocumentKind.INVOICE, id=invoice.id, invoice_id=invoice.id, organization_id=invoice.organization_id,
        number=invoice.number, contact_name=customer.get("official_company_name") or customer.get("name") or invoice.number,
        issue_date=revision.issue_date, due_date=revision.due_date, currency=revision.currency,
        total=round_money(revision.total, revision.currency), reference=customer.get("po_number") or "",
        voided=invoice.status == InvoiceStatus.VOIDED,
        lines=[
            FrozenLine(kind=line.kind, description=line.description or line.kind.value.title(),
                       amount=round_money(line.amount, revision.currency), quantity=line.quantity, unit_price=line.unit_price)
            for line in lines
        ],
    )


async def credit_note_view(credit_note_id: Any) -> FrozenDocument:
    """An issued credit note as it froze: its credited lines (positive amounts), against the
    invoice it corrects."""
    note = await CreditNoteModel.get_or_none(id=credit_note_id)
    if note is None:
        raise NotFound("No such credit note.", field="ids")
    invoice = await InvoiceModel.get(id=note.invoice_id)
    customer = note.snapshot.get("customer", {})
    return FrozenDocument(
        kind=DocumentKind.CREDIT_NOTE, id=note.id, invoice_id=note.invoice_id, organization_id=note.organization_id,
        number=note.number, contact_name=customer.get("official_company_name") or customer.get("name") or note.number,
        issue_date=note.issue_date, currency=note.currency, total=round_money(note.total, note.currency),
        reference=invoice.number or "",
        lines=[
            FrozenLine(kind=line.kind, description=line.description or line.kind.value.title(),
                       amount=round_money(line.amount, note.currency))
            for line in await CreditNoteLine.filter(credit_note_id=note.id).order_by("position")
        ],
    )


# How each kind of document is loaded.
VIEWS: dict[DocumentKind, Callable[[Any], Awaitable[FrozenDocument]]] = {
    DocumentKind.INVOICE: invoice_view, DocumentKind.CREDIT_NOTE: credit_note_view,
}


async def load_view(kind: DocumentKind, document_id: Any) -> FrozenDocument:
    return await VIEWS[kind](document_id)


@dataclass(frozen=True)
class AccountMap:
    """Where lines go in Xero: the organization's defaults, then per line kind, then per
    charge or tax (by the name printed on the line)."""

    account_code: str = "200"
    tax_type: str = "NONE"
    by_line: dict[tuple[LineKind, str], tuple[str, str]] = field(default_factory=dict)

    def codes(self, line: FrozenLine) -> tuple[str, str]:
        return self.by_line.get(
            (line.kind, line.description), self.by_line.get((line.kind, ""), (self.account_code, self.tax_type))
        )


async def account_map(organization_id: Any) -> AccountMap:
    settings = await XeroSettings.get_or_none(organization_id=organization_id)
    mappings = await XeroAccountMapping.filter(organization_id=organization_id)
    return AccountMap(
        account_code=settings.account_code if settings else AccountMap.account_code,
        tax_type=settings.tax_type if settings else AccountMap.tax_type,
        by_line={(m.line_kind, m.line_name): (m.account_code, m.tax_type) for m in mappings},
    )


def _line_items(view: FrozenDocument, accounts: AccountMap) -> list[LineItem]:
    items = []
    for line in view.lines:
        quantity, unit_amount = xero_quantity({"quantity": line.quantity, "unit_price": line.unit_price}, line.amount)
        account_code, tax_type = accounts.codes(line)
        items.append(LineItem(
            description=line.description, quantity=quantity, unit_amount=unit_amount, account_code=account_code,
            tax_type=tax_type,
        ))
    return items


def to_xero(view: FrozenDocument, accounts: AccountMap) -> Invoice | CreditNote:
    """The Xero document for `view`: an authorised sales invoice (ACCREC) or sales credit note
    (ACCRECCREDIT) under our number, tax exclusive, each line on its mapped account and tax
    type (by default one that adds no tax: our taxes are lines of their own). A currency
    Xero does not know raises ValueError."""
    contact = Contact(name=view.contact_name)
    common = {
        "contact": contact, "date": view.issue_date, "line_amount_types": LineAmountTypes.EXCLUSIVE,
        "line_items": _line_items(view, accounts), "reference": view.reference or None,
        "currency_code": CurrencyCode(view.currency), "status": "AUTHORISED",
    }
    if view.kind == DocumentKind.CREDIT_NOTE:
        return CreditNote(type="ACCRECCREDIT", credit_note_number=view.number, **common)
    return Invoice(type="ACCREC", invoice_number=view.number, due_date=view.due_date, **common)


def not_ours(view: FrozenDocument, total: Decimal | None, contact_name: str) -> str | None:
    """Why the document Xero has under our number (its total, when Xero gave one, and its
    contact) is another than `view`, or None when it is this one."""
    if (total is None or total == view.total) and contact_name.casefold() == view.contact_name.casefold():
        return None
    return (
        f"Xero already has a document numbered {view.number}, for {contact_name} ({total}), "
        f"not for {view.contact_name} ({view.total}): renumber or remove the one in Xero, then push again."
    )


def xero_url(kind: DocumentKind, xero_id: str, short_code: str) -> str:
    """Xero's documented deep link to the document in its organisation."""
    if kind == DocumentKind.CREDIT_NOTE:
        template = CREDIT_NOTE_URL if short_code else CREDIT_NOTE_URL_NO_CODE
    else:
        template = INVOICE_URL if short_code else INVOICE_URL_NO_CODE
    return template.format(short_code=short_code, xero_id=xero_id)
