"""Rules the database enforces itself, whoever writes: nothing references another
organization's rows, revisions and line items never change, the timeline is append-only,
and an approved invoice keeps its number and its amounts."""

from tortoise import migrations
from tortoise.migrations import operations as ops

SAME_ORGANIZATION = [
    "ALTER TABLE managed_accounts ADD CONSTRAINT managed_accounts_id_org UNIQUE (id, organization_id)",
    "ALTER TABLE billing_periods ADD CONSTRAINT billing_periods_id_org UNIQUE (id, organization_id)",
    "ALTER TABLE billing_profiles ADD CONSTRAINT billing_profiles_id_org UNIQUE (id, organization_id)",
    "ALTER TABLE invoices ADD CONSTRAINT invoices_account_same_org FOREIGN KEY"
    " (managed_account_id, organization_id) REFERENCES managed_accounts (id, organization_id)",
    "ALTER TABLE invoices ADD CONSTRAINT invoices_period_same_org FOREIGN KEY"
    " (billing_period_id, organization_id) REFERENCES billing_periods (id, organization_id)",
    "ALTER TABLE managed_accounts ADD CONSTRAINT managed_accounts_profile_same_org FOREIGN KEY"
    " (billing_profile_id, organization_id) REFERENCES billing_profiles (id, organization_id)"
    " ON DELETE SET NULL (billing_profile_id)",
    "ALTER TABLE users ADD CONSTRAINT users_account_same_org FOREIGN KEY"
    " (managed_account_id, organization_id) REFERENCES managed_accounts (id, organization_id)"
    " ON DELETE CASCADE",
    "ALTER TABLE sub_accounts ADD CONSTRAINT sub_accounts_account_same_org FOREIGN KEY"
    " (managed_account_id, organization_id) REFERENCES managed_accounts (id, organization_id)"
    " ON DELETE CASCADE",
    "ALTER TABLE billing_rules ADD CONSTRAINT billing_rules_account_same_org FOREIGN KEY"
    " (managed_account_id, organization_id) REFERENCES managed_accounts (id, organization_id)"
    " ON DELETE CASCADE",
    "ALTER TABLE cost_records ADD CONSTRAINT cost_records_account_same_org FOREIGN KEY"
    " (managed_account_id, organization_id) REFERENCES managed_accounts (id, organization_id)"
    " ON DELETE SET NULL (managed_account_id)",
]

FROZEN_ROWS = [
    """CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% rows cannot be %', TG_TABLE_NAME, lower(TG_OP)
            USING ERRCODE = 'integrity_constraint_violation';
    END $$""",
    "CREATE TRIGGER invoice_revisions_frozen BEFORE UPDATE OR DELETE ON invoice_revisions"
    " FOR EACH ROW EXECUTE FUNCTION refuse_change()",
    "CREATE TRIGGER invoice_line_items_frozen BEFORE UPDATE OR DELETE ON invoice_line_items"
    " FOR EACH ROW EXECUTE FUNCTION refuse_change()",
    "CREATE TRIGGER invoice_events_append_only BEFORE UPDATE OR DELETE ON invoice_events"
    " FOR EACH ROW EXECUTE FUNCTION refuse_change()",
    """CREATE FUNCTION guard_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            IF OLD.number IS NOT NULL THEN
                RAISE EXCEPTION 'invoice % is numbered and cannot be deleted', OLD.number
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN OLD;
        END IF;
        IF OLD.number IS NOT NULL AND NEW.number IS DISTINCT FROM OLD.number THEN
            RAISE EXCEPTION 'invoice % keeps its number', OLD.number
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF OLD.status IN ('APPROVED', 'VOIDED') AND (
            NEW.status NOT IN ('APPROVED', 'VOIDED')
            OR (OLD.status = 'VOIDED' AND NEW.status <> 'VOIDED')
            OR (NEW.current_revision_id, NEW.currency, NEW.subtotal, NEW.adjustments, NEW.charges,
                NEW.total, NEW.issue_date, NEW.due_date, NEW.managed_account_id,
                NEW.billing_period_id, NEW.organization_id)
               IS DISTINCT FROM
               (OLD.current_revision_id, OLD.currency, OLD.subtotal, OLD.adjustments, OLD.charges,
                OLD.total, OLD.issue_date, OLD.due_date, OLD.managed_account_id,
                OLD.billing_period_id, OLD.organization_id)
        ) THEN
            RAISE EXCEPTION 'invoice % is approved and cannot change', OLD.number
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER invoices_guard BEFORE UPDATE OR DELETE ON invoices"
    " FOR EACH ROW EXECUTE FUNCTION guard_invoice()",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0002_constraints")]

    initial = False

    operations = [
        ops.RunSQL(SAME_ORGANIZATION),
        ops.RunSQL(FROZEN_ROWS),
    ]
