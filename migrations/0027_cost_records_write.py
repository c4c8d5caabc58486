"""Writing cost records cheaper per row, as the import writes millions of them a month.

Profiled, a COPY into `cost_records` spent about two fifths of PostgreSQL's time keeping its
indexes, a fifth reading the values (jsonb's parse among them) and a sixteenth on the CHECK
constraints (a regular expression per row). So:

- `sub_account_id` compares bytewise (COLLATE "C"): it is an identifier, never sorted for
  people, and the index on (organization_id, sub_account_id) then compares with memcmp
  instead of the locale's collation, on every insert;
- the id sequence hands each connection 1,024 ids at a time rather than locking its page per row;
- the currency and month checks go: the import, the table's writer, sets both from what it
  checked (a currency code upper-cased after its pattern, the month's first day) and writes
  nothing when a row fails; the origin's check, an equality to two values, stays.

ALTER TYPE with only a new collation keeps the rows where they are and rebuilds the index
that reads the column, on every partition.
"""

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import CheckConstraint

# A partition made before kept its own copy of the checks (LIKE ... INCLUDING CONSTRAINTS, then
# attached): dropping them from the parent leaves those, so each partition drops its own.
DROP_PARTITION_CHECKS = """
DO $$
DECLARE
    partition regclass;
BEGIN
    FOR partition IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'cost_records'::regclass LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS cost_records_month,'
                       ' DROP CONSTRAINT IF EXISTS cost_records_currency_iso', partition);
    END LOOP;
END $$
"""

CHEAPER_WRITES = [
    DROP_PARTITION_CHECKS,
    'ALTER TABLE cost_records ALTER COLUMN sub_account_id TYPE varchar(512) COLLATE "C"',
    "ALTER SEQUENCE cost_records_id_seq CACHE 1024",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0026_idempotency_lease")]

    initial = False

    operations = [
        ops.RemoveConstraint(model_name="CostRecord", name="cost_records_month", fields=None),
        ops.RemoveConstraint(model_name="CostRecord", name="cost_records_currency_iso", fields=None),
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
                    Index(fields=["organization_id", "sub_account_id"], name="cost_records_sub_account"),
                ],
                "pk_attr": "id",
                "table_description": "One FOCUS row of the current delivery of its scope (or of an approved month).",
            },
        ),
        ops.RunSQL(CHEAPER_WRITES),
    ]
