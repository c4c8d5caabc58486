"""Credit notes: their table, frozen lines, number counters and the uses of the credit they
leave (credit_uses); invoices gain `amount_credited` and `credit_applied`.

The database guards them as it guards invoices (0003): a credit note belongs to its invoice's
organization and account; its lines and the uses of its credit never change; a credit note is
never deleted, and once issued only its PDF (stored once), its delivery status and the sums of
its credit refunded or applied (which only grow) change."""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.credit_notes.tables import CreditMode, CreditUse
from models.invoices.tables import DeliveryStatus, LineKind
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint


GUARDS = [
    "ALTER TABLE invoices ADD CONSTRAINT invoices_id_org_account UNIQUE (id, organization_id, managed_account_id)",
    "ALTER TABLE credit_notes ADD CONSTRAINT credit_notes_invoice_same_org_account FOREIGN KEY"
    " (invoice_id, organization_id, managed_account_id)"
    " REFERENCES invoices (id, organization_id, managed_account_id)",
    "CREATE INDEX credit_notes_invoice ON credit_notes (invoice_id)",
    "CREATE INDEX credit_notes_account_issued ON credit_notes (managed_account_id, issue_date)",
    "CREATE INDEX credit_uses_credit_note ON credit_uses (credit_note_id)",
    "CREATE INDEX credit_uses_invoice ON credit_uses (invoice_id) WHERE invoice_id IS NOT NULL",
    "CREATE TRIGGER credit_note_lines_frozen BEFORE UPDATE OR DELETE ON credit_note_lines"
    " FOR EACH ROW EXECUTE FUNCTION refuse_change()",
    "CREATE TRIGGER credit_uses_append_only BEFORE UPDATE OR DELETE ON credit_uses"
    " FOR EACH ROW EXECUTE FUNCTION refuse_change()",
    """CREATE FUNCTION guard_credit_note() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'credit note % is issued and cannot be deleted', OLD.number
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF (NEW.id, NEW.organization_id, NEW.invoice_id, NEW.managed_account_id, NEW.number, NEW.issue_date,
            NEW.reason, NEW.mode, NEW.currency, NEW.subtotal, NEW.charges, NEW.tax_total, NEW.total, NEW.allocated,
            NEW.template_version, NEW.snapshot, NEW.created_at)
           IS DISTINCT FROM
           (OLD.id, OLD.organization_id, OLD.invoice_id, OLD.managed_account_id, OLD.number, OLD.issue_date,
            OLD.reason, OLD.mode, OLD.currency, OLD.subtotal, OLD.charges, OLD.tax_total, OLD.total, OLD.allocated,
            OLD.template_version, OLD.snapshot, OLD.created_at)
           OR (OLD.pdf_path IS NOT NULL AND (NEW.pdf_path, NEW.pdf_sha256, NEW.pdf_size)
               IS DISTINCT FROM (OLD.pdf_path, OLD.pdf_sha256, OLD.pdf_size))
           OR NEW.amount_refunded < OLD.amount_refunded OR NEW.amount_applied < OLD.amount_applied
        THEN
            RAISE EXCEPTION 'credit note % is issued and cannot change', OLD.number
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER credit_notes_guard BEFORE UPDATE OR DELETE ON credit_notes"
    " FOR EACH ROW EXECUTE FUNCTION guard_credit_note()",
]


class Migration(migrations.Migration):
    dependencies = [('models', '0010_people_settings')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CreditNote',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='credit_notes', on_delete=OnDelete.RESTRICT)),
                ('invoice', fields.ForeignKeyField('models.Invoice', source_field='invoice_id', db_constraint=True, to_field='id', related_name='credit_notes', on_delete=OnDelete.RESTRICT)),
                ('managed_account', fields.ForeignKeyField('models.ManagedAccount', source_field='managed_account_id', db_constraint=True, to_field='id', related_name='credit_notes', on_delete=OnDelete.RESTRICT)),
                ('number', fields.CharField(max_length=64)),
                ('issue_date', fields.DateField()),
                ('reason', fields.CharField(max_length=1024)),
                ('mode', fields.CharEnumField(description='FULL: FULL\nLINES: LINES\nAMOUNT: AMOUNT', enum_type=CreditMode, max_length=16)),
                ('currency', fields.CharField(max_length=3)),
                ('subtotal', fields.DecimalField(max_digits=20, decimal_places=4)),
                ('charges', fields.DecimalField(max_digits=20, decimal_places=4)),
                ('tax_total', fields.DecimalField(max_digits=20, decimal_places=4)),
                ('total', fields.DecimalField(max_digits=20, decimal_places=4)),
                ('allocated', fields.DecimalField(max_digits=20, decimal_places=4)),
                ('amount_refunded', fields.DecimalField(default=0, max_digits=20, decimal_places=4)),
                ('amount_applied', fields.DecimalField(default=0, max_digits=20, decimal_places=4)),
                ('delivery_status', fields.CharEnumField(default=DeliveryStatus.NOT_SENT, description='NOT_SENT: NOT_SENT\nQUEUED: QUEUED\nSENT: SENT\nFAILED: FAILED', enum_type=DeliveryStatus, max_length=16)),
                ('template_version', fields.CharField(max_length=32)),
                ('snapshot', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('pdf_path', fields.CharField(null=True, max_length=512)),
                ('pdf_sha256', fields.CharField(null=True, max_length=64)),
                ('pdf_size', fields.IntField(null=True)),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'credit_notes', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An issued credit note. Its number, amounts, lines and snapshot never change (the'},
            bases=['Model'],
        ),
        ops.AddConstraint(
            model_name='CreditNote',
            constraint=UniqueConstraint(fields=('organization_id', 'number'), name='credit_notes_number_unique'),
        ),
        ops.AddConstraint(
            model_name='CreditNote',
            constraint=CheckConstraint(check="mode IN ('FULL', 'LINES', 'AMOUNT')", name='credit_notes_mode_valid'),
        ),
        ops.AddConstraint(
            model_name='CreditNote',
            constraint=CheckConstraint(check="delivery_status IN ('NOT_SENT', 'QUEUED', 'SENT', 'FAILED')", name='credit_notes_delivery_status_valid'),
        ),
        ops.AddConstraint(
            model_name='CreditNote',
            constraint=CheckConstraint(check="currency ~ '^[A-Z]{3}$'", name='credit_notes_currency_iso'),
        ),
        ops.AddConstraint(
            model_name='CreditNote',
            constraint=CheckConstraint(check='total = subtotal + charges AND total > 0', name='credit_notes_total_adds_up'),
        ),
        ops.AddConstraint(
            model_name='CreditNote',
            constraint=CheckConstraint(check='allocated >= 0 AND amount_refunded >= 0 AND amount_applied >= 0 AND allocated + amount_refunded + amount_applied <= total', name='credit_notes_credit_consistent'),
        ),
        ops.CreateModel(
            name='CreditNoteLine',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('credit_note', fields.ForeignKeyField('models.CreditNote', source_field='credit_note_id', db_constraint=True, to_field='id', related_name='lines', on_delete=OnDelete.RESTRICT)),
                ('position', fields.SmallIntField()),
                ('kind', fields.CharEnumField(description='USAGE: USAGE\nRULE: RULE\nCHARGE: CHARGE\nTAX: TAX', enum_type=LineKind, max_length=16)),
                ('description', fields.CharField(max_length=1024)),
                ('invoice_line_position', fields.SmallIntField(null=True)),
                ('amount', fields.DecimalField(max_digits=20, decimal_places=4)),
            ],
            options={'table': 'credit_note_lines', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One printed line of a credit note, positive where it credits the customer.'},
            bases=['Model'],
        ),
        ops.AddConstraint(
            model_name='CreditNoteLine',
            constraint=UniqueConstraint(fields=('credit_note_id', 'position'), name='credit_note_lines_position_unique'),
        ),
        ops.AddConstraint(
            model_name='CreditNoteLine',
            constraint=CheckConstraint(check="kind IN ('USAGE', 'RULE', 'CHARGE', 'TAX')", name='credit_note_lines_kind_valid'),
        ),
        ops.CreateModel(
            name='CreditNoteNumberCounter',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('year', fields.SmallIntField()),
                ('last_value', fields.IntField(default=0)),
            ],
            options={'table': 'credit_note_number_counters', 'app': 'models', 'pk_attr': 'id', 'table_description': 'The last credit note number used per organization and year (CN-2026-0001).'},
            bases=['Model'],
        ),
        ops.AddConstraint(
            model_name='CreditNoteNumberCounter',
            constraint=UniqueConstraint(fields=('organization_id', 'year'), name='credit_note_number_counters_unique'),
        ),
        ops.AddConstraint(
            model_name='CreditNoteNumberCounter',
            constraint=CheckConstraint(check='last_value >= 0', name='credit_note_number_counters_positive'),
        ),
        ops.CreateModel(
            name='CreditUseEntry',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('credit_note', fields.ForeignKeyField('models.CreditNote', source_field='credit_note_id', db_constraint=True, to_field='id', related_name='uses', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharEnumField(description='REFUND: REFUND\nINVOICE: INVOICE', enum_type=CreditUse, max_length=16)),
                ('invoice', fields.ForeignKeyField('models.Invoice', source_field='invoice_id', null=True, db_constraint=True, to_field='id', related_name='credit_received', on_delete=OnDelete.RESTRICT)),
                ('amount', fields.DecimalField(max_digits=20, decimal_places=4)),
                ('used_on', fields.DateField()),
                ('reference', fields.CharField(default='', max_length=255)),
                ('recorded_by', fields.ForeignKeyField('models.User', source_field='recorded_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'credit_uses', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Remaining credit of a credit note refunded to the customer, or applied to another'},
            bases=['Model'],
        ),
        ops.AddConstraint(
            model_name='CreditUseEntry',
            constraint=CheckConstraint(check="kind IN ('REFUND', 'INVOICE')", name='credit_uses_kind_valid'),
        ),
        ops.AddConstraint(
            model_name='CreditUseEntry',
            constraint=CheckConstraint(check='amount > 0', name='credit_uses_amount_positive'),
        ),
        ops.AddConstraint(
            model_name='CreditUseEntry',
            constraint=CheckConstraint(check="(kind = 'INVOICE') = (invoice_id IS NOT NULL)", name='credit_uses_invoice_given'),
        ),
        ops.AddField(
            model_name='Invoice',
            name='amount_credited',
            field=fields.DecimalField(default=0, db_default=0, max_digits=20, decimal_places=4),
        ),
        ops.AddField(
            model_name='Invoice',
            name='credit_applied',
            field=fields.DecimalField(default=0, db_default=0, max_digits=20, decimal_places=4),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=CheckConstraint(check='amount_credited >= 0 AND credit_applied >= 0 AND amount_credited <= GREATEST(total, 0) AND amount_paid + credit_applied <= GREATEST(total, 0)', name='invoices_credits_consistent'),
        ),
        ops.RunSQL(GUARDS),
    ]
