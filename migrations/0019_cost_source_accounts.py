"""Cost sources on Azure Blob Storage: the storage account that holds the container."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0018_cost_sources')]

    initial = False

    operations = [
        ops.AddField(model_name='CostSource', name='account', field=fields.CharField(default='', db_default='', max_length=64)),
    ]
