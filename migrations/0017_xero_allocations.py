"""A credit note pushed to Xero is allocated to its invoice there: when, recorded once."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0016_partition_race')]

    initial = False

    operations = [
        ops.AddField(
            model_name='XeroSync',
            name='allocated_at',
            field=fields.DatetimeField(null=True),
        ),
    ]
