"""Credit note lines take every kind an invoice line has: one-off items and late costs too."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.invoices.tables import LineKind
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0011_credit_notes')]

    initial = False

    operations = [
        ops.RemoveConstraint(
            model_name='CreditNoteLine',
            name='credit_note_lines_kind_valid',
            fields=None,
        ),
        ops.AlterField(
            model_name='CreditNoteLine',
            name='kind',
            field=fields.CharEnumField(description='USAGE: USAGE\nONE_OFF: ONE_OFF\nRULE: RULE\nCHARGE: CHARGE\nTAX: TAX\nLATE_COST: LATE_COST', enum_type=LineKind, max_length=16),
        ),
        ops.AddConstraint(
            model_name='CreditNoteLine',
            constraint=CheckConstraint(check="kind IN ('USAGE', 'ONE_OFF', 'RULE', 'CHARGE', 'TAX', 'LATE_COST')", name='credit_note_lines_kind_valid'),
        ),
    ]
