"""Payments received against an invoice, and refunds of them."""

from __future__ import annotations

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model

from models.base import money


class Payment(Model):
    id = fields.UUIDField(primary_key=True)
    invoice = fields.ForeignKeyField("models.Invoice", related_name="payments", on_delete=fields.RESTRICT)
    amount = money()
    paid_on = fields.DateField()
    method = fields.CharField(max_length=64, default="")
    reference = fields.CharField(max_length=255, default="")
    recorded_by = fields.ForeignKeyField("models.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "payments"
        constraints = (CheckConstraint(check="amount > 0", name="payments_amount_positive"),)


class Refund(Model):
    id = fields.UUIDField(primary_key=True)
    invoice = fields.ForeignKeyField("models.Invoice", related_name="refunds", on_delete=fields.RESTRICT)
    payment = fields.ForeignKeyField("models.Payment", related_name="refunds", null=True, on_delete=fields.RESTRICT)
    amount = money()
    refunded_on = fields.DateField()
    reason = fields.CharField(max_length=1024, default="")
    recorded_by = fields.ForeignKeyField("models.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "refunds"
        constraints = (CheckConstraint(check="amount > 0", name="refunds_amount_positive"),)
