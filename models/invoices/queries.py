"""The invoice list: who sees which invoices, and the conditions SPAs filter by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from tortoise import connections
from tortoise.expressions import Q

from models.currencies import MINOR_UNITS
from models.invoices.tables import DeliveryStatus, Invoice, InvoiceStatus, PaymentStatus
from models.text import storable

# States a customer may see: the invoice was approved (and may since have been voided).
CUSTOMER_VISIBLE = (InvoiceStatus.APPROVED, InvoiceStatus.VOIDED)


def visible_invoices(principal):
    """The one query every invoice read goes through. MSP users see their organization's
    invoices; a customer sees only its own account's, and only once approved."""
    query = Invoice.filter(organization_id=principal.organization_id)
    if not principal.is_msp_user:
        query = query.filter(
            managed_account_id=principal.managed_account_id,
            status__in=CUSTOMER_VISIBLE,
            approved_at__isnull=False,
        )
    return query


async def visible_invoice_by_number(principal, number: str) -> Invoice | None:
    """The invoice numbered `number` (INV-2026-0042), if the principal may see it."""
    numbers = storable(Invoice, "number", [number.strip()])
    return await visible_invoices(principal).get_or_none(number=numbers[0]) if numbers else None


def is_visible(principal, organization_id, managed_account_id, status, approved: bool) -> bool:
    """`visible_invoices` for one invoice already in hand (a live event): the same rule."""
    if str(organization_id) != str(principal.organization_id):
        return False
    if principal.is_msp_user:
        return True
    return (
        str(managed_account_id) == str(principal.managed_account_id)
        and status in CUSTOMER_VISIBLE
        and approved
    )


def amount_due(invoice: Invoice) -> Decimal:
    """What is still owed: the total less its credit notes, payments and credit applied from
    other credit notes (refunds do not reopen an invoice); a voided invoice owes nothing.
    Never negative: what a credit note leaves beyond it is account credit (models/credit_notes)."""
    if invoice.status == InvoiceStatus.VOIDED:
        return Decimal(0)
    settled = invoice.amount_credited + invoice.amount_paid + invoice.credit_applied
    return max(invoice.total - settled, Decimal(0))


class DatePreset(str, Enum):
    THIS_MONTH = "THIS_MONTH"
    LAST_MONTH = "LAST_MONTH"
    THIS_QUARTER = "THIS_QUARTER"
    LAST_QUARTER = "LAST_QUARTER"
    THIS_YEAR = "THIS_YEAR"


def preset_range(preset: DatePreset, today: date) -> tuple[date, date]:
    """The inclusive first and last day of a preset, relative to `today` (in the
    organization's time zone)."""
    if preset == DatePreset.THIS_YEAR:
        return date(today.year, 1, 1), date(today.year, 12, 31)
    if preset in (DatePreset.THIS_MONTH, DatePreset.LAST_MONTH):
        first = today.replace(day=1)
        if preset == DatePreset.LAST_MONTH:
            first = (first - timedelta(days=1)).replace(day=1)
        return first, _add_months(first, 1) - timedelta(days=1)
    first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    if preset == DatePreset.LAST_QUARTER:
        first = _add_months(first, -3)
    return first, _add_months(first, 3) - timedelta(days=1)


def _add_months(first_of_month: date, months: int) -> date:
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def organization_today(timezone_name: str) -> date:
    return datetime.now(ZoneInfo(timezone_name)).date()


@dataclass
class InvoiceQuery:
    """Conditions of the invoice list; all combine (AND)."""

    statuses: list[InvoiceStatus] | None = None
    payment_statuses: list[PaymentStatus] | None = None
    account_ids: list | None = None
    period_from: date | None = None
    period_to: date | None = None
    issued_from: date | None = None
    issued_to: date | None = None
    preset: DatePreset | None = None
    search: str | None = None
    display_statuses: list[DisplayStatus] | None = None


def filter_invoices(query, where: InvoiceQuery, today: date):
    """Apply the list conditions to a (scoped) invoice query. Presets select by issue date."""
    if where.statuses:
        query = query.filter(status__in=where.statuses)
    if where.payment_statuses:
        query = query.filter(payment_status__in=where.payment_statuses)
    if where.display_statuses:
        shown = Q()
        for status in where.display_statuses:
            shown |= _DISPLAYED[status]
        query = query.filter(shown)
    if where.account_ids is not None:
        query = query.filter(managed_account_id__in=where.account_ids)
    if where.period_from:
        query = query.filter(billing_period__start_date__gte=where.period_from)
    if where.period_to:
        query = query.filter(billing_period__start_date__lte=where.period_to)
    if where.preset:
        first, last = preset_range(where.preset, today)
        query = query.filter(issue_date__gte=first, issue_date__lte=last)
    if where.issued_from:
        query = query.filter(issue_date__gte=where.issued_from)
    if where.issued_to:
        query = query.filter(issue_date__lte=where.issued_to)
    if where.search and where.search.strip():
        term = where.search.strip()
        query = query.filter(
            Q(number__icontains=term)
            | Q(managed_account__name__icontains=term)
            | Q(managed_account__official_company_name__icontains=term)
        )
    return query


