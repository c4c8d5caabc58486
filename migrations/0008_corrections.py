"""Corrections after approval: an invoice can replace a voided one, supplementary invoices
bill what was delivered for a month after its invoice, an account can have one invoice per
provider, a revision keeps every exchange rate it applied, and late costs remember their
delivery scope, what each adds (`billable`) and the invoice that bills it.

Late costs recorded before knew no scope; of each account, month, currency and origin's
rows, the latest one's difference is what is left to bill (each row was measured against the
invoiced costs, so the latest says it all)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.invoices.tables import InvoiceKind, LineKind
from models.organizations import LateCostBilling
from tortoise.fields.base import OnDelete
from tortoise.fields.db_defaults import SqlDefault
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0007_cost_deliveries')]

    initial = False

    operations = [
        ops.RemoveConstraint(
            model_name='Invoice',
            name='invoices_account_period_unique',
            fields=None,
        ),
        ops.AddField(
            model_name='Invoice',
            name='kind',
            field=fields.CharEnumField(default=InvoiceKind.REGULAR, description='REGULAR: REGULAR\nSUPPLEMENTARY: SUPPLEMENTARY', db_default=InvoiceKind.REGULAR, enum_type=InvoiceKind, max_length=16),
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
            field=fields.CharEnumField(default=LineKind.USAGE, description='USAGE: USAGE\nRULE: RULE\nCHARGE: CHARGE\nTAX: TAX\nLATE_COST: LATE_COST', enum_type=LineKind, max_length=16),
        ),
        ops.AddConstraint(
            model_name='InvoiceLineItem',
            constraint=CheckConstraint(check="kind IN ('USAGE', 'RULE', 'CHARGE', 'TAX', 'LATE_COST')", name='invoice_line_items_kind_valid'),
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
            name='invoice_per_provider',
            field=fields.BooleanField(default=False, db_default=False),
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
    ]
