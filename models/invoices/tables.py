"""Invoice tables: invoices, their immutable revisions and line items, the timeline, numbering."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model

from models.base import TimestampMixin, enum_check, money

if TYPE_CHECKING:
    from models.auth import User
    from models.billing_periods.tables import BillingPeriod
    from models.managed_accounts import ManagedAccount
    from models.organizations import Organization


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
    # A one-off item added to the draft by hand (a setup fee, hardware).
    ONE_OFF = "ONE_OFF"
    RULE = "RULE"
    CHARGE = "CHARGE"
    TAX = "TAX"
    # Costs of an earlier, already invoiced month that a delivery restated afterwards.
    LATE_COST = "LATE_COST"


class InvoiceKind(str, Enum):
    """A month's invoice, or one billing what was delivered for the month after it was invoiced."""

    REGULAR = "REGULAR"
    SUPPLEMENTARY = "SUPPLEMENTARY"


class Invoice(TimestampMixin, Model):
    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="invoices", on_delete=fields.RESTRICT
    )
    managed_account: fields.ForeignKeyRelation[ManagedAccount] = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="invoices", on_delete=fields.RESTRICT
    )
    billing_period: fields.ForeignKeyRelation[BillingPeriod] = fields.ForeignKeyField(
        "models.BillingPeriod", related_name="invoices", on_delete=fields.RESTRICT
    )
    kind = fields.CharEnumField(InvoiceKind, max_length=16, default=InvoiceKind.REGULAR, db_default=InvoiceKind.REGULAR)
    # The provider this invoice bills alone, when the account has one invoice per provider;
    # empty when it bills every provider.
    provider_name = fields.CharField(max_length=128, default="", db_default="")
    # The voided invoice this one replaces (same account and month).
    replaces: fields.ForeignKeyNullableRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="replaced_by", null=True, unique=True, on_delete=fields.RESTRICT
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
    # The TAX lines' part of `charges`.
    tax_total = money(default=0, db_default=0)
    amount_paid = money(default=0)
    amount_refunded = money(default=0)
    # Credit notes of this invoice (their totals), and credit of other credit notes applied
    # to it: see models/credit_notes.
    amount_credited = money(default=0, db_default=0)
    credit_applied = money(default=0, db_default=0)
    issue_date = fields.DateField(null=True)
    due_date = fields.DateField(null=True)
    current_revision: fields.ForeignKeyNullableRelation[InvoiceRevision] = fields.ForeignKeyField(
        "models.InvoiceRevision", related_name=False, null=True, on_delete=fields.RESTRICT
    )
    error_message = fields.TextField(null=True)
    # A note for the customer printed on the invoice (set on a draft; frozen once approved).
    memo = fields.TextField(default="", db_default="")
    # When the automatic approval and send is due (accounts set to auto-invoice SEND); null
    # when none is queued.
    auto_send_at = fields.DatetimeField(null=True)
    approved_at = fields.DatetimeField(null=True)
    voided_at = fields.DatetimeField(null=True)
    # The copy marked VOID, printed beside its revision's frozen PDF once it is voided.
    void_pdf_path = fields.CharField(max_length=512, null=True)

    # The foreign keys' columns, which Tortoise sets on the instance.
    organization_id: UUID
    managed_account_id: UUID
    billing_period_id: UUID
    current_revision_id: UUID | None
    replaces_id: UUID | None

    class Meta:
        table = "invoices"
        constraints = (
            # One month's invoice per account, month and provider split, voided ones aside (a
            # replacement takes their place); one number per organization.
            UniqueConstraint(
                fields=("managed_account_id", "billing_period_id", "provider_name"),
                name="invoices_account_period_unique",
                condition="kind = 'REGULAR' AND status <> 'VOIDED'",
            ),
            UniqueConstraint(fields=("organization_id", "number"), name="invoices_number_unique"),
            enum_check("invoices", "status", InvoiceStatus),
            enum_check("invoices", "kind", InvoiceKind),
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
            CheckConstraint(
                check="amount_credited >= 0 AND credit_applied >= 0 AND amount_credited <= GREATEST(total, 0)"
                " AND amount_paid + credit_applied <= GREATEST(total, 0)",
                name="invoices_credits_consistent",
            ),
        )