async def late_costs_of(invoice_id: Any) -> list[dict[str, Any]]:
    """What deliveries after approval say about the invoice's month, per cost currency: the
    invoiced and delivered costs and rows as the latest delivery of each scope has them, the
    difference (the sum of every late cost's `billable`), what is left to bill, and the
    invoices that bill the rest."""
    return await connections.get("default").execute_query_dict(
        """WITH latest AS (
               SELECT DISTINCT ON (provider_name, billing_account_id, currency, origin)
                      currency, invoiced_cost, delivered_cost, invoiced_rows, delivered_rows
               FROM late_costs WHERE invoice_id = $1
               ORDER BY provider_name, billing_account_id, currency, origin, created_at DESC, id DESC
           ), amounts AS (
               SELECT currency, sum(billable) AS difference,
                      COALESCE(sum(billable) FILTER (WHERE billed_invoice_id IS NULL), 0) AS pending,
                      COALESCE(array_agg(DISTINCT billed_invoice_id) FILTER (WHERE billed_invoice_id IS NOT NULL),
                               '{}') AS billed_by
               FROM late_costs WHERE invoice_id = $1 GROUP BY currency
           )
           SELECT a.currency, a.difference, a.pending, a.billed_by,
                  sum(l.invoiced_cost) AS invoiced_cost, sum(l.delivered_cost) AS delivered_cost,
                  sum(l.invoiced_rows)::int AS invoiced_rows, sum(l.delivered_rows)::int AS delivered_rows
           FROM amounts a JOIN latest l USING (currency)
           GROUP BY a.currency, a.difference, a.pending, a.billed_by ORDER BY a.currency""",
        [str(invoice_id)],
    )


class DisplayStatus(str, Enum):
    """The one status a list screen shows (the cloud-factory console's colours)."""

    DRAFT = "DRAFT"
    PENDING = "PENDING"
    SENT = "SENT"
    PAID = "PAID"
    OVERDUE = "OVERDUE"
    VOIDED = "VOIDED"
    REFUNDED = "REFUNDED"


_DRAFTS = (InvoiceStatus.READY_TO_INVOICE, InvoiceStatus.GENERATING, InvoiceStatus.ERROR)
_REFUNDED = (PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_REFUNDED)


def display_status(invoice: Invoice) -> DisplayStatus:
    """VOIDED when voided; DRAFT until generated (or when generation failed); PENDING while
    awaiting approval, or approved with its e-mail not delivered yet; then from the payments:
    REFUNDED (any refund), PAID, OVERDUE, else SENT (delivered, unpaid or partly paid)."""
    if invoice.status == InvoiceStatus.VOIDED:
        return DisplayStatus.VOIDED
    if invoice.status in _DRAFTS:
        return DisplayStatus.DRAFT
    if invoice.status == InvoiceStatus.AWAITING_APPROVAL:
        return DisplayStatus.PENDING
    if invoice.payment_status in _REFUNDED:
        return DisplayStatus.REFUNDED
    if invoice.payment_status == PaymentStatus.PAID:
        return DisplayStatus.PAID
    if invoice.payment_status == PaymentStatus.OVERDUE:
        return DisplayStatus.OVERDUE
    if invoice.delivery_status != DeliveryStatus.SENT:
        return DisplayStatus.PENDING
    return DisplayStatus.SENT


_OWED = (PaymentStatus.UNPAID, PaymentStatus.PARTIALLY_PAID)
_APPROVED = Q(status=InvoiceStatus.APPROVED)
# `display_status` as conditions of the list (the same mapping, one condition per value).
_DISPLAYED = {
    DisplayStatus.VOIDED: Q(status=InvoiceStatus.VOIDED),
    DisplayStatus.DRAFT: Q(status__in=_DRAFTS),
    DisplayStatus.PENDING: Q(status=InvoiceStatus.AWAITING_APPROVAL)
    | (_APPROVED & Q(payment_status__in=_OWED) & ~Q(delivery_status=DeliveryStatus.SENT)),
    DisplayStatus.REFUNDED: _APPROVED & Q(payment_status__in=_REFUNDED),
    DisplayStatus.PAID: _APPROVED & Q(payment_status=PaymentStatus.PAID),
    DisplayStatus.OVERDUE: _APPROVED & Q(payment_status=PaymentStatus.OVERDUE),
    DisplayStatus.SENT: _APPROVED & Q(payment_status__in=_OWED) & Q(delivery_status=DeliveryStatus.SENT),
}


# The printed lines' columns as the API reads them: numbers as their exact text, the kind as
# its text, and the amount rounded by the database to the minor unit of the currency asked for.
_LINE_COLUMNS = (
    'l."position", l.kind, l.description, l.provider_name, l.service_name, l.service_category,'
    " l.quantity::text AS quantity, l.unit, l.unit_price::text AS unit_price,"
    " round(l.amount, k.units)::text AS amount"
)


async def printed_lines(keys: list[tuple[Any, str]]) -> list[list[Any]]:
    """The printed lines of each (revision id, currency), in order, as the driver's records,
    in one statement. A list page shows thousands of lines: PostgreSQL rounds each amount to
    the currency's minor unit (`round(numeric, places)` breaks ties away from zero, as
    `round_money` does) while it reads them, rather than Python converting and rounding
    every one; what is left is one `Decimal` of the rounded text per line."""
    if not keys:
        return []
    _, rows = await connections.get("default").execute_query(
        f"SELECT k.n, {_LINE_COLUMNS}"
        " FROM unnest($1::uuid[], $2::int[]) WITH ORDINALITY AS k(revision_id, units, n)"
        " JOIN invoice_line_items l ON l.revision_id = k.revision_id ORDER BY k.n, l.\"position\"",
        [[str(revision) for revision, _ in keys], [MINOR_UNITS[currency] for _, currency in keys]],
    )
    lines: list[list[Any]] = [[] for _ in keys]
    for row in rows:
        lines[row[0] - 1].append(row)  # n, read by position: the fastest read of a record
    return lines
