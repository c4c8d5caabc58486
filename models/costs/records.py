"""Cost records: FOCUS rows as the clouds exported them, one per row, per organization."""

from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model

from models.base import cost_decimal, enum_check


class CostOrigin(str, Enum):
    """Whose integration a cost export comes from."""

    MSP_DELEGATED = "MSP_DELEGATED"
    ACCOUNT_INTEGRATION = "ACCOUNT_INTEGRATION"


def _origin() -> fields.CharEnumField:
    # Also a database default: the rows imported before origins existed were all the MSP's.
    return fields.CharEnumField(
        CostOrigin, max_length=32, default=CostOrigin.MSP_DELEGATED, db_default=CostOrigin.MSP_DELEGATED
    )


class CostImport(Model):
    """One accepted FOCUS file: what it held and what it changed."""

    id = fields.UUIDField(primary_key=True)
    organization = fields.ForeignKeyField(
        "models.Organization", related_name="cost_imports", on_delete=fields.CASCADE
    )
    origin = _origin()
    # The managed account whose own integration the file came from (ACCOUNT_INTEGRATION only).
    managed_account = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="cost_imports", null=True, on_delete=fields.RESTRICT
    )
    filename = fields.CharField(max_length=255, default="")
    file_sha256 = fields.CharField(max_length=64)
    row_count = fields.IntField()
    inserted_count = fields.IntField()
    duplicate_count = fields.IntField()
    # [{"subAccountId": ..., "subAccountName": ..., "providerName": ..., "rows": n, "billedCost": "..."}]
    unmatched_sub_accounts = fields.JSONField(default=list)
    imported_by = fields.ForeignKeyField("models.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "cost_imports"
        constraints = (
            CheckConstraint(
                check="row_count = inserted_count + duplicate_count AND inserted_count >= 0 AND duplicate_count >= 0",
                name="cost_imports_counts_add_up",
            ),
            enum_check("cost_imports", "origin", CostOrigin),
            CheckConstraint(
                check="(origin = 'ACCOUNT_INTEGRATION') = (managed_account_id IS NOT NULL)",
                name="cost_imports_integration_account",
            ),
        )


class CostRecord(Model):
    id = fields.BigIntField(primary_key=True)
    organization = fields.ForeignKeyField(
        "models.Organization", related_name="cost_records", on_delete=fields.CASCADE
    )
    # Null while no managed account claims the row's sub-account; linked when one does.
    managed_account = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="cost_records", null=True, on_delete=fields.SET_NULL
    )
    cost_import = fields.ForeignKeyField(
        "models.CostImport", related_name="records", on_delete=fields.RESTRICT
    )
    # The import's origin, kept on the row so that generation reads its costs without a join.
    origin = _origin()
    # SHA-256 of the row's values and of its occurrence number among identical rows of its
    # file: a re-import of the same data inserts nothing.
    fingerprint = fields.CharField(max_length=64)
    # The first day of the month of BillingPeriodStart (the invoice month).
    billing_month = fields.DateField()
    billing_period_start = fields.DatetimeField()
    billing_period_end = fields.DatetimeField()
    charge_period_start = fields.DatetimeField(null=True)
    charge_period_end = fields.DatetimeField(null=True)
    provider_name = fields.CharField(max_length=128)
    publisher_name = fields.CharField(max_length=255, null=True)
    invoice_issuer_name = fields.CharField(max_length=255, null=True)
    billing_account_id = fields.CharField(max_length=512, null=True)
    billing_account_name = fields.CharField(max_length=512, null=True)
    sub_account_id = fields.CharField(max_length=512)
    sub_account_name = fields.CharField(max_length=512, null=True)
    billed_cost = cost_decimal()
    billing_currency = fields.CharField(max_length=3)
    effective_cost = cost_decimal(null=True)
    list_cost = cost_decimal(null=True)
    list_unit_price = cost_decimal(null=True)
    contracted_cost = cost_decimal(null=True)
    contracted_unit_price = cost_decimal(null=True)
    consumed_quantity = cost_decimal(null=True)
    consumed_unit = fields.CharField(max_length=128, null=True)
    pricing_quantity = cost_decimal(null=True)
    pricing_unit = fields.CharField(max_length=128, null=True)
    pricing_category = fields.CharField(max_length=64, null=True)
    service_name = fields.CharField(max_length=255, null=True)
    service_category = fields.CharField(max_length=128, null=True)
    charge_category = fields.CharField(max_length=64)
    charge_class = fields.CharField(max_length=64, null=True)
    charge_description = fields.TextField(null=True)
    charge_frequency = fields.CharField(max_length=64, null=True)
    region_id = fields.CharField(max_length=128, null=True)
    region_name = fields.CharField(max_length=255, null=True)
    availability_zone = fields.CharField(max_length=128, null=True)
    resource_id = fields.TextField(null=True)
    resource_name = fields.TextField(null=True)
    resource_type = fields.CharField(max_length=255, null=True)
    sku_id = fields.CharField(max_length=255, null=True)
    sku_price_id = fields.CharField(max_length=512, null=True)
    tags = fields.JSONField(null=True)
    # Every other column of the row (commitment discounts, x_ provider extensions), verbatim.
    extra = fields.JSONField(default=dict)

    class Meta:
        table = "cost_records"
        constraints = (
            UniqueConstraint(fields=("organization_id", "fingerprint"), name="cost_records_fingerprint_unique"),
            CheckConstraint(check="EXTRACT(DAY FROM billing_month) = 1", name="cost_records_month"),
            CheckConstraint(check="billing_currency ~ '^[A-Z]{3}$'", name="cost_records_currency_iso"),
            enum_check("cost_records", "origin", CostOrigin),
        )
        indexes = (
            Index(fields=("managed_account_id", "billing_month"), name="cost_records_account_month"),
            Index(fields=("organization_id", "sub_account_id"), name="cost_records_sub_account"),
        )
