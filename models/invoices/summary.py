"""A month at a glance: its invoices by display status with their totals per currency, and
what still needs a person, in a few statements whatever the month's size (the console's month
view reads it instead of every invoice)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from tortoise.functions import Count, Sum

from models.currencies import round_money
from models.invoices.checks import Severity, current_findings_of
from models.invoices.queries import DisplayStatus, display_status, visible_invoices
from models.invoices.tables import DeliveryStatus, Invoice, InvoiceStatus, PaymentStatus

_GROUPS = ("status", "payment_status", "delivery_status", "currency")
_OPEN = (InvoiceStatus.AWAITING_APPROVAL, InvoiceStatus.ERROR)


@dataclass
class StatusTotal:
    """The invoices of one display status and currency."""

    display_status: DisplayStatus
    currency: str
    count: int
    total: Decimal


@dataclass
class MonthSummary:
    month: date
    totals: list[StatusTotal] = field(default_factory=list)
    invoices: int = 0
    ready: int = 0
    awaiting_approval: int = 0
    errors: int = 0
    warnings: int = 0
    invoices_with_warnings: int = 0
    undelivered: int = 0
    late_deliveries: int = 0


async def month_summary(principal, month: date) -> MonthSummary:
    """The month's invoices the principal may see (`visible_invoices`), summed in the database
    per status, payment, delivery and currency (a few dozen groups at most), each group then
    given its display status by `display_status` itself; the unacknowledged warnings are the
    approval's own (`current_findings_of`) on the invoices that await approval or failed."""
    month = month.replace(day=1)
    scoped = visible_invoices(principal).filter(billing_period__start_date=month)
    rows = await scoped.annotate(n=Count("id"), amount=Sum("total")).group_by(*_GROUPS).values(*_GROUPS, "n", "amount")
    summary = MonthSummary(month=month)
    sums: dict[tuple[DisplayStatus, str], StatusTotal] = {}
    for row in rows:
        status = InvoiceStatus(row["status"])
        delivery = DeliveryStatus(row["delivery_status"])
        shown = display_status(Invoice(status=status, payment_status=PaymentStatus(row["payment_status"]), delivery_status=delivery))
        count, amount = int(row["n"]), Decimal(str(row["amount"] or 0))
        entry = sums.setdefault((shown, row["currency"]), StatusTotal(shown, row["currency"], 0, Decimal(0)))
        entry.count += count
        entry.total += amount
        summary.invoices += count
        summary.ready += count if status == InvoiceStatus.READY_TO_INVOICE else 0
        summary.awaiting_approval += count if status == InvoiceStatus.AWAITING_APPROVAL else 0
        summary.errors += count if status == InvoiceStatus.ERROR else 0
        summary.undelivered += count if status == InvoiceStatus.APPROVED and delivery != DeliveryStatus.SENT else 0
    for entry in sums.values():  # each total is in its currency's minor unit: so is their sum
        entry.total = round_money(entry.total, entry.currency)
    order = list(DisplayStatus)
    summary.totals = sorted(sums.values(), key=lambda t: (order.index(t.display_status), t.currency))
    open_ = await scoped.filter(status__in=_OPEN).only(
        "id", "organization_id", "managed_account_id", "provider_name", "status", "current_revision_id"
    )
    for findings in await current_findings_of(list(open_)):
        warned = sum(1 for f in findings if f.severity == Severity.WARNING)
        summary.warnings += warned
        summary.invoices_with_warnings += 1 if warned else 0
    summary.late_deliveries = (
        await scoped.filter(status=InvoiceStatus.APPROVED, late_costs__billed_invoice_id__isnull=True, late_costs__id__isnull=False)
        .distinct()
        .count()
    )
    return summary
