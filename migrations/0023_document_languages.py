"""Documents in the customer's language: an organization's default locale and whether it prints
usage lines of zero, an account's own locale, on each revision the locale it was printed in, and
on a voided invoice its copy marked VOID (revisions never change)."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0022_webhooks")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Organization",
            name="locale",
            field=fields.CharField(default="en", db_default="en", max_length=8),
        ),
        ops.AddField(
            model_name="Organization",
            name="show_zero_usage_lines",
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name="ManagedAccount",
            name="locale",
            field=fields.CharField(null=True, max_length=8),
        ),
        ops.AddField(
            model_name="InvoiceRevision",
            name="locale",
            field=fields.CharField(default="en", db_default="en", max_length=8),
        ),
        ops.AddField(
            model_name="Invoice",
            name="void_pdf_path",
            field=fields.CharField(null=True, max_length=512),
        ),
    ]
