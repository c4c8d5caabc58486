"""MSP organizations: the tenant boundary that nothing crosses."""

from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model

from models.base import TimestampMixin, enum_check


class ExportDateFormat(str, Enum):
    DAY_FIRST = "DD/MM/YYYY"
    MONTH_FIRST = "MM/DD/YYYY"
    ISO = "YYYY-MM-DD"


class LateCostBilling(str, Enum):
    """How costs delivered for a month after its invoice was approved are billed."""

    # A labelled line on the account's next invoice.
    NEXT_INVOICE = "NEXT_INVOICE"
    # A supplementary invoice for that month, made at the next month close.
    SUPPLEMENTARY_INVOICE = "SUPPLEMENTARY_INVOICE"


class Organization(TimestampMixin, Model):
    id = fields.UUIDField(primary_key=True)
    name = fields.CharField(max_length=255)
    timezone = fields.CharField(max_length=64, default="UTC")
    invoice_prefix = fields.CharField(max_length=16, default="INV")
    # AWS data can arrive up to three days late: close the month on the 4th, not the 1st.
    data_ingestion_delay = fields.BooleanField(default=False)
    export_date_format = fields.CharEnumField(
        ExportDateFormat, max_length=10, default=ExportDateFormat.DAY_FIRST
    )
    # Checks before approval flag a total or a service that changed month over month by at
    # least this percentage and this amount (in the invoice currency) both.
    check_change_percent = fields.DecimalField(max_digits=7, decimal_places=2, default=25, db_default=25)
    check_change_amount = fields.DecimalField(max_digits=20, decimal_places=4, default=100, db_default=100)
    late_cost_billing = fields.CharEnumField(
        LateCostBilling, max_length=24, default=LateCostBilling.NEXT_INVOICE, db_default=LateCostBilling.NEXT_INVOICE
    )

    class Meta:
        table = "organizations"
        constraints = (
            CheckConstraint(check="invoice_prefix ~ '^[A-Z0-9]{1,16}$'", name="organizations_prefix_valid"),
            CheckConstraint(check="btrim(name) <> ''", name="organizations_name_present"),
            enum_check("organizations", "export_date_format", ExportDateFormat),
            enum_check("organizations", "late_cost_billing", LateCostBilling),
            CheckConstraint(
                check="check_change_percent >= 0 AND check_change_amount >= 0", name="organizations_check_thresholds"
            ),
        )
