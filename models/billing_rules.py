"""Billing rules: credits, discounts, markups and tax charges on an account's costs."""

from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model

from models.base import TimestampMixin, enum_check


class RuleKind(str, Enum):
    CREDIT = "CREDIT"
    DISCOUNT = "DISCOUNT"
    MARKUP = "MARKUP"
    TAX = "TAX"


class RuleCalculation(str, Enum):
    PERCENT = "PERCENT"
    FIXED = "FIXED"


class BillingRule(TimestampMixin, Model):
    id = fields.UUIDField(primary_key=True)
    organization = fields.ForeignKeyField(
        "models.Organization", related_name="billing_rules", on_delete=fields.CASCADE
    )
    # None: the rule applies to every managed account of the organization.
    managed_account = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="billing_rules", null=True, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=255)
    kind = fields.CharEnumField(RuleKind, max_length=16)
    calculation = fields.CharEnumField(RuleCalculation, max_length=16)
    # A percentage (10 = 10 %) or an amount in the cost currency.
    value = fields.DecimalField(max_digits=20, decimal_places=4)
    provider_name = fields.CharField(max_length=128, null=True)
    service_name = fields.CharField(max_length=255, null=True)
    service_category = fields.CharField(max_length=128, null=True)
    # First and last month the rule applies to (first days of months); None = unbounded.
    starts_on = fields.DateField(null=True)
    ends_on = fields.DateField(null=True)
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "billing_rules"
        constraints = (
            enum_check("billing_rules", "kind", RuleKind),
            enum_check("billing_rules", "calculation", RuleCalculation),
            CheckConstraint(check="value >= 0", name="billing_rules_value_positive"),
            CheckConstraint(
                check="calculation <> 'PERCENT' OR kind IN ('MARKUP', 'TAX') OR value <= 100",
                name="billing_rules_percent_range",
            ),
            CheckConstraint(
                check="(starts_on IS NULL OR EXTRACT(DAY FROM starts_on) = 1)"
                " AND (ends_on IS NULL OR EXTRACT(DAY FROM ends_on) = 1)"
                " AND (starts_on IS NULL OR ends_on IS NULL OR starts_on <= ends_on)",
                name="billing_rules_months",
            ),
            CheckConstraint(check="btrim(name) <> ''", name="billing_rules_name_present"),
        )
