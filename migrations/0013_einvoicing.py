"""E-invoicing (EN 16931): the identifiers billing profiles (seller) and managed accounts
(buyer) need, the profile's VAT category and payment account, and the organization's choice of
e-invoicing and of the approval e-mail's attachment. Existing rows get empty identifiers
(e-invoicing off), so nothing changes until an organization chooses it."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.einvoicing.identifiers import VatCategory
from models.organizations import EmailAttachment
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0012_credit_note_line_kinds')]

    initial = False

    operations = [
        ops.AddField(
            model_name='BillingProfile',
            name='bic',
            field=fields.CharField(default='', db_default='', max_length=11),
        ),
        ops.AddField(
            model_name='BillingProfile',
            name='country_code',
            field=fields.CharField(default='', db_default='', max_length=2),
        ),
        ops.AddField(
            model_name='BillingProfile',
            name='endpoint_id',
            field=fields.CharField(default='', db_default='', max_length=255),
        ),
        ops.AddField(
            model_name='BillingProfile',
            name='endpoint_scheme',
            field=fields.CharField(default='', db_default='', max_length=4),
        ),
        ops.AddField(
            model_name='BillingProfile',
            name='iban',
            field=fields.CharField(default='', db_default='', max_length=34),
        ),
        ops.AddField(
            model_name='BillingProfile',
            name='legal_id',
            field=fields.CharField(default='', db_default='', max_length=64),
        ),
        ops.AddField(
            model_name='BillingProfile',
            name='vat_category',
            field=fields.CharEnumField(default=VatCategory.STANDARD, db_default=VatCategory.STANDARD, description='STANDARD: STANDARD\nZERO_RATED: ZERO_RATED\nEXEMPT: EXEMPT\nREVERSE_CHARGE: REVERSE_CHARGE', enum_type=VatCategory, max_length=16),
        ),
        ops.AddField(
            model_name='BillingProfile',
            name='vat_exemption_reason',
            field=fields.CharField(default='', db_default='', max_length=255),
        ),
        ops.AddField(
            model_name='BillingProfile',
            name='vat_id',
            field=fields.CharField(default='', db_default='', max_length=15),
        ),
        ops.AddConstraint(
            model_name='BillingProfile',
            constraint=CheckConstraint(check="vat_category IN ('STANDARD', 'ZERO_RATED', 'EXEMPT', 'REVERSE_CHARGE')", name='billing_profiles_vat_category_valid'),
        ),
        ops.AddConstraint(
            model_name='BillingProfile',
            constraint=CheckConstraint(check="(endpoint_id = '') = (endpoint_scheme = '')", name='billing_profiles_endpoint_pair'),
        ),
        ops.AddField(
            model_name='ManagedAccount',
            name='country_code',
            field=fields.CharField(default='', db_default='', max_length=2),
        ),
        ops.AddField(
            model_name='ManagedAccount',
            name='endpoint_id',
            field=fields.CharField(default='', db_default='', max_length=255),
        ),
        ops.AddField(
            model_name='ManagedAccount',
            name='endpoint_scheme',
            field=fields.CharField(default='', db_default='', max_length=4),
        ),
        ops.AddField(
            model_name='ManagedAccount',
            name='legal_id',
            field=fields.CharField(default='', db_default='', max_length=64),
        ),
        ops.AddField(
            model_name='ManagedAccount',
            name='vat_id',
            field=fields.CharField(default='', db_default='', max_length=15),
        ),
        ops.AddConstraint(
            model_name='ManagedAccount',
            constraint=CheckConstraint(check="(endpoint_id = '') = (endpoint_scheme = '')", name='managed_accounts_endpoint_pair'),
        ),
        ops.AddField(
            model_name='Organization',
            name='einvoicing',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Organization',
            name='email_attachment',
            field=fields.CharEnumField(default=EmailAttachment.PDF, db_default=EmailAttachment.PDF, description='PDF: PDF\nFACTURX: FACTURX', enum_type=EmailAttachment, max_length=16),
        ),
        ops.AddConstraint(
            model_name='Organization',
            constraint=CheckConstraint(check="email_attachment IN ('PDF', 'FACTURX')", name='organizations_email_attachment_valid'),
        ),
        ops.AddConstraint(
            model_name='Organization',
            constraint=CheckConstraint(check="email_attachment = 'PDF' OR einvoicing", name='organizations_facturx_needs_einvoicing'),
        ),
    ]
