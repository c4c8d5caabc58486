"""Payments received against an invoice, and refunds of them."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model

from models.base import enum_check, money

if TYPE_CHECKING:
    from models.auth import User
    from models.invoices.tables import Invoice


class PaymentMethod(str, Enum):
    BANK_TRANSFER = "BANK_TRANSFER"
    CARD = "CARD"
    DIRECT_DEBIT = "DIRECT_DEBIT"
    CHECK = "CHECK"
    CASH = "CASH"
    OTHER = "OTHER"


class Payment(Model):
    id = fields.UUIDField(primary_key=True)
    invoice: fields.ForeignKeyRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="payments", on_delete=fields.RESTRICT
    )
    amount = money()
    paid_on = fields.DateField()
    method = fields.CharEnumField(PaymentMethod, max_length=64, default=PaymentMethod.BANK_TRANSFER)
    reference = fields.CharField(max_length=255, default="")
    recorded_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "payments"
        constraints = (
            CheckConstraint(check="amount > 0", name="payments_amount_positive"),
            enum_check("payments", "method", PaymentMethod),
        )


class Refund(Model):
    id = fields.UUIDField(primary_key=True)
    invoice: fields.ForeignKeyRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="refunds", on_delete=fields.RESTRICT
    )
    payment: fields.ForeignKeyNullableRelation[Payment] = fields.ForeignKeyField(
        "models.Payment", related_name="refunds", null=True, on_delete=fields.RESTRICT
    )
    amount = money()
    refunded_on = fields.DateField()
    reason = fields.CharField(max_length=1024, default="")
    recorded_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "refunds"
        constraints = (CheckConstraint(check="amount > 0", name="refunds_amount_positive"),)
