"""Billing profiles: the MSP's identity on an invoice (logo, company, bank, taxes, charges)."""

from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model

from models.base import AddressMixin, TimestampMixin, enum_check


class ChargeKind(str, Enum):
    """How a tax or additional charge is computed from the subtotal after billing rules."""

    PERCENT = "PERCENT"
    FIXED = "FIXED"


class BillingProfile(TimestampMixin, AddressMixin, Model):
    id = fields.UUIDField(primary_key=True)
    organization = fields.ForeignKeyField(
        "models.Organization", related_name="billing_profiles", on_delete=fields.CASCADE
    )
    nickname = fields.CharField(max_length=255)
    company_name = fields.CharField(max_length=255, default="")
    logo = fields.BinaryField(null=True)
    logo_content_type = fields.CharField(max_length=32, null=True)
    # Ordered [{"key": "VAT", "value": "GB123"}] pairs, printed below the address.
    business_fields = fields.JSONField(default=list)
    # Ordered [{"key": "IBAN", "value": "..."}] pairs, printed in the payment section.
    banking_fields = fields.JSONField(default=list)
    xero_account_code = fields.CharField(max_length=32, default="200")
    xero_tax_type = fields.CharField(max_length=64, default="Tax Exempt")

    charges: fields.ReverseRelation[BillingProfileCharge]

    class Meta:
        table = "billing_profiles"
        constraints = (
            UniqueConstraint(fields=("organization_id", "nickname"), name="billing_profiles_nickname_unique"),
            CheckConstraint(check="btrim(nickname) <> ''", name="billing_profiles_nickname_present"),
            CheckConstraint(
                check="(logo IS NULL) = (logo_content_type IS NULL)"
                " AND (logo_content_type IS NULL OR logo_content_type IN ('image/png', 'image/jpeg'))",
                name="billing_profiles_logo_typed",
            ),
            CheckConstraint(check="jsonb_typeof(business_fields) = 'array'", name="billing_profiles_business_fields_list"),
            CheckConstraint(check="jsonb_typeof(banking_fields) = 'array'", name="billing_profiles_banking_fields_list"),
        )


class BillingProfileCharge(Model):
    """A tax or an additional charge, applied in `position` order to the subtotal."""

    id = fields.UUIDField(primary_key=True)
    billing_profile = fields.ForeignKeyField(
        "models.BillingProfile", related_name="charges", on_delete=fields.CASCADE
    )
    position = fields.SmallIntField()
    name = fields.CharField(max_length=255)
    kind = fields.CharEnumField(ChargeKind, max_length=16)
    # A percentage (20 = 20 %) or an amount in the invoice currency.
    value = fields.DecimalField(max_digits=20, decimal_places=4)
    is_tax = fields.BooleanField(default=True)

    class Meta:
        table = "billing_profile_charges"
        constraints = (
            UniqueConstraint(fields=("billing_profile_id", "position"), name="billing_profile_charges_position_unique"),
            enum_check("billing_profile_charges", "kind", ChargeKind),
            CheckConstraint(
                check="value >= 0 AND (kind <> 'PERCENT' OR value <= 100)",
                name="billing_profile_charges_value_range",
            ),
            CheckConstraint(check="btrim(name) <> ''", name="billing_profile_charges_name_present"),
        )
