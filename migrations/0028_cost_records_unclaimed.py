"""The cost records' index by sub-account kept for the rows no account claims.

Claiming is the one reader of that index: when an account's sub-accounts change, the rows of its
new sub-accounts are linked to it (`models.managed_accounts._relink_costs`). Those rows are the
unclaimed ones: a sub-account belongs to one account at most, an account that lets one go (or is
deleted) unlinks its rows first, and an import links each row by the mapping it holds locked.
The index was kept for every row an import writes, a third of PostgreSQL's index work per row;
partial, it is kept only for the unclaimed rows (one sub-account in fifty in a typical month),
and the list of a month's unassigned costs reads it too.
"""

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import CheckConstraint

UNCLAIMED = [
    "DROP INDEX cost_records_sub_account",
    "CREATE INDEX cost_records_unclaimed ON cost_records (organization_id, sub_account_id)"
    " WHERE managed_account_id IS NULL",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0027_cost_records_write")]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name="CostRecord",
            options={
                "table": "cost_records",
                "app": "models",
                "constraints": [
                    CheckConstraint(
                        check="origin IN ('MSP_DELEGATED', 'ACCOUNT_INTEGRATION')", name="cost_records_origin_valid"
                    ),
                ],
                "indexes": [
                    Index(fields=["managed_account_id", "billing_month"], name="cost_records_account_month"),
                ],
                "pk_attr": "id",
                "table_description": "One FOCUS row of the current delivery of its scope (or of an approved month).",
            },
        ),
        ops.RunSQL(UNCLAIMED),
    ]
