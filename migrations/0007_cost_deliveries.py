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

PARTITION = [
    "ALTER TABLE cost_records RENAME TO cost_records_unpartitioned",
    "ALTER TABLE cost_records_unpartitioned RENAME CONSTRAINT cost_records_pkey TO cost_records_unpartitioned_pkey",
    "DROP INDEX cost_records_account_month, cost_records_sub_account, cost_records_import_month",
    "CREATE TABLE cost_records (LIKE cost_records_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    " PARTITION BY RANGE (billing_month)",
    "ALTER TABLE cost_records ADD CONSTRAINT cost_records_pkey PRIMARY KEY (id, billing_month)",
    "ALTER SEQUENCE cost_records_id_seq OWNED BY cost_records.id",
    "CREATE TABLE cost_records_default PARTITION OF cost_records DEFAULT",
    "CREATE INDEX cost_records_account_month ON cost_records (managed_account_id, billing_month)",
    "CREATE INDEX cost_records_sub_account ON cost_records (organization_id, sub_account_id)",
    "CREATE INDEX cost_records_import_month ON cost_records (cost_import_id, billing_month)",
    "ALTER TABLE cost_records ADD CONSTRAINT cost_records_organization_id_fkey FOREIGN KEY (organization_id)"
    " REFERENCES organizations (id) ON DELETE CASCADE",
    "ALTER TABLE cost_records ADD CONSTRAINT cost_records_managed_account_id_fkey FOREIGN KEY (managed_account_id)"
    " REFERENCES managed_accounts (id) ON DELETE SET NULL",
    "ALTER TABLE cost_records ADD CONSTRAINT cost_records_cost_import_id_fkey FOREIGN KEY (cost_import_id)"
    " REFERENCES cost_imports (id) ON DELETE RESTRICT",
    "ALTER TABLE cost_records ADD CONSTRAINT cost_records_account_same_org FOREIGN KEY"
    " (managed_account_id, organization_id) REFERENCES managed_accounts (id, organization_id)"
    " ON DELETE SET NULL (managed_account_id)",
    ENSURE_PARTITION,
    "SELECT ensure_cost_records_partition(month) FROM (SELECT DISTINCT billing_month AS month"
    " FROM cost_records_unpartitioned) AS months",
    "INSERT INTO cost_records SELECT * FROM cost_records_unpartitioned",
    "DROP TABLE cost_records_unpartitioned",
    # One current delivery per scope and source.
    "CREATE UNIQUE INDEX cost_delivery_scopes_current ON cost_delivery_scopes (organization_id, origin,"
    " COALESCE(integration_account_id, '00000000-0000-0000-0000-000000000000'::uuid), provider_name,"
    " billing_account_id, billing_month) WHERE is_current",
    # Imports made before states existed were all done.
    "UPDATE cost_imports SET state = 'DONE'",
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
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='CostImport',
            name='parts',
            field=fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='CostImport',
            name='replaced_count',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='CostImport',
            name='report',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='CostImport',
            name='rows_done',
            field=fields.BigIntField(default=0),
        ),
        ops.AddField(
            model_name='CostImport',
            name='started_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='CostImport',
            name='state',
            field=fields.CharEnumField(default=CostImportState.QUEUED, description='QUEUED: QUEUED\nRUNNING: RUNNING\nDONE: DONE\nFAILED: FAILED', enum_type=CostImportState, max_length=16),
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
            options={'table': 'cost_records', 'app': 'models', 'constraints': [CheckConstraint(check='EXTRACT(DAY FROM billing_month) = 1', name='cost_records_month'), CheckConstraint(check="billing_currency ~ '^[A-Z]{3}$'", name='cost_records_currency_iso'), CheckConstraint(check="origin IN ('MSP_DELEGATED', 'ACCOUNT_INTEGRATION')", name='cost_records_origin_valid')], 'indexes': [Index(fields=['managed_account_id', 'billing_month'], name='cost_records_account_month'), Index(fields=['organization_id', 'sub_account_id'], name='cost_records_sub_account'), Index(fields=['cost_import_id', 'billing_month'], name='cost_records_import_month')], 'pk_attr': 'id', 'table_description': 'One FOCUS row of the current delivery of its scope (or of an approved month).'},
        ),
        ops.AlterField(
            model_name='CostRecord',
            name='fingerprint',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddIndex(
            model_name='CostRecord',
            index=Index(fields=['cost_import_id', 'billing_month'], name='cost_records_import_month'),
        ),
        ops.RunSQL(PARTITION),
    ]
