"""Two imports making the same month's partition at once: the second waited on the advisory
lock, then looked the partition up again with `to_regclass`, which reads the backend's catalog
cache; an advisory lock does not refresh that cache, so it missed the partition the first had
just committed and failed to create it again. The check after the lock now reads pg_class with
the statement's own snapshot, which sees what committed before the lock was granted."""

from tortoise import migrations
from tortoise.migrations import operations as ops

ENSURE_PARTITION = """
CREATE OR REPLACE FUNCTION ensure_cost_records_partition(month date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    name text := format('cost_records_y%sm%s', to_char(month, 'YYYY'), to_char(month, 'MM'));
    first date := date_trunc('month', month)::date;
    next date := (date_trunc('month', month) + interval '1 month')::date;
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('cost_records_partitions'));
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relname = name AND n.nspname = current_schema()) THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE cost_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    EXECUTE format(
        'WITH moved AS (DELETE FROM cost_records_default WHERE billing_month >= %L AND billing_month < %L'
        ' RETURNING *) INSERT INTO %I SELECT * FROM moved', first, next, name);
    EXECUTE format('ALTER TABLE cost_records ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, first, next);
END $$
"""


class Migration(migrations.Migration):
    dependencies = [('models', '0015_xero_line_kinds')]

    initial = False

    operations = [
        ops.RunSQL(ENSURE_PARTITION),
    ]
