"""Cost records, the deliveries (imports) they came in, which delivery is current for each
scope, and the late costs of months already invoiced."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model

from models.base import cost_decimal, enum_check

if TYPE_CHECKING:
    from models.auth import User
    from models.invoices.tables import Invoice
    from models.managed_accounts import ManagedAccount
    from models.organizations import Organization


class CostOrigin(str, Enum):
    """Whose integration a cost export comes from."""

    MSP_DELEGATED = "MSP_DELEGATED"
    ACCOUNT_INTEGRATION = "ACCOUNT_INTEGRATION"


class CostImportState(str, Enum):
    """Where a delivery's import stands: QUEUED until a worker takes it, RUNNING while it
    streams, then DONE (committed whole) or FAILED (nothing written, `error_*` say why)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


def _origin() -> fields.Field[CostOrigin]:
    # Also a database default: the rows imported before origins existed were all the MSP's.
    return fields.CharEnumField(
        CostOrigin, max_length=32, default=CostOrigin.MSP_DELEGATED, db_default=CostOrigin.MSP_DELEGATED
    )


class CostImport(Model):
    """One cost delivery (one file or several parts imported as a unit) and its import."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="cost_imports", on_delete=fields.CASCADE
    )
    origin = _origin()
    # The managed account whose own integration the file came from (ACCOUNT_INTEGRATION only).
    managed_account: fields.ForeignKeyNullableRelation[ManagedAccount] = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="cost_imports", null=True, on_delete=fields.RESTRICT
    )
    filename = fields.CharField(max_length=255, default="")
    # SHA-256 of the delivery's bytes (its parts in order): equal digests, identical data.
    file_sha256 = fields.CharField(max_length=64, default="")
    # Also a database default: the imports made before states existed were all done.
    state = fields.CharEnumField(
        CostImportState, max_length=16, default=CostImportState.QUEUED, db_default=CostImportState.DONE
    )
    # The stored files of the delivery as registered: part files, a folder, a zip (null for
    # the imports made before deliveries were stored); a file sent under a name (an upload
    # with its folders) is [path, name].
    parts: fields.JSONField[list[str | list[str]] | None] = fields.JSONField(null=True)
    rows_done = fields.BigIntField(default=0, db_default=0)
    row_count = fields.IntField(default=0)
    # Rows written as the delivery's current costs.
    inserted_count = fields.IntField(default=0)
    # Rows of scopes whose current delivery is byte-identical: nothing to change.
    duplicate_count = fields.IntField(default=0)
    # Rows of approved months, kept out; their difference is stored as late costs.
    late_count = fields.IntField(default=0, db_default=0)
    # Rows of earlier deliveries this one superseded (removed).
    replaced_count = fields.IntField(default=0, db_default=0)
    # [{"subAccountId": ..., "subAccountName": ..., "providerName": ..., "rows": n, "billedCost": "..."}]
    unmatched_sub_accounts: fields.JSONField[list[dict[str, Any]]] = fields.JSONField(default=list)
    # The whole report of a DONE import (scopes, superseded deliveries, late costs), as JSON.
    report: fields.JSONField[dict[str, Any] | None] = fields.JSONField(null=True)
    error_message = fields.TextField(null=True)
    error_file = fields.CharField(max_length=255, null=True)
    error_line = fields.BigIntField(null=True)
    error_row = fields.BigIntField(null=True)
    error_column = fields.CharField(max_length=255, null=True)
    imported_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # The cost source whose sync found the delivery, and its manifest's object key and ETag:
    # a manifest imported under the same key and ETag is not read again.
    # Read by its id only (`cost_source_id`): typed as any table, so that the cost tables do not
    # depend on the sources that feed them (models.cost_sources reads these).
    cost_source: fields.ForeignKeyNullableRelation[Model] = fields.ForeignKeyField(
        "models.CostSource", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    source_key = fields.CharField(max_length=1024, null=True)
    source_etag = fields.CharField(max_length=255, null=True)
    # When the store says the manifest was written: how settled the month's data is.
    source_written_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    # The foreign keys' columns, which Tortoise sets on the instance.
    organization_id: UUID
    managed_account_id: UUID | None
    imported_by_id: UUID | None
    cost_source_id: UUID | None

    class Meta:
        table = "cost_imports"
        constraints = (
            CheckConstraint(
                check="row_count = inserted_count + duplicate_count + late_count AND inserted_count >= 0"
                " AND duplicate_count >= 0 AND late_count >= 0 AND replaced_count >= 0",
                name="cost_imports_counts_add_up",
            ),
            enum_check("cost_imports", "origin", CostOrigin),
            enum_check("cost_imports", "state", CostImportState),
            CheckConstraint(
                check="(origin = 'ACCOUNT_INTEGRATION') = (managed_account_id IS NOT NULL)",
                name="cost_imports_integration_account",
            ),
        )


class CostRecord(Model):
    """One FOCUS row of the current delivery of its scope (or of an approved month).

    The table is partitioned by `billing_month` (migrations/0007): its primary key in the
    database is (id, billing_month); ids stay unique, drawn from one sequence.
    """

    id = fields.BigIntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="cost_records", on_delete=fields.CASCADE
    )
    # Null while no managed account claims the row's sub-account; linked when one does.
    managed_account: fields.ForeignKeyNullableRelation[ManagedAccount] = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="cost_records", null=True, on_delete=fields.SET_NULL
    )
    cost_import: fields.ForeignKeyRelation[CostImport] = fields.ForeignKeyField(
        "models.CostImport", related_name="records", on_delete=fields.RESTRICT
    )
    # The import's origin, kept on the row so that generation reads its costs without a join.
    origin = _origin()
    # Rows imported before deliveries superseded each other carry the digest that
    # de-duplicated them; deliveries now replace whole scopes and leave it null.
    fingerprint = fields.CharField(max_length=64, null=True)
    # The first day of the month of BillingPeriodStart (the invoice month); the partition key.
    billing_month = fields.DateField()
    billing_period_start = fields.DatetimeField()
    billing_period_end = fields.DatetimeField()
    charge_period_start = fields.DatetimeField(null=True)
    charge_period_end = fields.DatetimeField(null=True)
    provider_name = fields.CharField(max_length=128)
    publisher_name = fields.CharField(max_length=255, null=True)
    invoice_issuer_name = fields.CharField(max_length=255, null=True)
    billing_account_id = fields.CharField(max_length=512, null=True)
    billing_account_name = fields.CharField(max_length=512, null=True)
    sub_account_id = fields.CharField(max_length=512)
    sub_account_name = fields.CharField(max_length=512, null=True)
    billed_cost = cost_decimal()
    billing_currency = fields.CharField(max_length=3)
    effective_cost = cost_decimal(null=True)
    list_cost = cost_decimal(null=True)
    list_unit_price = cost_decimal(null=True)
    contracted_cost = cost_decimal(null=True)
    contracted_unit_price = cost_decimal(null=True)
    consumed_quantity = cost_decimal(null=True)
    consumed_unit = fields.CharField(max_length=128, null=True)
    pricing_quantity = cost_decimal(null=True)
    pricing_unit = fields.CharField(max_length=128, null=True)
    pricing_category = fields.CharField(max_length=64, null=True)
    service_name = fields.CharField(max_length=255, null=True)
    service_category = fields.CharField(max_length=128, null=True)
    charge_category = fields.CharField(max_length=64)
    charge_class = fields.CharField(max_length=64, null=True)
    charge_description = fields.TextField(null=True)
    charge_frequency = fields.CharField(max_length=64, null=True)
    region_id = fields.CharField(max_length=128, null=True)
    region_name = fields.CharField(max_length=255, null=True)
    availability_zone = fields.CharField(max_length=128, null=True)
    resource_id = fields.TextField(null=True)
    resource_name = fields.TextField(null=True)
    resource_type = fields.CharField(max_length=255, null=True)
    sku_id = fields.CharField(max_length=255, null=True)
    sku_price_id = fields.CharField(max_length=512, null=True)
    tags: fields.JSONField[dict[str, Any] | None] = fields.JSONField(null=True)
    # Every other column of the row (commitment discounts, x_ provider extensions), verbatim.
    extra: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)

    # The foreign keys' columns, which Tortoise sets on the instance.
    organization_id: UUID
    managed_account_id: UUID | None
    cost_import_id: UUID

    class Meta:
        table = "cost_records"
        # The month's first day and an upper-case currency code are the import's to set
        # (migrations/0027: a check per row was a sixteenth of the COPY's time).
        constraints = (enum_check("cost_records", "origin", CostOrigin),)
        # And cost_records_unclaimed on (organization_id, sub_account_id) of the rows no account
        # claims (migrations/0028: a partial index, which Tortoise's Index cannot describe).
        indexes = (
            Index(fields=("managed_account_id", "billing_month"), name="cost_records_account_month"),
        )


class CostDeliveryScope(Model):
    """What one delivery said about one scope: a provider's billing account in one billing
    month, from one source (the MSP's integration, or one account's own). The latest
    delivery naming a scope is its current one and replaced the one before (`supersedes`)."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="cost_delivery_scopes", on_delete=fields.CASCADE
    )
    cost_import: fields.ForeignKeyRelation[CostImport] = fields.ForeignKeyField(
        "models.CostImport", related_name="scopes", on_delete=fields.CASCADE
    )
    origin = _origin()
    # The account of an ACCOUNT_INTEGRATION source; null for the MSP's.
    integration_account: fields.ForeignKeyNullableRelation[ManagedAccount] = fields.ForeignKeyField(
        "models.ManagedAccount", related_name=False, null=True, on_delete=fields.CASCADE
    )
    provider_name = fields.CharField(max_length=128)
    # "" when the rows named no billing account.
    billing_account_id = fields.CharField(max_length=512)
    billing_month = fields.DateField()
    # The delivery that was current for the scope before this one (None: the first).
    supersedes: fields.ForeignKeyNullableRelation[CostImport] = fields.ForeignKeyField(
        "models.CostImport", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    is_current = fields.BooleanField(default=True)
    row_count = fields.IntField()
    # {"USD": "123.45"}: the delivery's BilledCost of the scope per currency, exact.
    totals: fields.JSONField[dict[str, str]] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    # The foreign keys' columns, which Tortoise sets on the instance.
    organization_id: UUID
    cost_import_id: UUID
    integration_account_id: UUID | None
    supersedes_id: UUID | None

    class Meta:
        table = "cost_delivery_scopes"
        indexes = (
            Index(fields=("organization_id", "billing_month"), name="cost_delivery_scopes_month"),
        )


class LateCost(Model):
    """How much a delivery differs, for one account, month and currency, from the costs an
    approved invoice was made of. Those costs stay as invoiced; this is what a later
    invoice (or credit note) bills."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="late_costs", on_delete=fields.CASCADE
    )
    cost_import: fields.ForeignKeyRelation[CostImport] = fields.ForeignKeyField(
        "models.CostImport", related_name="late_costs", on_delete=fields.CASCADE
    )
    managed_account: fields.ForeignKeyRelation[ManagedAccount] = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="late_costs", on_delete=fields.CASCADE
    )
    invoice: fields.ForeignKeyRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="late_costs", on_delete=fields.CASCADE
    )
    billing_month = fields.DateField()
    origin = _origin()
    # The delivery scope the difference was found in: a later delivery of the same scope
    # restates it (see `billable`).
    provider_name = fields.CharField(max_length=128, default="", db_default="")
    billing_account_id = fields.CharField(max_length=255, default="", db_default="")
    currency = fields.CharField(max_length=3)
    invoiced_cost = cost_decimal()
    delivered_cost = cost_decimal()
    difference = cost_decimal()
    # What this row adds to the scope's earlier late costs: its difference less the previous
    # row's, so the billable amounts of a scope always add up to its latest difference, and
    # each is billed once.
    billable = cost_decimal(default=0, db_default=0)
    # The invoice that bills it (a later invoice's line, or a supplementary invoice); released
    # when that invoice is voided, so it is billed again.
    billed_invoice: fields.ForeignKeyNullableRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="billed_late_costs", null=True, on_delete=fields.RESTRICT
    )
    invoiced_rows = fields.IntField()
    delivered_rows = fields.IntField()
    created_at = fields.DatetimeField(auto_now_add=True)

    # The foreign keys' columns, which Tortoise sets on the instance.
    organization_id: UUID
    cost_import_id: UUID
    managed_account_id: UUID
    invoice_id: UUID
    billed_invoice_id: UUID | None

    class Meta:
        table = "late_costs"
        indexes = (
            Index(fields=("managed_account_id", "billing_month"), name="late_costs_account_month"),
        )
