"""People and settings: invitations (single-use, expiring, stored as SHA-256 digests), a user's
last sign-in, and the organization's settings. The data ingestion delay becomes a number of
days: an organization that waited for late AWS data (closing on the 4th) waits 3 days.
Payment reminders: the steps sent per invoice, and the invoices whose reminders are stopped.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0009_approval_cockpit')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Invitation',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='invitations', on_delete=OnDelete.CASCADE)),
                ('invited_by', fields.ForeignKeyField('models.User', source_field='invited_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('token_hash', fields.CharField(null=True, unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('accepted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('withdrawn_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'invitations', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Organization',
            name='auto_invoice',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Organization',
            name='auto_send',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Organization',
            name='auto_send_grace_hours',
            field=fields.SmallIntField(default=24, db_default=24),
        ),
        ops.AddField(
            model_name='Organization',
            name='data_ingestion_delay_days',
            field=fields.SmallIntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='Organization',
            name='default_payment_terms_days',
            field=fields.SmallIntField(default=30, db_default=30),
        ),
        ops.AddField(
            model_name='Organization',
            name='email_reply_to',
            field=fields.CharField(default='', db_default='', max_length=320),
        ),
        ops.AddField(
            model_name='Organization',
            name='email_sender_name',
            field=fields.CharField(default='', db_default='', max_length=255),
        ),
        ops.AddField(
            model_name='Organization',
            name='reminder_days',
            field=fields.JSONField(default=list, db_default=[], encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.RunSQL(
            "UPDATE organizations SET data_ingestion_delay_days = 3 WHERE data_ingestion_delay",
            reverse_sql="UPDATE organizations SET data_ingestion_delay = data_ingestion_delay_days > 0",
        ),
        ops.RemoveField(model_name='Organization', name='data_ingestion_delay'),
        ops.AddConstraint(
            model_name='Organization',
            constraint=CheckConstraint(check='data_ingestion_delay_days BETWEEN 0 AND 27', name='organizations_ingestion_delay_range'),
        ),
        ops.AddConstraint(
            model_name='Organization',
            constraint=CheckConstraint(check='default_payment_terms_days BETWEEN 0 AND 365', name='organizations_payment_terms_range'),
        ),
        ops.AddConstraint(
            model_name='Organization',
            constraint=CheckConstraint(check='auto_send_grace_hours BETWEEN 0 AND 720', name='organizations_grace_range'),
        ),
        ops.AddConstraint(
            model_name='Organization',
            constraint=CheckConstraint(check="jsonb_typeof(reminder_days) = 'array'", name='organizations_reminders_list'),
        ),
        ops.AddField(
            model_name='User',
            name='last_login_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.CreateModel(
            name='InvoiceReminder',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('invoice', fields.ForeignKeyField('models.Invoice', source_field='invoice_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('days_after_due', fields.SmallIntField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'invoice_reminders', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One step of the schedule, done for one invoice.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ReminderStop',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('invoice', fields.OneToOneField('models.Invoice', source_field='invoice_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('stopped_by_id', fields.UUIDField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'invoice_reminder_stops', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An invoice whose reminders an owner stopped (a dispute, a payment plan).'},
            bases=['Model'],
        ),
        ops.AddConstraint(
            model_name='Invitation',
            constraint=CheckConstraint(check="token_hash ~ '^[0-9a-f]{64}$'", name='invitations_hash_is_sha256'),
        ),
        ops.AddConstraint(
            model_name='Invitation',
            constraint=CheckConstraint(check='expires_at > created_at', name='invitations_expire_after_creation'),
        ),
        ops.AddConstraint(
            model_name='InvoiceReminder',
            constraint=UniqueConstraint(fields=('invoice_id', 'days_after_due'), name='invoice_reminders_step_unique'),
        ),
    ]
