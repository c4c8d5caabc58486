"""A month closes when its data is complete: the organizations' sync interval, settle time and
latest close day; a period closed before complete keeps who, when and what was missing; a cost
import keeps when its manifest was written; a cost source may be a managed account's own."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import CheckConstraint


class Migration(migrations.Migration):
    dependencies = [("models", "0019_cost_source_accounts")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Organization",
            name="cost_sync_hours",
            field=fields.SmallIntField(null=True),
        ),
        ops.AddField(
            model_name="Organization",
            name="data_settle_hours",
            field=fields.SmallIntField(default=72, db_default=72),
        ),
        ops.AddField(
            model_name="Organization",
            name="latest_close_day",
            field=fields.SmallIntField(default=15, db_default=15),
        ),
        ops.AddConstraint(
            model_name="Organization",
            constraint=CheckConstraint(
                check="cost_sync_hours BETWEEN 1 AND 168 AND data_settle_hours BETWEEN 0 AND 720 AND latest_close_day BETWEEN 1 AND 28",
                name="organizations_cost_data_ranges",
            ),
        ),
        ops.AddField(
            model_name="BillingPeriod",
            name="forced_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="BillingPeriod",
            name="forced_by",
            field=fields.ForeignKeyField(
                "models.User",
                source_field="forced_by_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name=False,
                on_delete=OnDelete.SET_NULL,
            ),
        ),
        ops.AddField(
            model_name="BillingPeriod",
            name="forced_by_label",
            field=fields.CharField(default="", db_default="", max_length=64),
        ),
        ops.AddField(
            model_name="BillingPeriod",
            name="incomplete_at_close",
            field=fields.JSONField(default=list, db_default=[]),
        ),
        ops.AddField(
            model_name="CostSource",
            name="managed_account",
            field=fields.ForeignKeyField(
                "models.ManagedAccount",
                source_field="managed_account_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name="cost_sources",
                on_delete=OnDelete.CASCADE,
            ),
        ),
        ops.AddField(
            model_name="CostImport",
            name="source_written_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
