"""Exports of approved invoices for accountants: Xero's sales-invoice import template and a
detailed CSV for general ledgers, every cell safe to open in a spreadsheet.

What is exported: invoices that have been approved, never drafts.
- XERO exports APPROVED invoices only. A voided invoice is left out: Xero's practice is not
  to import a cancelled invoice, and one imported before it was voided is voided in Xero.
- DETAILED also exports VOIDED ones (their status is a column), so that a ledger sees every
  number of the gapless sequence.

Credit notes of the exported invoices come as a second file (models/credit_notes/exports.py):
the export is then a zip of both.

Xero mapping: one row per printed line (usage, billing rules, charges and taxes), in the
invoice's order, repeating the invoice's columns. Our taxes are lines of their own, so every
row carries the billing profile's tax type, which is meant to add no tax in Xero (the default
`Tax Exempt`); Xero then totals exactly what the customer was billed. Xero recomputes each
line as Quantity x UnitAmount, so the stored quantity and unit price are used only when
their product is the line's amount to the cent (and both fit Xero's four decimals);
otherwise the row is 1 x the amount.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from models.audit import AuditEntity, record_change, snapshot
from models.billing_profiles import BillingProfile
from models.credit_notes import exports as credit_notes
from models.currencies import round_money
from models.errors import ErrorCode, InvalidTransition, NotFound, ValidationFailed
from models.invoices.queries import InvoiceQuery, amount_due, filter_invoices, visible_invoices
from models.invoices.tables import Invoice, InvoiceLineItem, InvoiceStatus, LineKind
from models.organizations import ExportDateFormat, Organization


class ExportFormat(str, Enum):
    XERO = "XERO"
    DETAILED = "DETAILED"


EXPORTED_STATUSES = {
    ExportFormat.XERO: (InvoiceStatus.APPROVED,),
    ExportFormat.DETAILED: (InvoiceStatus.APPROVED, InvoiceStatus.VOIDED),
}

# Xero's sales-invoice import template, column for column (asterisks mark required ones).
XERO_COLUMNS = (
    "*ContactName", "EmailAddress", "POAddressLine1", "POAddressLine2", "POAddressLine3",
    "POAddressLine4", "POCity", "PORegion", "POPostalCode", "POCountry", "*InvoiceNumber",
    "Reference", "*InvoiceDate", "*DueDate", "InventoryItemCode", "*Description", "*Quantity",
    "*UnitAmount", "Discount", "*AccountCode", "*TaxType", "TrackingName1", "TrackingOption1",
    "TrackingName2", "TrackingOption2", "Currency", "BrandingTheme",
)
DETAILED_COLUMNS = (
    "InvoiceNumber", "Status", "PaymentStatus", "DeliveryStatus", "Account", "CustomerName",
    "PONumber", "Period", "IssueDate", "DueDate", "Currency", "Revision", "CostCurrency",
    "ExchangeRate", "LinePosition", "LineKind", "Description", "Provider", "Service",
    "ServiceCategory", "Quantity", "Unit", "UnitPrice", "Amount", "InvoiceSubtotal",
    "InvoiceAdjustments", "InvoiceCharges", "InvoiceTotal", "AmountPaid", "AmountRefunded",
    "AmountDue", "AmountCredited", "CreditApplied",
)
# Xero refuses bigger imports; more invoices become a zip of files of this many.
MAX_INVOICES_PER_FILE = 500
MAX_IDS = 5000
# Xero keeps at most four decimals of a quantity or unit amount.
_XERO_PLACES = -4
_DATE_PATTERNS = {
    ExportDateFormat.DAY_FIRST: "%d/%m/%Y",
    ExportDateFormat.MONTH_FIRST: "%m/%d/%Y",
    ExportDateFormat.ISO: "%Y-%m-%d",
}
# OWASP's CSV injection guidance: a cell starting with one of these may be read as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
CSV_TYPE = "text/csv; charset=utf-8"
# Stored exports live under EXPORTS_FOLDER/<organization id>/.
EXPORTS_FOLDER = "exports"


def neutralise(text: str) -> str:
    """Text a spreadsheet would take for a formula, prefixed with a single quote (shown as
    text, never evaluated)."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _cell(value: Any) -> str:
    """Amounts and counts we computed are written as plain numbers (a negative credit stays
    a number); every text goes through `neutralise`."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, int):
        return str(value)
    return neutralise(str(value))


def write_csv(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    writer.writerows([_cell(value) for value in row] for row in rows)
    return buffer.getvalue().encode("utf-8")


def safe_filename(name: str, extension: str) -> str:
    """A file name any browser and file system accepts: letters, digits, `.`, `_`, `-`."""
    stem = _UNSAFE_FILENAME.sub("-", name).strip(".-") or "invoice"
    return f"{stem[:100]}.{extension}"


def _plain(value: Decimal | None) -> Decimal | None:
    """A stored quantity or price without the column's trailing zeros."""
    return None if value is None else value.normalize()


