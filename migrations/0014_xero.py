"""Xero: an organization's connection (tokens encrypted at rest), the authorizations under way,
its account mapping and settings, the push state of each document (xero_syncs) and the payments
read back from Xero (xero_payments, one row per Xero payment id)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.invoices.tables import LineKind
from models.xero.tables import ConnectionStatus, DocumentKind, SyncState
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0013_einvoicing')]

    initial = False

    operations = [
        ops.CreateModel(
            name='XeroAccountMapping',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('line_kind', fields.CharEnumField(description='USAGE: USAGE\nRULE: RULE\nCHARGE: CHARGE\nTAX: TAX', enum_type=LineKind, max_length=16)),
                ('line_name', fields.CharField(default='', max_length=1024)),
                ('account_code', fields.CharField(max_length=32)),
                ('tax_type', fields.CharField(max_length=64)),
                ('position', fields.SmallIntField(default=0)),
            ],
            options={'table': 'xero_account_mappings', 'app': 'models', 'pk_attr': 'id', 'table_description': 'The account code and tax type of the lines of one kind, or of one charge or tax (by the'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='XeroAuthorization',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('state_hash', fields.CharField(unique=True, max_length=64)),
                ('code_verifier', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'xero_authorizations', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A connection under way: the state Xero hands back, bound to the organization and the'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='XeroConnection',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('organization', fields.OneToOneField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='xero_connection', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(default=ConnectionStatus.CONNECTED, description='CONNECTED: CONNECTED\nNEEDS_RECONNECT: NEEDS_RECONNECT', enum_type=ConnectionStatus, max_length=16)),
                ('status_message', fields.TextField(null=True, unique=False)),
                ('tenant_id', fields.CharField(max_length=64)),
                ('tenant_name', fields.CharField(default='', max_length=255)),
                ('short_code', fields.CharField(default='', max_length=32)),
                ('connection_ref', fields.CharField(default='', max_length=64)),
                ('tokens', fields.TextField(unique=False)),
                ('access_expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('connected_by', fields.ForeignKeyField('models.User', source_field='connected_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('connected_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('payments_checked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'xero_connections', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One Xero organisation (tenant) per MSP organization.'},
            bases=['TimestampMixin', 'Model'],
        ),
        ops.CreateModel(
            name='XeroPayment',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('xero_payment_id', fields.CharField(max_length=64)),
                ('invoice', fields.ForeignKeyField('models.Invoice', source_field='invoice_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('payment', fields.ForeignKeyField('models.Payment', source_field='payment_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('message', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'xero_payments', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A payment read from Xero, once: recorded against our invoice, or skipped (`message`'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='XeroSettings',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('organization', fields.OneToOneField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='xero_settings', on_delete=OnDelete.CASCADE)),
                ('auto_push_at_rollover', fields.BooleanField(default=False)),
                ('account_code', fields.CharField(default='200', max_length=32)),
                ('tax_type', fields.CharField(default='NONE', max_length=64)),
            ],
            options={'table': 'xero_settings', 'app': 'models', 'pk_attr': 'id', 'table_description': "How an organization's documents land in Xero."},
            bases=['TimestampMixin', 'Model'],
        ),
        ops.CreateModel(
            name='XeroSync',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('invoice', fields.ForeignKeyField('models.Invoice', source_field='invoice_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('document_kind', fields.CharEnumField(description='INVOICE: INVOICE\nCREDIT_NOTE: CREDIT_NOTE', enum_type=DocumentKind, max_length=16)),
                ('document_id', fields.UUIDField()),
                ('number', fields.CharField(max_length=64)),
                ('state', fields.CharEnumField(default=SyncState.QUEUED, description='QUEUED: QUEUED\nRETRYING: RETRYING\nSYNCED: SYNCED\nFAILED: FAILED', enum_type=SyncState, max_length=16)),
                ('message', fields.TextField(null=True, unique=False)),
                ('attempts', fields.SmallIntField(default=0)),
                ('xero_id', fields.CharField(null=True, max_length=64)),
                ('xero_url', fields.CharField(null=True, max_length=512)),
                ('last_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('synced_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'xero_syncs', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Where one of our documents stands with Xero. `invoice` is the invoice itself, or the'},
            bases=['TimestampMixin', 'Model'],
        ),
        ops.AddConstraint(
            model_name='XeroAccountMapping',
            constraint=UniqueConstraint(fields=('organization_id', 'line_kind', 'line_name'), name='xero_account_mappings_unique'),
        ),
        ops.AddConstraint(
            model_name='XeroAccountMapping',
            constraint=CheckConstraint(check="line_kind IN ('USAGE', 'RULE', 'CHARGE', 'TAX')", name='xero_account_mappings_line_kind_valid'),
        ),
        ops.AddConstraint(
            model_name='XeroAccountMapping',
            constraint=CheckConstraint(check="btrim(account_code) <> '' AND btrim(tax_type) <> ''", name='xero_account_mappings_codes_present'),
        ),
        ops.AddConstraint(
            model_name='XeroConnection',
            constraint=CheckConstraint(check="status IN ('CONNECTED', 'NEEDS_RECONNECT')", name='xero_connections_status_valid'),
        ),
        ops.AddConstraint(
            model_name='XeroPayment',
            constraint=UniqueConstraint(fields=('organization_id', 'xero_payment_id'), name='xero_payments_unique'),
        ),
        ops.AddConstraint(
            model_name='XeroPayment',
            constraint=CheckConstraint(check='(payment_id IS NULL) <> (message IS NULL)', name='xero_payments_outcome'),
        ),
        ops.AddConstraint(
            model_name='XeroSettings',
            constraint=CheckConstraint(check="btrim(account_code) <> '' AND btrim(tax_type) <> ''", name='xero_settings_codes_present'),
        ),
        ops.AddConstraint(
            model_name='XeroSync',
            constraint=UniqueConstraint(fields=('document_kind', 'document_id'), name='xero_syncs_document_unique'),
        ),
        ops.AddConstraint(
            model_name='XeroSync',
            constraint=CheckConstraint(check="document_kind IN ('INVOICE', 'CREDIT_NOTE')", name='xero_syncs_document_kind_valid'),
        ),
        ops.AddConstraint(
            model_name='XeroSync',
            constraint=CheckConstraint(check="state IN ('QUEUED', 'RETRYING', 'SYNCED', 'FAILED')", name='xero_syncs_state_valid'),
        ),
        ops.AddConstraint(
            model_name='XeroSync',
            constraint=CheckConstraint(check="state <> 'SYNCED' OR xero_id IS NOT NULL", name='xero_syncs_synced_has_id'),
        ),
        # The payment poll finds our invoice by Xero's id; timelines and `Invoice.xeroUrl` by ours.
        ops.RunSQL("CREATE INDEX xero_syncs_xero_id ON xero_syncs (organization_id, xero_id) WHERE xero_id IS NOT NULL"),
        ops.RunSQL("CREATE INDEX xero_syncs_invoice ON xero_syncs (invoice_id)"),
    ]
