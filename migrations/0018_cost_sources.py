"""Cost sources: the buckets an organization's cloud cost exports land in (credentials sealed),
and on each cost import the source that found it with its manifest's key and ETag."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.cost_sources import CostSourceKind, CostSourceState
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0017_xero_allocations')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CostSource',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='cost_sources', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=255)),
                ('kind', fields.CharEnumField(description='AWS_S3: AWS_S3\nAZURE_BLOB: AZURE_BLOB\nGCS: GCS\nS3_COMPATIBLE: S3_COMPATIBLE', enum_type=CostSourceKind, max_length=16)),
                ('bucket', fields.CharField(max_length=255)),
                ('prefix', fields.CharField(default='', max_length=1024)),
                ('region', fields.CharField(default='', max_length=64)),
                ('endpoint', fields.CharField(default='', max_length=1024)),
                ('credentials', fields.TextField(unique=False)),
                ('key_hint', fields.CharField(default='', max_length=16)),
                ('state', fields.CharEnumField(default=CostSourceState.NEW, description='NEW: NEW\nOK: OK\nWAITING: WAITING\nFAILING: FAILING', enum_type=CostSourceState, max_length=16)),
                ('last_sync_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_delivery_key', fields.CharField(null=True, max_length=1024)),
                ('last_delivery_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('failures', fields.SmallIntField(default=0)),
            ],
            options={'table': 'cost_sources', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A bucket (and a prefix in it) where an organization\'s cost exports land.'},
            bases=['TimestampMixin', 'Model'],
        ),
        ops.AddConstraint(
            model_name='CostSource',
            constraint=UniqueConstraint(fields=('organization_id', 'name'), name='cost_sources_name_unique'),
        ),
        ops.AddConstraint(
            model_name='CostSource',
            constraint=CheckConstraint(check="btrim(name) <> '' AND btrim(bucket) <> ''", name='cost_sources_named'),
        ),
        ops.AddConstraint(
            model_name='CostSource',
            constraint=CheckConstraint(check="kind IN ('AWS_S3', 'AZURE_BLOB', 'GCS', 'S3_COMPATIBLE')", name='cost_sources_kind_valid'),
        ),
        ops.AddConstraint(
            model_name='CostSource',
            constraint=CheckConstraint(check="state IN ('NEW', 'OK', 'WAITING', 'FAILING')", name='cost_sources_state_valid'),
        ),
        ops.AddField(
            model_name='CostImport',
            name='cost_source',
            field=fields.ForeignKeyField('models.CostSource', source_field='cost_source_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL),
        ),
        ops.AddField(
            model_name='CostImport',
            name='source_key',
            field=fields.CharField(null=True, max_length=1024),
        ),
        ops.AddField(
            model_name='CostImport',
            name='source_etag',
            field=fields.CharField(null=True, max_length=255),
        ),
        ops.RunSQL("CREATE INDEX cost_imports_source_manifest ON cost_imports (cost_source_id, source_key)"),
    ]
