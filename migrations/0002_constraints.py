from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.AddConstraint(
            model_name='BillingPeriod',
            constraint=UniqueConstraint(fields=('organization_id', 'start_date'), name='billing_periods_month_unique'),
        ),
        ops.AddConstraint(
            model_name='BillingPeriod',
            constraint=CheckConstraint(check="EXTRACT(DAY FROM start_date) = 1 AND end_date = (start_date + INTERVAL '1 month')::date", name='billing_periods_whole_month'),
        ),
        ops.AddConstraint(
            model_name='BillingPeriod',
            constraint=CheckConstraint(check="state IN ('OPEN', 'CLOSED')", name='billing_periods_state_valid'),
        ),
        ops.AddConstraint(
            model_name='BillingPeriod',
            constraint=CheckConstraint(check="(state = 'CLOSED') = (closed_at IS NOT NULL)", name='billing_periods_closed_at'),
        ),
        ops.AddConstraint(
            model_name='BillingProfile',
            constraint=UniqueConstraint(fields=('organization_id', 'nickname'), name='billing_profiles_nickname_unique'),
        ),
        ops.AddConstraint(
            model_name='BillingProfile',
            constraint=CheckConstraint(check="btrim(nickname) <> ''", name='billing_profiles_nickname_present'),
        ),
        ops.AddConstraint(
            model_name='BillingProfile',
            constraint=CheckConstraint(check="(logo IS NULL) = (logo_content_type IS NULL) AND (logo_content_type IS NULL OR logo_content_type IN ('image/png', 'image/jpeg'))", name='billing_profiles_logo_typed'),
        ),
        ops.AddConstraint(
            model_name='BillingProfile',
            constraint=CheckConstraint(check="jsonb_typeof(business_fields) = 'array'", name='billing_profiles_business_fields_list'),
        ),
        ops.AddConstraint(
            model_name='BillingProfile',
            constraint=CheckConstraint(check="jsonb_typeof(banking_fields) = 'array'", name='billing_profiles_banking_fields_list'),
        ),
        ops.AddConstraint(
            model_name='BillingProfileCharge',
            constraint=UniqueConstraint(fields=('billing_profile_id', 'position'), name='billing_profile_charges_position_unique'),
        ),
        ops.AddConstraint(
            model_name='BillingProfileCharge',
            constraint=CheckConstraint(check="kind IN ('PERCENT', 'FIXED')", name='billing_profile_charges_kind_valid'),
        ),
        ops.AddConstraint(
            model_name='BillingProfileCharge',
            constraint=CheckConstraint(check="value >= 0 AND (kind <> 'PERCENT' OR value <= 100)", name='billing_profile_charges_value_range'),
        ),
        ops.AddConstraint(
            model_name='BillingProfileCharge',
            constraint=CheckConstraint(check="btrim(name) <> ''", name='billing_profile_charges_name_present'),
        ),
        ops.AddConstraint(
            model_name='BillingRule',
            constraint=CheckConstraint(check="kind IN ('CREDIT', 'DISCOUNT', 'MARKUP', 'TAX')", name='billing_rules_kind_valid'),
        ),
        ops.AddConstraint(
            model_name='BillingRule',
            constraint=CheckConstraint(check="calculation IN ('PERCENT', 'FIXED')", name='billing_rules_calculation_valid'),
        ),
        ops.AddConstraint(
            model_name='BillingRule',
            constraint=CheckConstraint(check='value >= 0', name='billing_rules_value_positive'),
        ),
        ops.AddConstraint(
            model_name='BillingRule',
            constraint=CheckConstraint(check="calculation <> 'PERCENT' OR kind IN ('MARKUP', 'TAX') OR value <= 100", name='billing_rules_percent_range'),
        ),
        ops.AddConstraint(
            model_name='BillingRule',
            constraint=CheckConstraint(check='(starts_on IS NULL OR EXTRACT(DAY FROM starts_on) = 1) AND (ends_on IS NULL OR EXTRACT(DAY FROM ends_on) = 1) AND (starts_on IS NULL OR ends_on IS NULL OR starts_on <= ends_on)', name='billing_rules_months'),
        ),
        ops.AddConstraint(
            model_name='BillingRule',
            constraint=CheckConstraint(check="btrim(name) <> ''", name='billing_rules_name_present'),
        ),
        ops.AddConstraint(
            model_name='CostImport',
            constraint=CheckConstraint(check='row_count = inserted_count + duplicate_count AND inserted_count >= 0 AND duplicate_count >= 0', name='cost_imports_counts_add_up'),
        ),
        ops.AddConstraint(
            model_name='CostRecord',
            constraint=UniqueConstraint(fields=('organization_id', 'fingerprint'), name='cost_records_fingerprint_unique'),
        ),
        ops.AddConstraint(
            model_name='CostRecord',
            constraint=CheckConstraint(check='EXTRACT(DAY FROM billing_month) = 1', name='cost_records_month'),
        ),
        ops.AddConstraint(
            model_name='CostRecord',
            constraint=CheckConstraint(check="billing_currency ~ '^[A-Z]{3}$'", name='cost_records_currency_iso'),
        ),
        ops.AddConstraint(
            model_name='ExchangeRate',
            constraint=UniqueConstraint(fields=('organization_id', 'month', 'base_currency', 'currency'), name='exchange_rates_unique'),
        ),
        ops.AddConstraint(
            model_name='ExchangeRate',
            constraint=CheckConstraint(check='EXTRACT(DAY FROM month) = 1', name='exchange_rates_month'),
        ),
        ops.AddConstraint(
            model_name='ExchangeRate',
            constraint=CheckConstraint(check='rate > 0', name='exchange_rates_rate_positive'),
        ),
        ops.AddConstraint(
            model_name='ExchangeRate',
            constraint=CheckConstraint(check="base_currency ~ '^[A-Z]{3}$' AND currency ~ '^[A-Z]{3}$' AND base_currency <> currency", name='exchange_rates_currencies'),
        ),
        ops.AddField(
            model_name='Invoice',
            name='current_revision',
            field=fields.ForeignKeyField('models.InvoiceRevision', source_field='current_revision_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=UniqueConstraint(fields=('managed_account_id', 'billing_period_id'), name='invoices_account_period_unique'),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=UniqueConstraint(fields=('organization_id', 'number'), name='invoices_number_unique'),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=CheckConstraint(check="status IN ('READY_TO_INVOICE', 'GENERATING', 'AWAITING_APPROVAL', 'ERROR', 'APPROVED', 'VOIDED')", name='invoices_status_valid'),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=CheckConstraint(check="payment_status IN ('UNPAID', 'PARTIALLY_PAID', 'PAID', 'OVERDUE', 'PARTIALLY_REFUNDED', 'REFUNDED')", name='invoices_payment_status_valid'),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=CheckConstraint(check="delivery_status IN ('NOT_SENT', 'QUEUED', 'SENT', 'FAILED')", name='invoices_delivery_status_valid'),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=CheckConstraint(check="currency ~ '^[A-Z]{3}$'", name='invoices_currency_iso'),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=CheckConstraint(check="status NOT IN ('AWAITING_APPROVAL', 'APPROVED') OR (number IS NOT NULL AND current_revision_id IS NOT NULL AND issue_date IS NOT NULL AND due_date IS NOT NULL)", name='invoices_generated_complete'),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=CheckConstraint(check='amount_paid >= 0 AND amount_refunded >= 0 AND amount_refunded <= amount_paid AND amount_paid <= GREATEST(total, 0)', name='invoices_amounts_consistent'),
        ),
        ops.AddConstraint(
            model_name='Invoice',
            constraint=CheckConstraint(check='due_date IS NULL OR due_date >= issue_date', name='invoices_due_after_issue'),
        ),
        ops.AddConstraint(
            model_name='InvoiceEvent',
            constraint=CheckConstraint(check="actor_id IS NOT NULL OR actor_label <> ''", name='invoice_events_actor_known'),
        ),
        ops.AddConstraint(
            model_name='InvoiceLineItem',
            constraint=UniqueConstraint(fields=('revision_id', 'position'), name='invoice_line_items_position_unique'),
        ),
        ops.AddConstraint(
            model_name='InvoiceLineItem',
            constraint=CheckConstraint(check="kind IN ('USAGE', 'RULE', 'CHARGE', 'TAX')", name='invoice_line_items_kind_valid'),
        ),
        ops.AddConstraint(
            model_name='InvoiceNumberCounter',
            constraint=UniqueConstraint(fields=('organization_id', 'year'), name='invoice_number_counters_unique'),
        ),
        ops.AddConstraint(
            model_name='InvoiceNumberCounter',
            constraint=CheckConstraint(check='last_value >= 0', name='invoice_number_counters_positive'),
        ),
        ops.AddConstraint(
            model_name='InvoiceRevision',
            constraint=UniqueConstraint(fields=('invoice_id', 'revision'), name='invoice_revisions_unique'),
        ),
        ops.AddConstraint(
            model_name='InvoiceRevision',
            constraint=CheckConstraint(check='revision >= 1', name='invoice_revisions_positive'),
        ),
        ops.AddConstraint(
            model_name='InvoiceRevision',
            constraint=CheckConstraint(check='exchange_rate > 0', name='invoice_revisions_rate_positive'),
        ),
        ops.AddConstraint(
            model_name='InvoiceRevision',
            constraint=CheckConstraint(check='total = subtotal + adjustments + charges', name='invoice_revisions_total_adds_up'),
        ),
        ops.AddConstraint(
            model_name='ManagedAccount',
            constraint=UniqueConstraint(fields=('organization_id', 'name'), name='managed_accounts_name_unique'),
        ),
        ops.AddConstraint(
            model_name='ManagedAccount',
            constraint=CheckConstraint(check="btrim(name) <> ''", name='managed_accounts_name_present'),
        ),
        ops.AddConstraint(
            model_name='ManagedAccount',
            constraint=CheckConstraint(check="currency ~ '^[A-Z]{3}$'", name='managed_accounts_currency_iso'),
        ),
        ops.AddConstraint(
            model_name='ManagedAccount',
            constraint=CheckConstraint(check='payment_terms_days BETWEEN 0 AND 365', name='managed_accounts_payment_terms_range'),
        ),
        ops.AddConstraint(
            model_name='ManagedAccount',
            constraint=CheckConstraint(check="jsonb_typeof(billing_emails) = 'array'", name='managed_accounts_emails_list'),
        ),
        ops.AddConstraint(
            model_name='ManagedAccount',
            constraint=CheckConstraint(check="jsonb_typeof(business_fields) = 'array'", name='managed_accounts_business_fields_list'),
        ),
        ops.AddConstraint(
            model_name='Organization',
            constraint=CheckConstraint(check="invoice_prefix ~ '^[A-Z0-9]{1,16}$'", name='organizations_prefix_valid'),
        ),
        ops.AddConstraint(
            model_name='Organization',
            constraint=CheckConstraint(check="btrim(name) <> ''", name='organizations_name_present'),
        ),
        ops.AddConstraint(
            model_name='Organization',
            constraint=CheckConstraint(check="export_date_format IN ('DD/MM/YYYY', 'MM/DD/YYYY', 'YYYY-MM-DD')", name='organizations_export_date_format_valid'),
        ),
        ops.AddConstraint(
            model_name='Payment',
            constraint=CheckConstraint(check='amount > 0', name='payments_amount_positive'),
        ),
        ops.AddConstraint(
            model_name='Refund',
            constraint=CheckConstraint(check='amount > 0', name='refunds_amount_positive'),
        ),
        ops.AddConstraint(
            model_name='SubAccount',
            constraint=UniqueConstraint(fields=('organization_id', 'sub_account_id'), name='sub_accounts_unique'),
        ),
        ops.AddConstraint(
            model_name='SubAccount',
            constraint=CheckConstraint(check="btrim(sub_account_id) <> ''", name='sub_accounts_id_present'),
        ),
        ops.AddConstraint(
            model_name='Token',
            constraint=CheckConstraint(check="kind IN ('SESSION', 'API')", name='tokens_kind_valid'),
        ),
        ops.AddConstraint(
            model_name='Token',
            constraint=CheckConstraint(check="token_hash ~ '^[0-9a-f]{64}$'", name='tokens_hash_is_sha256'),
        ),
        ops.AddConstraint(
            model_name='Token',
            constraint=CheckConstraint(check='expires_at > created_at', name='tokens_expire_after_creation'),
        ),
        ops.AddConstraint(
            model_name='User',
            constraint=CheckConstraint(check="scope IN ('OWNER', 'VIEWER', 'CUSTOMER')", name='users_scope_valid'),
        ),
        ops.AddConstraint(
            model_name='User',
            constraint=CheckConstraint(check="email = lower(email) AND email LIKE '%_@_%'", name='users_email_normalized'),
        ),
        ops.AddConstraint(
            model_name='User',
            constraint=CheckConstraint(check="(scope = 'CUSTOMER') = (managed_account_id IS NOT NULL)", name='users_customer_has_account'),
        ),
    ]
