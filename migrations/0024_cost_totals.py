"""A month's figures kept: cost_totals, the cost records summed per delivery, account,
sub-account, provider, billing account, service, category, unit and currency, filled from the
records already imported (models/costs/totals.py keeps it equal to them from then on)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.costs.records import CostOrigin
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

FILL = """
INSERT INTO cost_totals (organization_id, cost_import_id, origin, provider_name, billing_account_id, billing_month,
    billing_currency, managed_account_id, sub_account_id, service_name, service_category, charge_category,
    consumed_unit, row_count, billed_cost, effective_cost, list_cost, consumed_quantity)
SELECT organization_id, cost_import_id, origin, provider_name, COALESCE(billing_account_id, ''), billing_month,
       billing_currency, managed_account_id, sub_account_id, COALESCE(service_name, ''),
       COALESCE(service_category, ''), charge_category, COALESCE(consumed_unit, ''), count(*), sum(billed_cost),
       sum(COALESCE(effective_cost, billed_cost)), sum(COALESCE(list_cost, billed_cost)), sum(consumed_quantity)
FROM cost_records GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
"""


class Migration(migrations.Migration):
    dependencies = [("models", "0023_document_languages")]

    initial = False

    operations = [
        ops.CreateModel(
            name="CostTotal",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "organization",
                    fields.ForeignKeyField(
                        "models.Organization",
                        source_field="organization_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "cost_import",
                    fields.ForeignKeyField(
                        "models.CostImport",
                        source_field="cost_import_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "origin",
                    fields.CharEnumField(
                        description="MSP_DELEGATED: MSP_DELEGATED\nACCOUNT_INTEGRATION: ACCOUNT_INTEGRATION",
                        enum_type=CostOrigin,
                        max_length=32,
                    ),
                ),
                ("billing_month", fields.DateField()),
                ("provider_name", fields.CharField(max_length=128)),
                ("billing_account_id", fields.CharField(max_length=512)),
                ("billing_currency", fields.CharField(max_length=3)),
                (
                    "managed_account",
                    fields.ForeignKeyField(
                        "models.ManagedAccount",
                        source_field="managed_account_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("sub_account_id", fields.CharField(max_length=512)),
                ("service_name", fields.CharField(max_length=255)),
                ("service_category", fields.CharField(max_length=128)),
                ("charge_category", fields.CharField(max_length=64)),
                ("consumed_unit", fields.CharField(max_length=128)),
                ("row_count", fields.BigIntField()),
                ("billed_cost", fields.DecimalField(max_digits=60, decimal_places=16)),
                ("effective_cost", fields.DecimalField(max_digits=60, decimal_places=16)),
                ("list_cost", fields.DecimalField(max_digits=60, decimal_places=16)),
                ("consumed_quantity", fields.DecimalField(null=True, max_digits=60, decimal_places=16)),
            ],
            options={
                "table": "cost_totals",
                "app": "models",
                "indexes": [
                    Index(fields=["organization_id", "billing_month"], name="cost_totals_month"),
                    Index(fields=["managed_account_id", "billing_month"], name="cost_totals_account_month"),
                    Index(fields=["cost_import_id"], name="cost_totals_import"),
                ],
                "pk_attr": "id",
                "table_description": "A month's cost records of one delivery summed per account, sub-account, provider,",
            },
            bases=["Model"],
        ),
        ops.RunSQL(FILL),
    ]
