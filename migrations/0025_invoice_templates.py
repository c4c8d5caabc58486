"""Invoice templates an organization owns: numbered versions of Jinja text, at most one active
per organization. A version's text never changes, and one a revision was printed with is never
deleted (a trigger refuses both); the audit log learns the new kind of entry."""

from uuid import uuid4

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint

from models.audit import AuditEntity

GUARD = """CREATE FUNCTION guard_invoice_template() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF EXISTS (
            SELECT 1 FROM invoice_revisions r JOIN invoices i ON i.id = r.invoice_id
            WHERE i.organization_id = OLD.organization_id AND r.template_version = 'org-' || OLD.version
        ) THEN
            RAISE EXCEPTION 'invoice template version % printed invoices and is kept', OLD.version
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.source IS DISTINCT FROM OLD.source OR NEW.version <> OLD.version OR NEW.sha256 <> OLD.sha256
        OR NEW.size <> OLD.size OR NEW.organization_id <> OLD.organization_id THEN
        RAISE EXCEPTION 'invoice template version % cannot be changed: upload a new version', OLD.version
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$"""


def _listed(enum) -> str:
    return ", ".join(f"'{member.value}'" for member in enum)


class Migration(migrations.Migration):
    dependencies = [("models", "0024_cost_totals")]

    initial = False

    operations = [
        ops.CreateModel(
            name="InvoiceTemplate",
            fields=[
                ("id", fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                (
                    "organization",
                    fields.ForeignKeyField(
                        "models.Organization",
                        source_field="organization_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("version", fields.IntField()),
                ("name", fields.CharField(max_length=100)),
                ("source", fields.TextField(unique=False)),
                ("sha256", fields.CharField(max_length=64)),
                ("size", fields.IntField()),
                ("active", fields.BooleanField(default=False)),
                ("activated_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "created_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="created_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
            ],
            options={
                "table": "invoice_templates",
                "app": "models",
                "constraints": [
                    UniqueConstraint(fields=("organization_id", "version"), name="invoice_templates_version_unique"),
                    CheckConstraint(check="version >= 1", name="invoice_templates_version_positive"),
                    CheckConstraint(
                        check="size = octet_length(source) AND size BETWEEN 1 AND 65536", name="invoice_templates_size"
                    ),
                ],
                "pk_attr": "id",
                "table_description": "One version of an organization's invoice template: its text, frozen.",
            },
            bases=["Model"],
        ),
        ops.RunSQL(
            "CREATE UNIQUE INDEX invoice_templates_one_active ON invoice_templates (organization_id) WHERE active"
        ),
        ops.RunSQL(GUARD),
        ops.RunSQL(
            "CREATE TRIGGER invoice_templates_frozen BEFORE UPDATE OR DELETE ON invoice_templates"
            " FOR EACH ROW EXECUTE FUNCTION guard_invoice_template()"
        ),
        # The audit log's list of kinds, with this one (a database made before it lacks it).
        ops.RunSQL("ALTER TABLE audit_entries DROP CONSTRAINT IF EXISTS audit_entries_entity_valid"),
        ops.RunSQL(
            f"ALTER TABLE audit_entries ADD CONSTRAINT audit_entries_entity_valid CHECK (entity IN ({_listed(AuditEntity)}))"
        ),
    ]
