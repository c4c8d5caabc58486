"""Payment methods from a fixed list, and an index for the overdue job."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.payments.tables import PaymentMethod
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0004_revision_total')]

    initial = False

    operations = [
        # Free-text methods from before the list existed become OTHER, so the check holds.
        ops.RunSQL(
            "UPDATE payments SET method = 'OTHER'"
            " WHERE method NOT IN ('BANK_TRANSFER', 'CARD', 'DIRECT_DEBIT', 'CHECK', 'CASH', 'OTHER')"
        ),
        ops.AlterField(
            model_name='Payment',
            name='method',
            field=fields.CharEnumField(default=PaymentMethod.BANK_TRANSFER, description='BANK_TRANSFER: BANK_TRANSFER\nCARD: CARD\nDIRECT_DEBIT: DIRECT_DEBIT\nCHECK: CHECK\nCASH: CASH\nOTHER: OTHER', enum_type=PaymentMethod, max_length=64),
        ),
        ops.AddConstraint(
            model_name='Payment',
            constraint=CheckConstraint(check="method IN ('BANK_TRANSFER', 'CARD', 'DIRECT_DEBIT', 'CHECK', 'CASH', 'OTHER')", name='payments_method_valid'),
        ),
        # The overdue job reads only approved invoices still awaiting payment, by due date.
        ops.RunSQL(
            "CREATE INDEX invoices_awaiting_payment ON invoices (due_date)"
            " WHERE status = 'APPROVED' AND payment_status IN ('UNPAID', 'PARTIALLY_PAID')"
        ),
        ops.RunSQL("CREATE INDEX payments_invoice ON payments (invoice_id)"),
        ops.RunSQL("CREATE INDEX refunds_invoice ON refunds (invoice_id)"),
    ]
