"""Corrections after approval, and what a console needs of invoices.

An invoice can replace a voided one, supplementary invoices bill what was delivered for a
month after its invoice, an account can have one invoice per provider, a revision keeps every
exchange rate it applied, and late costs remember their delivery scope, what each adds
(`billable`) and the invoice that bills it. Accounts choose whether they are invoiced and
what the month close does by itself; invoices gain their tax total, a memo, a queued
automatic send and one-off lines; billing profiles a printed footer.

Late costs recorded before knew no scope; of each account, month, currency and origin's
rows, the latest one's difference is what is left to bill (each row was measured against the
invoiced costs, so the latest says it all). Existing invoices get their tax total from their
current revision's TAX lines."""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.invoices.tables import InvoiceKind, LineKind
from models.managed_accounts import AutoInvoice
from models.organizations import LateCostBilling
from tortoise.fields.base import OnDelete
from tortoise.fields.db_defaults import SqlDefault
from uuid import uuid4
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0007_cost_deliveries')]

    initial = False

    operations = [
        ops.CreateModel(
            name='InvoiceExtraLine',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('invoice', fields.ForeignKeyField('models.Invoice', source_field='invoice_id', db_constraint=True, to_field='id', related_name='extra_lines', on_delete=OnDelete.CASCADE)),
                ('position', fields.SmallIntField()),
                ('description', fields.CharField(max_length=1024)),
                ('quantity', fields.DecimalField(max_digits=20, decimal_places=4)),
                ('unit_price', fields.DecimalField(max_digits=20, decimal_places=4)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'invoice_extra_lines', 'app': 'models', 'constraints': [UniqueConstraint(fields=('invoice_id', 'position'), name='invoice_extra_lines_position_unique'), CheckConstraint(check="btrim(description) <> ''", name='invoice_extra_lines_description_present')], 'pk_attr': 'id', 'table_description': 'A one-off item an owner adds to an invoice before approval; every generation prints it'},
            bases=['Model'],
        ),
        # CreateModel's options create no constraint: each is added on its own.
        ops.AddConstraint(
            model_name='InvoiceExtraLine',
            constraint=UniqueConstraint(fields=('invoice_id', 'position'), name='invoice_extra_lines_position_unique'),
        ),
        ops.AddConstraint(
            model_name='InvoiceExtraLine',
            constraint=CheckConstraint(check="btrim(description) <> ''", name='invoice_extra_lines_description_present'),
        ),
        ops.AddField(
            model_name='BillingProfile',
            name='invoice_notes',
            field=fields.TextField(default='', db_default='', unique=False),
        ),
        ops.RemoveConstraint(
            model_name='Invoice',
            name='invoices_account_period_unique',
            fields=None,
        ),
        ops.AddField(
            model_name='Invoice',
            name='auto_send_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Invoice',
            name='kind',
            field=fields.CharEnumField(default=InvoiceKind.REGULAR, description='REGULAR: REGULAR\nSUPPLEMENTARY: SUPPLEMENTARY', db_default=InvoiceKind.REGULAR, enum_type=InvoiceKind, max_length=16),
        ),
        ops.AddField(
            model_name='Invoice',
            name='memo',
            field=fields.TextField(default='', db_default='', unique=False),
        ),
        ops.AddField(
            model_name='Invoice',
            name='provider_name',
            field=fields.CharField(default='', db_default='', max_length=128),
        ),
        ops.AddField(
            model_name='Invoice',
            name='replaces',
            field=fields.ForeignKeyField('models.Invoice', source_field='replaces_id', null=True, unique=True, db_constraint=True, to_field='id', related_name='replaced_by', on_delete=OnDelete.RESTRICT),
        ),
        ops.AddField(
            model_name='Invoice',
            name='tax_total',
            field=fields.DecimalField(default=0, db_default=0, max_digits=20, decimal_places=4),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=UniqueConstraint(fields=('managed_account_id', 'billing_period_id', 'provider_name'), name='invoices_account_period_unique', condition="kind = 'REGULAR' AND status <> 'VOIDED'"),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=CheckConstraint(check="kind IN ('REGULAR', 'SUPPLEMENTARY')", name='invoices_kind_valid'),
        ),
        ops.RemoveConstraint(
            model_name='InvoiceLineItem',
            name='invoice_line_items_kind_valid',
            fields=None,
        ),
        ops.AlterField(
            model_name='InvoiceLineItem',
            name='kind',
            field=fields.CharEnumField(default=LineKind.USAGE, description='USAGE: USAGE\nONE_OFF: ONE_OFF\nRULE: RULE\nCHARGE: CHARGE\nTAX: TAX\nLATE_COST: LATE_COST', enum_type=LineKind, max_length=16),
        ),
        ops.AddConstraint(
            model_name='InvoiceLineItem',
            constraint=CheckConstraint(check="kind IN ('USAGE', 'ONE_OFF', 'RULE', 'CHARGE', 'TAX', 'LATE_COST')", name='invoice_line_items_kind_valid'),
        ),
        ops.AddField(
            model_name='InvoiceRevision',
            name='exchange_rates',
            field=fields.JSONField(default=dict, db_default=SqlDefault("'{}'::jsonb"), encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='LateCost',
            name='billable',
            field=fields.DecimalField(default=0, db_default=0, max_digits=38, decimal_places=16),
        ),
        ops.AddField(
            model_name='LateCost',
            name='billed_invoice',
            field=fields.ForeignKeyField('models.Invoice', source_field='billed_invoice_id', null=True, db_constraint=True, to_field='id', related_name='billed_late_costs', on_delete=OnDelete.RESTRICT),
        ),
        ops.AddField(
            model_name='LateCost',
            name='billing_account_id',
            field=fields.CharField(default='', db_default='', max_length=255),
        ),
        ops.AddField(
            model_name='LateCost',
            name='provider_name',
            field=fields.CharField(default='', db_default='', max_length=128),
        ),
        ops.AddField(
            model_name='ManagedAccount',
            name='auto_invoice',
            field=fields.CharEnumField(default=AutoInvoice.OFF, description='OFF: OFF\nGENERATE: GENERATE\nSEND: SEND', db_default=AutoInvoice.OFF, enum_type=AutoInvoice, max_length=16),
        ),
        ops.AddField(
            model_name='ManagedAccount',
            name='auto_send_after_hours',
            field=fields.SmallIntField(default=24, db_default=24),
        ),
        ops.AddField(
            model_name='ManagedAccount',
            name='invoice_per_provider',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='ManagedAccount',
            name='is_invoiced',
            field=fields.BooleanField(default=True, db_default=True),
        ),
        ops.AddConstraint(
            model_name='ManagedAccount',
            constraint=CheckConstraint(check="auto_invoice IN ('OFF', 'GENERATE', 'SEND')", name='managed_accounts_auto_invoice_valid'),
        ),
        ops.AddConstraint(
            model_name='ManagedAccount',
            constraint=CheckConstraint(check='auto_send_after_hours BETWEEN 0 AND 720', name='managed_accounts_auto_send_after_range'),
        ),
        ops.AddField(
            model_name='Organization',
            name='late_cost_billing',
            field=fields.CharEnumField(default=LateCostBilling.NEXT_INVOICE, description='NEXT_INVOICE: NEXT_INVOICE\nSUPPLEMENTARY_INVOICE: SUPPLEMENTARY_INVOICE', db_default=LateCostBilling.NEXT_INVOICE, enum_type=LateCostBilling, max_length=24),
        ),
        ops.AddConstraint(
            model_name='Organization',
            constraint=CheckConstraint(check="late_cost_billing IN ('NEXT_INVOICE', 'SUPPLEMENTARY_INVOICE')", name='organizations_late_cost_billing_valid'),
        ),
        ops.RunSQL(
            """UPDATE late_costs l SET billable = l.difference
               WHERE NOT EXISTS (SELECT 1 FROM late_costs n
                   WHERE n.managed_account_id = l.managed_account_id AND n.billing_month = l.billing_month
                     AND n.currency = l.currency AND n.origin = l.origin
                     AND (n.created_at, n.id) > (l.created_at, l.id))"""
        ),
        ops.RunSQL(
            """UPDATE invoices i SET tax_total = t.amount FROM (
                   SELECT revision_id, sum(amount) AS amount FROM invoice_line_items
                   WHERE kind = 'TAX' GROUP BY revision_id) t
               WHERE t.revision_id = i.current_revision_id"""
        ),
    ]
