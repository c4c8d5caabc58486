"""Cost deliveries: an import gets a state, progress and a failure reason; deliveries supersede
each other per scope (cost_delivery_scopes); late costs of approved months are stored
(late_costs); and cost_records becomes partitioned by billing month.

The partitioning is hand-written SQL: the table is renamed, the partitioned table created in
its image (a primary key of (id, billing_month), as PostgreSQL requires the partition key in
it), one partition made per month the data has plus a default one, the rows copied, the old
table dropped. The id sequence moves over, so ids go on where they were. The fingerprint's
uniqueness goes: a delivery now replaces its scopes instead of skipping known rows.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.costs.records import CostImportState, CostOrigin
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import CheckConstraint


# Makes the partition of one month if it is missing. Rows of the month that arrived before it
# (in the default partition) move into it first, or attaching it would fail. Imports call it
# in a transaction of their own, before theirs; the advisory lock serializes two of them.
ENSURE_PARTITION = """
CREATE FUNCTION ensure_cost_records_partition(month date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    name text := format('cost_records_y%sm%s', to_char(month, 'YYYY'), to_char(month, 'MM'));
    first date := date_trunc('month', month)::date;
    next date := (date_trunc('month', month) + interval '1 month')::date;
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('cost_records_partitions'));
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE cost_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    EXECUTE format(
        'WITH moved AS (DELETE FROM cost_records_default WHERE billing_month >= %L AND billing_month < %L'
        ' RETURNING *) INSERT INTO %I SELECT * FROM moved', first, next, name);
    EXECUTE format('ALTER TABLE cost_records ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, first, next);
END $$
"""

# cost_records has no foreign keys: PostgreSQL checks one per row, and four of them (the
# organization, the account, the same-organization guard, the import) more than doubled the
# time of a COPY of a million rows. Its one writer, the import, takes every id from the
# tables in its own transaction (the account under the sub-account mapping lock); what the
# keys did on delete is done by statement triggers on the referenced tables instead.
FOLLOW_DELETES = """
CREATE FUNCTION cost_records_follow_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'organizations' THEN
        DELETE FROM cost_records WHERE organization_id IN (SELECT id FROM gone);
    ELSE
        UPDATE cost_records SET managed_account_id = NULL WHERE managed_account_id IN (SELECT id FROM gone);
    END IF;
    RETURN NULL;
END $$
"""

# The rows imported before become the current delivery of their scopes: the latest import
# holding rows of a scope is its current one, with the scope's rows and totals.
BACKFILL_SCOPES = """
WITH per_currency AS (
    SELECT r.organization_id, r.origin, i.managed_account_id AS integration_account_id, r.provider_name,
           COALESCE(r.billing_account_id, '') AS billing_account_id, r.billing_month, r.billing_currency,
           count(*) AS rows, sum(r.billed_cost) AS cost, max(i.created_at) AS latest,
           (array_agg(i.id ORDER BY i.created_at DESC))[1] AS latest_import
    FROM cost_records_unpartitioned r JOIN cost_imports i ON i.id = r.cost_import_id
    GROUP BY 1, 2, 3, 4, 5, 6, 7
)
INSERT INTO cost_delivery_scopes (id, organization_id, cost_import_id, origin, integration_account_id,
    provider_name, billing_account_id, billing_month, supersedes_id, is_current, row_count, totals, created_at)
SELECT gen_random_uuid(), organization_id, (array_agg(latest_import ORDER BY latest DESC))[1], origin,
       integration_account_id, provider_name, billing_account_id, billing_month, NULL, true, sum(rows),
       jsonb_object_agg(billing_currency, trim_scale(cost)::text), now()
FROM per_currency GROUP BY organization_id, origin, integration_account_id, provider_name,
    billing_account_id, billing_month
"""

PARTITION = [
    "ALTER TABLE cost_records RENAME TO cost_records_unpartitioned",
    "ALTER TABLE cost_records_unpartitioned RENAME CONSTRAINT cost_records_pkey TO cost_records_unpartitioned_pkey",
    "DROP INDEX cost_records_account_month, cost_records_sub_account",
    "CREATE TABLE cost_records (LIKE cost_records_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    " PARTITION BY RANGE (billing_month)",
    "ALTER TABLE cost_records ADD CONSTRAINT cost_records_pkey PRIMARY KEY (id, billing_month)",
    "ALTER SEQUENCE cost_records_id_seq OWNED BY cost_records.id",
    "CREATE TABLE cost_records_default PARTITION OF cost_records DEFAULT",
    "CREATE INDEX cost_records_account_month ON cost_records (managed_account_id, billing_month)",
    "CREATE INDEX cost_records_sub_account ON cost_records (organization_id, sub_account_id)",
    FOLLOW_DELETES,
    "CREATE TRIGGER organizations_cost_records AFTER DELETE ON organizations"
    " REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION cost_records_follow_deletes()",
    "CREATE TRIGGER managed_accounts_cost_records AFTER DELETE ON managed_accounts"
    " REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION cost_records_follow_deletes()",
    ENSURE_PARTITION,
    "SELECT ensure_cost_records_partition(month) FROM (SELECT DISTINCT billing_month AS month"
    " FROM cost_records_unpartitioned) AS months",
    "INSERT INTO cost_records SELECT * FROM cost_records_unpartitioned",
    BACKFILL_SCOPES,
    "DROP TABLE cost_records_unpartitioned",
    # One current delivery per scope and source.
    "CREATE UNIQUE INDEX cost_delivery_scopes_current ON cost_delivery_scopes (organization_id, origin,"
    " COALESCE(integration_account_id, '00000000-0000-0000-0000-000000000000'::uuid), provider_name,"
    " billing_account_id, billing_month) WHERE is_current",
]


class Migration(migrations.Migration):
    dependencies = [('models', '0006_cost_origin')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CostDeliveryScope',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='cost_delivery_scopes', on_delete=OnDelete.CASCADE)),
                ('cost_import', fields.ForeignKeyField('models.CostImport', source_field='cost_import_id', db_constraint=True, to_field='id', related_name='scopes', on_delete=OnDelete.CASCADE)),
                ('origin', fields.CharEnumField(default=CostOrigin.MSP_DELEGATED, description='MSP_DELEGATED: MSP_DELEGATED\nACCOUNT_INTEGRATION: ACCOUNT_INTEGRATION', db_default=CostOrigin.MSP_DELEGATED, enum_type=CostOrigin, max_length=32)),
                ('integration_account', fields.ForeignKeyField('models.ManagedAccount', source_field='integration_account_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('provider_name', fields.CharField(max_length=128)),
                ('billing_account_id', fields.CharField(max_length=512)),
                ('billing_month', fields.DateField()),
                ('supersedes', fields.ForeignKeyField('models.CostImport', source_field='supersedes_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('is_current', fields.BooleanField(default=True)),
                ('row_count', fields.IntField()),
                ('totals', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'cost_delivery_scopes', 'app': 'models', 'indexes': [Index(fields=['organization_id', 'billing_month'], name='cost_delivery_scopes_month')], 'pk_attr': 'id', 'table_description': "What one delivery said about one scope: a provider's billing account in one billing"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LateCost',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='late_costs', on_delete=OnDelete.CASCADE)),
                ('cost_import', fields.ForeignKeyField('models.CostImport', source_field='cost_import_id', db_constraint=True, to_field='id', related_name='late_costs', on_delete=OnDelete.CASCADE)),
                ('managed_account', fields.ForeignKeyField('models.ManagedAccount', source_field='managed_account_id', db_constraint=True, to_field='id', related_name='late_costs', on_delete=OnDelete.CASCADE)),
                ('invoice', fields.ForeignKeyField('models.Invoice', source_field='invoice_id', db_constraint=True, to_field='id', related_name='late_costs', on_delete=OnDelete.CASCADE)),
                ('billing_month', fields.DateField()),
                ('origin', fields.CharEnumField(default=CostOrigin.MSP_DELEGATED, description='MSP_DELEGATED: MSP_DELEGATED\nACCOUNT_INTEGRATION: ACCOUNT_INTEGRATION', db_default=CostOrigin.MSP_DELEGATED, enum_type=CostOrigin, max_length=32)),
                ('currency', fields.CharField(max_length=3)),
                ('invoiced_cost', fields.DecimalField(max_digits=38, decimal_places=16)),
                ('delivered_cost', fields.DecimalField(max_digits=38, decimal_places=16)),
                ('difference', fields.DecimalField(max_digits=38, decimal_places=16)),
                ('invoiced_rows', fields.IntField()),
                ('delivered_rows', fields.IntField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'late_costs', 'app': 'models', 'indexes': [Index(fields=['managed_account_id', 'billing_month'], name='late_costs_account_month')], 'pk_attr': 'id', 'table_description': 'How much a delivery differs, for one account, month and currency, from the costs an'},
            bases=['Model'],
        ),
        ops.RemoveConstraint(
            model_name='CostImport',
            name='cost_imports_counts_add_up',
            fields=None,
        ),
        ops.AlterModelOptions(
            name='CostImport',
            options={'table': 'cost_imports', 'app': 'models', 'constraints': [CheckConstraint(check='row_count = inserted_count + duplicate_count + late_count AND inserted_count >= 0 AND duplicate_count >= 0 AND late_count >= 0 AND replaced_count >= 0', name='cost_imports_counts_add_up'), CheckConstraint(check="origin IN ('MSP_DELEGATED', 'ACCOUNT_INTEGRATION')", name='cost_imports_origin_valid'), CheckConstraint(check="state IN ('QUEUED', 'RUNNING', 'DONE', 'FAILED')", name='cost_imports_state_valid'), CheckConstraint(check="(origin = 'ACCOUNT_INTEGRATION') = (managed_account_id IS NOT NULL)", name='cost_imports_integration_account')], 'pk_attr': 'id', 'table_description': 'One cost delivery (one file or several parts imported as a unit) and its import.'},
        ),
        ops.AddField(
            model_name='CostImport',
            name='error_column',
            field=fields.CharField(null=True, max_length=255),
        ),
        ops.AddField(
            model_name='CostImport',
            name='error_file',
            field=fields.CharField(null=True, max_length=255),
        ),
        ops.AddField(
            model_name='CostImport',
            name='error_line',
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name='CostImport',
            name='error_message',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='CostImport',
            name='error_row',
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name='CostImport',
            name='finished_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='CostImport',
            name='late_count',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='CostImport',
            name='parts',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='CostImport',
            name='replaced_count',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='CostImport',
            name='report',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='CostImport',
            name='rows_done',
            field=fields.BigIntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='CostImport',
            name='started_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='CostImport',
            name='state',
            field=fields.CharEnumField(default=CostImportState.QUEUED, description='QUEUED: QUEUED\nRUNNING: RUNNING\nDONE: DONE\nFAILED: FAILED', db_default=CostImportState.DONE, enum_type=CostImportState, max_length=16),
        ),
        ops.AddConstraint(
            model_name='CostImport',
            constraint=CheckConstraint(check='row_count = inserted_count + duplicate_count + late_count AND inserted_count >= 0 AND duplicate_count >= 0 AND late_count >= 0 AND replaced_count >= 0', name='cost_imports_counts_add_up'),
        ),
        ops.AddConstraint(
            model_name='CostImport',
            constraint=CheckConstraint(check="state IN ('QUEUED', 'RUNNING', 'DONE', 'FAILED')", name='cost_imports_state_valid'),
        ),
        ops.RemoveConstraint(
            model_name='CostRecord',
            name='cost_records_fingerprint_unique',
            fields=None,
        ),
        ops.AlterModelOptions(
            name='CostRecord',
            options={'table': 'cost_records', 'app': 'models', 'constraints': [CheckConstraint(check='EXTRACT(DAY FROM billing_month) = 1', name='cost_records_month'), CheckConstraint(check="billing_currency ~ '^[A-Z]{3}$'", name='cost_records_currency_iso'), CheckConstraint(check="origin IN ('MSP_DELEGATED', 'ACCOUNT_INTEGRATION')", name='cost_records_origin_valid')], 'indexes': [Index(fields=['managed_account_id', 'billing_month'], name='cost_records_account_month'), Index(fields=['organization_id', 'sub_account_id'], name='cost_records_sub_account')], 'pk_attr': 'id', 'table_description': 'One FOCUS row of the current delivery of its scope (or of an approved month).'},
        ),
        ops.AlterField(
            model_name='CostRecord',
            name='fingerprint',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.RunSQL(PARTITION),
    ]
