"""The approval cockpit: revisions keep the findings of the checks before approval and the
cost column they billed; organizations set the thresholds of those checks; billing profiles
(and accounts, to differ) choose the FOCUS cost column invoices bill; accounts choose whether
their customer users see their usage."""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.billing_profiles import BillingBasis
from tortoise.fields.db_defaults import SqlDefault
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0008_corrections')]

    initial = False

    operations = [
        ops.AddField(
            model_name='BillingProfile',
            name='billing_basis',
            field=fields.CharEnumField(default=BillingBasis.BILLED, description='BILLED: BILLED\nEFFECTIVE: EFFECTIVE\nLIST: LIST', db_default=BillingBasis.BILLED, enum_type=BillingBasis, max_length=16),
        ),
        ops.AddConstraint(
            model_name='BillingProfile',
            constraint=CheckConstraint(check="billing_basis IN ('BILLED', 'EFFECTIVE', 'LIST')", name='billing_profiles_billing_basis_valid'),
        ),
        ops.AddField(
            model_name='InvoiceRevision',
            name='billing_basis',
            field=fields.CharField(default='BILLED', db_default='BILLED', max_length=16),
        ),
        ops.AddField(
            model_name='InvoiceRevision',
            name='checks',
            field=fields.JSONField(default=list, db_default=SqlDefault("'[]'::jsonb"), encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='ManagedAccount',
            name='billing_basis',
            field=fields.CharEnumField(null=True, description='BILLED: BILLED\nEFFECTIVE: EFFECTIVE\nLIST: LIST', enum_type=BillingBasis, max_length=16),
        ),
        ops.AddField(
            model_name='ManagedAccount',
            name='usage_visible_to_customer',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddConstraint(
            model_name='ManagedAccount',
            constraint=CheckConstraint(check="billing_basis IS NULL OR billing_basis IN ('BILLED', 'EFFECTIVE', 'LIST')", name='managed_accounts_billing_basis_valid'),
        ),
        ops.AddField(
            model_name='Organization',
            name='check_change_amount',
            field=fields.DecimalField(default=100, db_default=100, max_digits=20, decimal_places=4),
        ),
        ops.AddField(
            model_name='Organization',
            name='check_change_percent',
            field=fields.DecimalField(default=25, db_default=25, max_digits=7, decimal_places=2),
        ),
        ops.AddConstraint(
            model_name='Organization',
            constraint=CheckConstraint(check='check_change_percent >= 0 AND check_change_amount >= 0', name='organizations_check_thresholds'),
        ),
    ]