def format_date(value: date | None, style: ExportDateFormat) -> str:
    return value.strftime(_DATE_PATTERNS[style]) if value else ""


@dataclass
class ExportedInvoice:
    """An invoice with what an export prints of it."""

    invoice: Invoice
    lines: list[dict[str, Any]]
    revision: dict[str, Any]

    @property
    def account(self):
        return self.invoice.managed_account

    @property
    def customer_name(self) -> str:
        return self.account.official_company_name or self.account.name

    @property
    def po_number(self) -> str:
        # The PO number printed on the invoice, which may since have changed on the account.
        printed = self.revision.get("po_number")
        return self.account.po_number if printed is None else printed

    def money(self, amount: Decimal) -> Decimal:
        return round_money(amount, self.invoice.currency)


@dataclass(frozen=True)
class ExportFile:
    filename: str
    content_type: str
    data: bytes
    invoice_count: int
    credit_note_count: int = 0


_REVISIONS_SQL = (
    "SELECT id, revision, cost_currency, exchange_rate, snapshot #>> '{customer,po_number}' AS po_number"
    " FROM invoice_revisions WHERE id = ANY($1::uuid[])"
)


async def load_exported(query) -> list[ExportedInvoice]:
    """The invoices of `query` with their accounts, periods and current revisions' lines, in
    number order (three statements, whatever the count)."""
    invoices = await query.select_related("managed_account", "billing_period").order_by("number", "id")
    revision_ids = [i.current_revision_id for i in invoices if i.current_revision_id]
    if not revision_ids:
        return [ExportedInvoice(i, [], {}) for i in invoices]
    # Not the revision rows themselves: their snapshot holds the logo, too heavy to load by
    # the hundred.
    rows = await connections.get("default").execute_query_dict(_REVISIONS_SQL, [revision_ids])
    revisions = {row["id"]: row for row in rows}
    lines: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for line in await InvoiceLineItem.filter(revision_id__in=revision_ids).order_by("position").values():
        lines[line["revision_id"]].append(line)
    return [
        ExportedInvoice(i, lines[i.current_revision_id], revisions.get(i.current_revision_id, {}))
        for i in invoices
    ]


def xero_quantity(line: dict[str, Any], amount: Decimal) -> tuple[Decimal, Decimal]:
    quantity, unit_price = line["quantity"], line["unit_price"]
    if quantity is not None and unit_price is not None and quantity > 0:
        # As `_plain` would: without the column's trailing zeros (neither is None here).
        quantity, unit_price = quantity.normalize(), unit_price.normalize()
        fits = quantity.as_tuple().exponent >= _XERO_PLACES and unit_price.as_tuple().exponent >= _XERO_PLACES
        if fits and quantity * unit_price == amount:
            return quantity, unit_price
    return Decimal(1), amount


def xero_rows(item: ExportedInvoice, style: ExportDateFormat, profile) -> list[list[Any]]:
    account, invoice = item.account, item.invoice
    email = next(iter(account.billing_emails), "") or account.contact_email
    contact = [
        item.customer_name, email, account.address_line1, account.address_line2, account.address_line3,
        account.address_line4, account.city, account.region, account.postal_code, account.country,
        invoice.number, item.po_number, format_date(invoice.issue_date, style), format_date(invoice.due_date, style),
    ]
    rows = []
    for line in item.lines:
        amount = item.money(line["amount"])
        quantity, unit_amount = xero_quantity(line, amount)
        rows.append([
            *contact, "", line["description"] or LineKind(line["kind"]).value.title(), quantity, unit_amount, "",
            profile.xero_account_code, profile.xero_tax_type, "", "", "", "", invoice.currency, "",
        ])
    return rows


