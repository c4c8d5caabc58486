"""Xero account mappings take every kind an invoice line has: one-off items and late costs too."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.invoices.tables import LineKind
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0014_xero')]

    initial = False

    operations = [
        ops.RemoveConstraint(
            model_name='XeroAccountMapping',
            name='xero_account_mappings_line_kind_valid',
            fields=None,
        ),
        ops.AlterField(
            model_name='XeroAccountMapping',
            name='line_kind',
            field=fields.CharEnumField(description='USAGE: USAGE\nONE_OFF: ONE_OFF\nRULE: RULE\nCHARGE: CHARGE\nTAX: TAX\nLATE_COST: LATE_COST', enum_type=LineKind, max_length=16),
        ),
        ops.AddConstraint(
            model_name='XeroAccountMapping',
            constraint=CheckConstraint(check="line_kind IN ('USAGE', 'ONE_OFF', 'RULE', 'CHARGE', 'TAX', 'LATE_COST')", name='xero_account_mappings_line_kind_valid'),
        ),
    ]
