"""Idempotency claims held by a lease their claimant renews while it works: a claim whose
claimant died mid-work is taken over by a retry once its lease runs out, instead of refusing
the key for a day. Claims made before hold no lease and are taken over by a retry at once."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0025_invoice_templates")]

    initial = False

    operations = [
        ops.AddField(
            model_name="IdempotencyKey",
            name="lease_until",
            field=fields.DatetimeField(null=True),
        ),
    ]