def detailed_rows(item: ExportedInvoice, style: ExportDateFormat) -> list[list[Any]]:
    invoice, revision, money = item.invoice, item.revision, item.money
    head = [
        invoice.number, invoice.status.value, invoice.payment_status.value, invoice.delivery_status.value,
        item.account.name, item.customer_name, item.po_number, invoice.billing_period.start_date.strftime("%Y-%m"),
        format_date(invoice.issue_date, style), format_date(invoice.due_date, style), invoice.currency,
        revision.get("revision"), revision.get("cost_currency"), _plain(revision.get("exchange_rate")),
    ]
    totals = [
        money(invoice.subtotal), money(invoice.adjustments), money(invoice.charges), money(invoice.total),
        money(invoice.amount_paid), money(invoice.amount_refunded), money(amount_due(invoice)),
        money(invoice.amount_credited), money(invoice.credit_applied),
    ]
    return [
        [
            *head, line["position"], LineKind(line["kind"]).value, line["description"], line["provider_name"],
            line["service_name"], line["service_category"], _plain(line["quantity"]), line["unit"],
            _plain(line["unit_price"]), money(line["amount"]), *totals,
        ]
        for line in item.lines
    ]


async def _profiles(items: list[ExportedInvoice]) -> dict[Any, BillingProfile]:
    """Billing profiles of the invoices' accounts (defaults when an account has none now)."""
    ids = {i.account.billing_profile_id for i in items if i.account.billing_profile_id}
    found = {p.id: p for p in await BillingProfile.filter(id__in=ids)} if ids else {}
    return defaultdict(BillingProfile, found)


def _stem(items: list[ExportedInvoice], fmt: ExportFormat) -> str:
    months = sorted({i.invoice.billing_period.start_date.strftime("%Y-%m") for i in items})
    span = months[0] if len(months) == 1 else f"{months[0]}-to-{months[-1]}"
    return f"invoices-{span}-{fmt.value.lower()}"


async def build_export(
    organization: Organization, items: list[ExportedInvoice], fmt: ExportFormat,
    progress: Callable[[int], None] | None = None,
) -> ExportFile:
    """The CSV of `items` in `fmt`; a Xero export of more than MAX_INVOICES_PER_FILE
    invoices is a zip of CSV files of at most that many each, in number order."""
    style = organization.export_date_format
    profiles = await _profiles(items) if fmt is ExportFormat.XERO else {}
    chunk = MAX_INVOICES_PER_FILE if fmt is ExportFormat.XERO else max(len(items), 1)
    stem, parts = _stem(items, fmt), []
    for start in range(0, len(items), chunk):
        rows = []
        for item in items[start:start + chunk]:
            if fmt is ExportFormat.XERO:
                rows += xero_rows(item, style, profiles[item.account.billing_profile_id])
            else:
                rows += detailed_rows(item, style)
        columns = XERO_COLUMNS if fmt is ExportFormat.XERO else DETAILED_COLUMNS
        parts.append(write_csv(columns, rows))
        if progress:
            progress(min(start + chunk, len(items)))
    notes = await credit_notes.load_credit_notes([item.invoice for item in items])
    if len(parts) == 1 and not notes:
        return ExportFile(f"{stem}.csv", CSV_TYPE, parts[0], len(items))
    # Invoices and credit notes are two files (Xero imports them on two screens), in one zip.
    names = [f"{stem}.csv"] if len(parts) == 1 else [f"{stem}-{n}.csv" for n in range(1, len(parts) + 1)]
    files = dict(zip(names, parts))
    if notes:
        files[f"credit-notes-{stem.removeprefix('invoices-')}.csv"] = _credit_notes_csv(notes, fmt, style, profiles)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return ExportFile(f"{stem}.zip", "application/zip", buffer.getvalue(), len(items), len(notes))


def _credit_notes_csv(notes: list, fmt: ExportFormat, style: ExportDateFormat, profiles: dict) -> bytes:
    def dated(day: date) -> str:
        return format_date(day, style)

    if fmt is ExportFormat.XERO:
        rows = [row for n in notes for row in credit_notes.xero_rows(
            n, dated, profiles[n.invoice.managed_account.billing_profile_id])]
        return write_csv(credit_notes.XERO_CREDIT_NOTE_COLUMNS, rows)
    rows = [row for n in notes for row in credit_notes.detailed_rows(n, dated)]
    return write_csv(credit_notes.DETAILED_CREDIT_NOTE_COLUMNS, rows)


def exportable(query, fmt: ExportFormat):
    """Invoices of `query` that `fmt` exports: approved (and, in DETAILED, voided) ones."""
    return query.filter(status__in=EXPORTED_STATUSES[fmt], approved_at__isnull=False)


