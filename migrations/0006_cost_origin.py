"""Cost origins: an import, and each of its rows, is the MSP's delegated integration's or one a
managed account added itself. Rows imported before were all the MSP's (the column default)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.costs.records import CostOrigin
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0005_payments')]

    initial = False

    operations = [
        ops.AddField(
            model_name='CostImport',
            name='managed_account',
            field=fields.ForeignKeyField('models.ManagedAccount', source_field='managed_account_id', null=True, db_constraint=True, to_field='id', related_name='cost_imports', on_delete=OnDelete.RESTRICT),
        ),
        ops.AddField(
            model_name='CostImport',
            name='origin',
            field=fields.CharEnumField(default=CostOrigin.MSP_DELEGATED, description='MSP_DELEGATED: MSP_DELEGATED\nACCOUNT_INTEGRATION: ACCOUNT_INTEGRATION', db_default=CostOrigin.MSP_DELEGATED, enum_type=CostOrigin, max_length=32),
        ),
        ops.AddConstraint(
            model_name='CostImport',
            constraint=CheckConstraint(check="origin IN ('MSP_DELEGATED', 'ACCOUNT_INTEGRATION')", name='cost_imports_origin_valid'),
        ),
        ops.AddConstraint(
            model_name='CostImport',
            constraint=CheckConstraint(check="(origin = 'ACCOUNT_INTEGRATION') = (managed_account_id IS NOT NULL)", name='cost_imports_integration_account'),
        ),
        ops.AddField(
            model_name='CostRecord',
            name='origin',
            field=fields.CharEnumField(default=CostOrigin.MSP_DELEGATED, description='MSP_DELEGATED: MSP_DELEGATED\nACCOUNT_INTEGRATION: ACCOUNT_INTEGRATION', db_default=CostOrigin.MSP_DELEGATED, enum_type=CostOrigin, max_length=32),
        ),
        ops.AddConstraint(
            model_name='CostRecord',
            constraint=CheckConstraint(check="origin IN ('MSP_DELEGATED', 'ACCOUNT_INTEGRATION')", name='cost_records_origin_valid'),
        ),
    ]