class InvoiceNumberCounter(Model):
    """The last number used per organization and year; incremented with one atomic UPDATE."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name=False, on_delete=fields.CASCADE
    )
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
    invoice: fields.ForeignKeyRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="revisions", on_delete=fields.RESTRICT
    )
    revision = fields.SmallIntField()
    created_at = fields.DatetimeField(auto_now_add=True)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    template_version = fields.CharField(max_length=32)
    currency = fields.CharField(max_length=3)
    cost_currency = fields.CharField(max_length=3)
    exchange_rate = fields.DecimalField(max_digits=24, decimal_places=10, default=1)
    # Every rate the revision applied: cost currency -> rate into `currency` (several when the
    # month's costs were billed in several currencies).
    exchange_rates: fields.JSONField[dict[str, str]] = fields.JSONField(default=dict, db_default=fields.SqlDefault("'{}'::jsonb"))
    subtotal = money()
    adjustments = money()
    charges = money()
    total = money()
    issue_date = fields.DateField()
    due_date = fields.DateField()
    # What the checks before approval found when it was generated (`models.invoices.checks`).
    checks: fields.JSONField[list[dict[str, Any]]] = fields.JSONField(
        default=list, db_default=fields.SqlDefault("'[]'::jsonb")
    )
    # The FOCUS cost column the usage was billed on.
    billing_basis = fields.CharField(max_length=16, default="BILLED", db_default="BILLED")
    # The full view the template was rendered from (MSP and customer details as they were).
    snapshot: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    pdf_path = fields.CharField(max_length=512, null=True)
    pdf_sha256 = fields.CharField(max_length=64, null=True)
    pdf_size = fields.IntField(null=True)
    # The language it was printed in: printing it again (a VOID copy) uses this one.
    locale = fields.CharField(max_length=8, default="en", db_default="en")

    line_items: fields.ReverseRelation[InvoiceLineItem]

    class Meta:
        table = "invoice_revisions"
        constraints = (
            UniqueConstraint(fields=("invoice_id", "revision"), name="invoice_revisions_unique"),
            CheckConstraint(check="revision >= 1", name="invoice_revisions_positive"),
            CheckConstraint(check="exchange_rate > 0", name="invoice_revisions_rate_positive"),
            # The subtotal already includes the adjustments (billing rules); taxes and charges
            # are computed on it.
            CheckConstraint(check="total = subtotal + charges", name="invoice_revisions_total_adds_up"),
        )


class InvoiceLineItem(Model):
    id = fields.BigIntField(primary_key=True)
    revision: fields.ForeignKeyRelation[InvoiceRevision] = fields.ForeignKeyField(
        "models.InvoiceRevision", related_name="line_items", on_delete=fields.RESTRICT
    )
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


class InvoiceExtraLine(Model):
    """A one-off item an owner adds to an invoice before approval; every generation prints it
    after the usage, in `position` order, and taxes and charges count it."""

    id = fields.UUIDField(primary_key=True)
    invoice: fields.ForeignKeyRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="extra_lines", on_delete=fields.CASCADE
    )
    position = fields.SmallIntField()
    description = fields.CharField(max_length=1024)
    quantity = fields.DecimalField(max_digits=20, decimal_places=4)
    unit_price = fields.DecimalField(max_digits=20, decimal_places=4)
    created_at = fields.DatetimeField(auto_now_add=True)

    invoice_id: UUID

    class Meta:
        table = "invoice_extra_lines"
        constraints = (
            UniqueConstraint(fields=("invoice_id", "position"), name="invoice_extra_lines_position_unique"),
            CheckConstraint(check="btrim(description) <> ''", name="invoice_extra_lines_description_present"),
        )


class InvoiceEvent(Model):
    """The timeline: who did what, when. Append-only (the database refuses edits)."""

    id = fields.BigIntField(primary_key=True)
    invoice: fields.ForeignKeyRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="events", on_delete=fields.RESTRICT
    )
    at = fields.DatetimeField(auto_now_add=True)
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # Who acted when no user did: "system", "worker", "scheduler".
    actor_label = fields.CharField(max_length=64, default="")
    kind = fields.CharField(max_length=64)
    from_status = fields.CharField(max_length=24, null=True)
    to_status = fields.CharField(max_length=24, null=True)
    detail: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)

    class Meta:
        table = "invoice_events"
        constraints = (
            CheckConstraint(check="actor_id IS NOT NULL OR actor_label <> ''", name="invoice_events_actor_known"),
        )
