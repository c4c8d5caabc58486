from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import CheckConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0003_database_guards')]

    initial = False

    operations = [
        ops.RemoveConstraint(
            model_name='InvoiceRevision',
            name='invoice_revisions_total_adds_up',
            fields=None,
        ),
        ops.AddConstraint(
            model_name='InvoiceRevision',
            constraint=CheckConstraint(check='total = subtotal + charges', name='invoice_revisions_total_adds_up'),
        ),
    ]
