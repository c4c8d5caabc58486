"""Invoices, their immutable revisions and line items, the timeline, and numbering."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from zoneinfo import ZoneInfo

from tortoise import fields
from tortoise.expressions import Q
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model

from models.base import TimestampMixin, enum_check, money


class InvoiceStatus(str, Enum):
    READY_TO_INVOICE = "READY_TO_INVOICE"
    GENERATING = "GENERATING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    ERROR = "ERROR"
    APPROVED = "APPROVED"
    VOIDED = "VOIDED"


class PaymentStatus(str, Enum):
    UNPAID = "UNPAID"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    PAID = "PAID"
    OVERDUE = "OVERDUE"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"


class DeliveryStatus(str, Enum):
    NOT_SENT = "NOT_SENT"
    QUEUED = "QUEUED"
    SENT = "SENT"
    FAILED = "FAILED"


class LineKind(str, Enum):
    """What a printed line is; the total is the sum of every line."""

    USAGE = "USAGE"
    RULE = "RULE"
    CHARGE = "CHARGE"
    TAX = "TAX"


class Invoice(TimestampMixin, Model):
    id = fields.UUIDField(primary_key=True)
    organization = fields.ForeignKeyField(
        "models.Organization", related_name="invoices", on_delete=fields.RESTRICT
    )
    managed_account = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="invoices", on_delete=fields.RESTRICT
    )
    billing_period = fields.ForeignKeyField(
        "models.BillingPeriod", related_name="invoices", on_delete=fields.RESTRICT
    )
    # Assigned on first generation and kept for good (INV-2026-0042).
    number = fields.CharField(max_length=64, null=True)
    status = fields.CharEnumField(InvoiceStatus, max_length=24, default=InvoiceStatus.READY_TO_INVOICE)
    payment_status = fields.CharEnumField(PaymentStatus, max_length=24, default=PaymentStatus.UNPAID)
    delivery_status = fields.CharEnumField(DeliveryStatus, max_length=16, default=DeliveryStatus.NOT_SENT)
    currency = fields.CharField(max_length=3)
    subtotal = money(default=0)
    adjustments = money(default=0)
    charges = money(default=0)
    total = money(default=0)
    amount_paid = money(default=0)
    amount_refunded = money(default=0)
    issue_date = fields.DateField(null=True)
    due_date = fields.DateField(null=True)
    current_revision = fields.ForeignKeyField(
        "models.InvoiceRevision", related_name=False, null=True, on_delete=fields.RESTRICT
    )
    error_message = fields.TextField(null=True)
    approved_at = fields.DatetimeField(null=True)
    voided_at = fields.DatetimeField(null=True)

    class Meta:
        table = "invoices"
        constraints = (
            # One invoice per account and month; one number per organization.
            UniqueConstraint(fields=("managed_account_id", "billing_period_id"), name="invoices_account_period_unique"),
            UniqueConstraint(fields=("organization_id", "number"), name="invoices_number_unique"),
            enum_check("invoices", "status", InvoiceStatus),
            enum_check("invoices", "payment_status", PaymentStatus),
            enum_check("invoices", "delivery_status", DeliveryStatus),
            CheckConstraint(check="currency ~ '^[A-Z]{3}$'", name="invoices_currency_iso"),
            CheckConstraint(
                check="status NOT IN ('AWAITING_APPROVAL', 'APPROVED')"
                " OR (number IS NOT NULL AND current_revision_id IS NOT NULL"
                " AND issue_date IS NOT NULL AND due_date IS NOT NULL)",
                name="invoices_generated_complete",
            ),
            CheckConstraint(
                check="amount_paid >= 0 AND amount_refunded >= 0 AND amount_refunded <= amount_paid"
                " AND amount_paid <= GREATEST(total, 0)",
                name="invoices_amounts_consistent",
            ),
            CheckConstraint(check="due_date IS NULL OR due_date >= issue_date", name="invoices_due_after_issue"),
        )


class InvoiceNumberCounter(Model):
    """The last number used per organization and year; incremented with one atomic UPDATE."""

    id = fields.UUIDField(primary_key=True)
    organization = fields.ForeignKeyField("models.Organization", related_name=False, on_delete=fields.CASCADE)
    year = fields.SmallIntField()
    last_value = fields.IntField(default=0)

    class Meta:
        table = "invoice_number_counters"
        constraints = (
            UniqueConstraint(fields=("organization_id", "year"), name="invoice_number_counters_unique"),
            CheckConstraint(check="last_value >= 0", name="invoice_number_counters_positive"),
        )


class InvoiceRevision(Model):
    """One generation of an invoice: what was computed and printed, frozen."""

    id = fields.UUIDField(primary_key=True)
    invoice = fields.ForeignKeyField("models.Invoice", related_name="revisions", on_delete=fields.RESTRICT)
    revision = fields.SmallIntField()
    created_at = fields.DatetimeField(auto_now_add=True)
    created_by = fields.ForeignKeyField("models.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    template_version = fields.CharField(max_length=32)
    currency = fields.CharField(max_length=3)
    cost_currency = fields.CharField(max_length=3)
    exchange_rate = fields.DecimalField(max_digits=24, decimal_places=10, default=1)
    subtotal = money()
    adjustments = money()
    charges = money()
    total = money()
    issue_date = fields.DateField()
    due_date = fields.DateField()
    # The full view the template was rendered from (MSP and customer details as they were).
    snapshot = fields.JSONField(default=dict)
    pdf_path = fields.CharField(max_length=512, null=True)
    pdf_sha256 = fields.CharField(max_length=64, null=True)
    pdf_size = fields.IntField(null=True)

    line_items: fields.ReverseRelation[InvoiceLineItem]

    class Meta:
        table = "invoice_revisions"
        constraints = (
            UniqueConstraint(fields=("invoice_id", "revision"), name="invoice_revisions_unique"),
            CheckConstraint(check="revision >= 1", name="invoice_revisions_positive"),
            CheckConstraint(check="exchange_rate > 0", name="invoice_revisions_rate_positive"),
            CheckConstraint(
                check="total = subtotal + adjustments + charges", name="invoice_revisions_total_adds_up"
            ),
        )


class InvoiceLineItem(Model):
    id = fields.BigIntField(primary_key=True)
    revision = fields.ForeignKeyField("models.InvoiceRevision", related_name="line_items", on_delete=fields.RESTRICT)
    position = fields.SmallIntField()
    kind = fields.CharEnumField(LineKind, max_length=16, default=LineKind.USAGE)
    description = fields.CharField(max_length=1024)
    provider_name = fields.CharField(max_length=128, default="")
    service_name = fields.CharField(max_length=255, default="")
    service_category = fields.CharField(max_length=128, default="")
    quantity = fields.DecimalField(max_digits=38, decimal_places=16, null=True)
    unit = fields.CharField(max_length=64, null=True)
    unit_price = fields.DecimalField(max_digits=38, decimal_places=16, null=True)
    amount = money()

    class Meta:
        table = "invoice_line_items"
        constraints = (
            UniqueConstraint(fields=("revision_id", "position"), name="invoice_line_items_position_unique"),
            enum_check("invoice_line_items", "kind", LineKind),
        )


class InvoiceEvent(Model):
    """The timeline: who did what, when. Append-only (the database refuses edits)."""

    id = fields.BigIntField(primary_key=True)
    invoice = fields.ForeignKeyField("models.Invoice", related_name="events", on_delete=fields.RESTRICT)
    at = fields.DatetimeField(auto_now_add=True)
    actor = fields.ForeignKeyField("models.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    # Who acted when no user did: "system", "worker", "scheduler".
    actor_label = fields.CharField(max_length=64, default="")
    kind = fields.CharField(max_length=64)
    from_status = fields.CharField(max_length=24, null=True)
    to_status = fields.CharField(max_length=24, null=True)
    detail = fields.JSONField(default=dict)

    class Meta:
        table = "invoice_events"
        constraints = (
            CheckConstraint(check="actor_id IS NOT NULL OR actor_label <> ''", name="invoice_events_actor_known"),
        )


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


def amount_due(invoice: Invoice) -> Decimal:
    """What is still owed: the total less payments (refunds do not reopen an invoice); a
    voided invoice owes nothing. Never negative."""
    if invoice.status == InvoiceStatus.VOIDED:
        return Decimal(0)
    return max(invoice.total - invoice.amount_paid, Decimal(0))


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


def filter_invoices(query, where: InvoiceQuery, today: date):
    """Apply the list conditions to a (scoped) invoice query. Presets select by issue date."""
    if where.statuses:
        query = query.filter(status__in=where.statuses)
    if where.payment_statuses:
        query = query.filter(payment_status__in=where.payment_statuses)
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
