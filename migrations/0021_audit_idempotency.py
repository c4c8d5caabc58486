"""The audit log (append-only: a trigger refuses any change or deletion of an entry, as it does
for approved invoices' revisions) and the idempotency keys of retried mutations."""

from uuid import uuid4

from tortoise import fields, migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint

from models.audit import AuditAction, AuditEntity
from models.idempotency import KeyState


def _listed(enum) -> str:
    return ", ".join(f"'{member.value}'" for member in enum)


class Migration(migrations.Migration):
    dependencies = [("models", "0020_data_completeness")]

    initial = False

    operations = [
        ops.CreateModel(
            name="AuditEntry",
            fields=[
                ("id", fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ("organization_id", fields.UUIDField(db_index=True)),
                ("at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("actor_user_id", fields.UUIDField(null=True)),
                ("actor_token_id", fields.UUIDField(null=True)),
                ("actor_label", fields.CharField(default="", max_length=320)),
                ("address", fields.CharField(null=True, max_length=64)),
                ("entity", fields.CharEnumField(enum_type=AuditEntity, max_length=32)),
                ("entity_id", fields.CharField(max_length=64)),
                ("action", fields.CharEnumField(enum_type=AuditAction, max_length=16)),
                ("changes", fields.JSONField(default=dict)),
            ],
            options={"table": "audit_entries", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.AddConstraint(
            model_name="AuditEntry",
            constraint=CheckConstraint(check=f"entity IN ({_listed(AuditEntity)})", name="audit_entries_entity_valid"),
        ),
        ops.AddConstraint(
            model_name="AuditEntry",
            constraint=CheckConstraint(check=f"action IN ({_listed(AuditAction)})", name="audit_entries_action_valid"),
        ),
        ops.RunSQL("CREATE INDEX audit_entries_org_at ON audit_entries (organization_id, at DESC, id)"),
        ops.RunSQL(
            "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries"
            " FOR EACH ROW EXECUTE FUNCTION refuse_change()"
        ),
        ops.CreateModel(
            name="IdempotencyKey",
            fields=[
                ("id", fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ("organization_id", fields.UUIDField()),
                ("user_id", fields.UUIDField()),
                ("key", fields.CharField(max_length=255)),
                ("fingerprint", fields.CharField(max_length=64)),
                ("state", fields.CharEnumField(default=KeyState.WORKING, enum_type=KeyState, max_length=16)),
                ("answer", fields.TextField(null=True)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("expires_at", fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={"table": "idempotency_keys", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.AddConstraint(
            model_name="IdempotencyKey",
            constraint=UniqueConstraint(fields=("organization_id", "user_id", "key"), name="idempotency_keys_unique"),
        ),
        ops.AddConstraint(
            model_name="IdempotencyKey",
            constraint=CheckConstraint(check=f"state IN ({_listed(KeyState)})", name="idempotency_keys_state_valid"),
        ),
    ]
