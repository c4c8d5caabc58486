"""Credit note tables: the credit notes, their frozen lines, their number counters and what
became of the credit a credit note leaves beyond its invoice (refunded, or applied to another
invoice of the account)."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model

from models.base import enum_check, money
from models.invoices.tables import DeliveryStatus, LineKind

if TYPE_CHECKING:
    from models.auth import User
    from models.invoices.tables import Invoice
    from models.managed_accounts import ManagedAccount
    from models.organizations import Organization


class CreditMode(str, Enum):
    """How the credited amount was chosen."""

    FULL = "FULL"
    LINES = "LINES"
    AMOUNT = "AMOUNT"


class CreditUse(str, Enum):
    """Where remaining credit went: back to the customer, or onto another invoice."""

    REFUND = "REFUND"
    INVOICE = "INVOICE"


class CreditNote(Model):
    """An issued credit note. Its number, amounts, lines and snapshot never change (the
    database refuses it); only its PDF (stored once, after commit), its delivery status and
    the running sums of its remaining credit's uses do."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="credit_notes", on_delete=fields.RESTRICT
    )
    invoice: fields.ForeignKeyRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="credit_notes", on_delete=fields.RESTRICT
    )
    managed_account: fields.ForeignKeyRelation[ManagedAccount] = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="credit_notes", on_delete=fields.RESTRICT
    )
    number = fields.CharField(max_length=64)
    issue_date = fields.DateField()
    reason = fields.CharField(max_length=1024)
    mode = fields.CharEnumField(CreditMode, max_length=16)
    currency = fields.CharField(max_length=3)
    subtotal = money()
    # Taxes and other charges credited; `tax_total` is the taxes' part of them.
    charges = money()
    tax_total = money()
    total = money()
    # The part of the total that lowered the invoice's own amount due when it was issued; the
    # rest is account credit, refunded or applied to other invoices.
    allocated = money()
    amount_refunded = money(default=0)
    amount_applied = money(default=0)
    delivery_status = fields.CharEnumField(DeliveryStatus, max_length=16, default=DeliveryStatus.NOT_SENT)
    template_version = fields.CharField(max_length=32)
    # Everything the PDF prints, as it was at issue (MSP and customer details included).
    snapshot: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    pdf_path = fields.CharField(max_length=512, null=True)
    pdf_sha256 = fields.CharField(max_length=64, null=True)
    pdf_size = fields.IntField(null=True)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    organization_id: UUID
    invoice_id: UUID
    managed_account_id: UUID
    created_by_id: UUID | None

    lines: fields.ReverseRelation[CreditNoteLine]

    class Meta:
        table = "credit_notes"
        constraints = (
            UniqueConstraint(fields=("organization_id", "number"), name="credit_notes_number_unique"),
            enum_check("credit_notes", "mode", CreditMode),
            enum_check("credit_notes", "delivery_status", DeliveryStatus),
            CheckConstraint(check="currency ~ '^[A-Z]{3}$'", name="credit_notes_currency_iso"),
            CheckConstraint(check="total = subtotal + charges AND total > 0", name="credit_notes_total_adds_up"),
            CheckConstraint(
                check="allocated >= 0 AND amount_refunded >= 0 AND amount_applied >= 0"
                " AND allocated + amount_refunded + amount_applied <= total",
                name="credit_notes_credit_consistent",
            ),
        )


class CreditNoteLine(Model):
    """One printed line of a credit note, positive where it credits the customer."""

    id = fields.BigIntField(primary_key=True)
    credit_note: fields.ForeignKeyRelation[CreditNote] = fields.ForeignKeyField(
        "models.CreditNote", related_name="lines", on_delete=fields.RESTRICT
    )
    position = fields.SmallIntField()
    kind = fields.CharEnumField(LineKind, max_length=16)
    description = fields.CharField(max_length=1024)
    # The line of the invoice's revision it credits (None: a credit by amount's net line).
    invoice_line_position = fields.SmallIntField(null=True)
    amount = money()

    class Meta:
        table = "credit_note_lines"
        constraints = (
            UniqueConstraint(fields=("credit_note_id", "position"), name="credit_note_lines_position_unique"),
            enum_check("credit_note_lines", "kind", LineKind),
        )


class CreditNoteNumberCounter(Model):
    """The last credit note number used per organization and year (CN-2026-0001)."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name=False, on_delete=fields.CASCADE
    )
    year = fields.SmallIntField()
    last_value = fields.IntField(default=0)

    class Meta:
        table = "credit_note_number_counters"
        constraints = (
            UniqueConstraint(fields=("organization_id", "year"), name="credit_note_number_counters_unique"),
            CheckConstraint(check="last_value >= 0", name="credit_note_number_counters_positive"),
        )


class CreditUseEntry(Model):
    """Remaining credit of a credit note refunded to the customer, or applied to another
    approved invoice of the same account (a payment-like allocation). Append-only."""

    id = fields.UUIDField(primary_key=True)
    credit_note: fields.ForeignKeyRelation[CreditNote] = fields.ForeignKeyField(
        "models.CreditNote", related_name="uses", on_delete=fields.RESTRICT
    )
    kind = fields.CharEnumField(CreditUse, max_length=16)
    # The invoice the credit was applied to (kind INVOICE).
    invoice: fields.ForeignKeyNullableRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="credit_received", null=True, on_delete=fields.RESTRICT
    )
    amount = money()
    used_on = fields.DateField()
    reference = fields.CharField(max_length=255, default="")
    recorded_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    credit_note_id: UUID
    invoice_id: UUID | None

    class Meta:
        table = "credit_uses"
        constraints = (
            enum_check("credit_uses", "kind", CreditUse),
            CheckConstraint(check="amount > 0", name="credit_uses_amount_positive"),
            CheckConstraint(check="(kind = 'INVOICE') = (invoice_id IS NOT NULL)", name="credit_uses_invoice_given"),
        )