async def _by_ids(principal, fmt: ExportFormat, ids: list) -> Any:
    if len(ids) > MAX_IDS:
        raise ValidationFailed(f"At most {MAX_IDS} ids at once.", field="ids")
    wanted = {i for i in ids if i is not None}
    visible = await visible_invoices(principal).filter(id__in=wanted).values("id", "number", "status", "approved_at")
    if None in ids or len(visible) < len(wanted):
        raise NotFound("Some of the invoices do not exist.", field="ids")
    refused = sorted(
        (row["number"] or str(row["id"])) for row in visible
        if row["status"] not in EXPORTED_STATUSES[fmt] or row["approved_at"] is None
    )
    if refused:
        allowed = " or ".join(s.value.lower() for s in EXPORTED_STATUSES[fmt])
        raise InvalidTransition(
            f"Only {allowed} invoices are exported as {fmt.value}: not {', '.join(refused[:5])}.",
            field="ids", code=ErrorCode.NOT_EXPORTABLE,
        )
    return visible_invoices(principal).filter(id__in=wanted)


async def export_invoices(
    principal, fmt: ExportFormat, *, ids: list | None = None, where: InvoiceQuery | None = None,
    today: date | None = None,
) -> ExportFile:
    """Export the principal's invoices chosen by `ids` (each must be exportable) or by the
    list conditions `where` (the exportable ones among them). Exactly one must be given."""
    if (ids is None) == (where is None):
        raise ValidationFailed("Give either ids or a filter, not both.", field="ids")
    if ids is not None:
        query = await _by_ids(principal, fmt, ids)
    else:
        # `where` is the one given (checked above); its presets count from `today`.
        assert where is not None and today is not None
        query = exportable(filter_invoices(visible_invoices(principal), where, today), fmt)
    organization = await Organization.get(id=principal.organization_id)
    return await _export(organization, query, fmt, "ids" if ids is not None else "filter")


@dataclass(frozen=True)
class StoredDocument:
    """A stored file to put in an archive, under `filename`."""

    filename: str
    stored: str


async def invoice_pdfs(principal, *, ids: list | None = None, where: InvoiceQuery | None = None,
                       today: date | None = None) -> list[StoredDocument]:
    """The current PDFs of the principal's invoices chosen by `ids` (each must have one) or by
    the list conditions `where` (those that have one), in number order, named by number."""
    if (ids is None) == (where is None):
        raise ValidationFailed("Give either ids or a filter, not both.", field="ids")
    if ids is not None:
        if len(ids) > MAX_IDS:
            raise ValidationFailed(f"At most {MAX_IDS} ids at once.", field="ids")
        wanted = {i for i in ids if i is not None}
        query = visible_invoices(principal).filter(id__in=wanted)
        if None in ids or await query.count() < len(wanted):
            raise NotFound("Some of the invoices do not exist.", field="ids")
    else:
        assert where is not None and today is not None
        query = filter_invoices(visible_invoices(principal), where, today)
    rows = await query.filter(current_revision_id__isnull=False).order_by("number", "id").values(
        "id", "number", "current_revision__pdf_path"
    )
    found = [row for row in rows if row["current_revision__pdf_path"]]
    if ids is not None and len(found) < len(set(ids)):
        missing = sorted(str(i) for i in set(ids) - {row["id"] for row in found})
        raise InvalidTransition(
            f"Some of the invoices have no PDF yet (generate them first): {', '.join(missing[:5])}.",
            field="ids", code=ErrorCode.NOT_EXPORTABLE,
        )
    if not found:
        raise ValidationFailed("No invoice with a PDF matches.", field="filter", code=ErrorCode.NOTHING_TO_EXPORT)
    return [
        StoredDocument(safe_filename(row["number"] or str(row["id"]), "pdf"), row["current_revision__pdf_path"])
        for row in found
    ]


async def export_month(
    organization: Organization, month: date, fmt: ExportFormat, progress: Callable[[int], None] | None = None
) -> ExportFile:
    """Every invoice of a billed month that `fmt` exports (the month-end export)."""
    query = Invoice.filter(organization_id=organization.id, billing_period__start_date=month)
    return await _export(organization, exportable(query, fmt), fmt, "month", progress)


async def _export(organization, query, fmt: ExportFormat, field: str, progress=None) -> ExportFile:
    items = await load_exported(query)
    if not items:
        raise ValidationFailed("There is no approved invoice to export.", field=field, code=ErrorCode.NOTHING_TO_EXPORT)
    return await build_export(organization, items, fmt, progress)


async def set_date_format(principal, style: ExportDateFormat) -> Organization:
    """The organization's date format of exports."""
    async with in_transaction() as connection:
        was = await Organization.filter(id=principal.organization_id).select_for_update().using_db(connection).get()
        await Organization.filter(id=was.id).using_db(connection).update(export_date_format=style)
        now = await Organization.filter(id=was.id).using_db(connection).get()
        await record_change(connection, AuditEntity.ORGANIZATION, now.id, now.id, snapshot(was), snapshot(now))
    return now
