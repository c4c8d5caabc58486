"""A month's figures kept, not recomputed: the cost records summed per delivery, account,
sub-account, provider, service, category, unit and currency (`cost_totals`).

An import sums its rows while it streams them (`add_batch`, in the worker thread that checks
them) and writes the sums in its own transaction (`write`); each statement of supersession and
of a sub-account's relinking that removes or moves records does the same to their totals,
with the same condition, in the same transaction. So the table always equals a scan of
`cost_records` (`rebuild` is that scan: the migration fills the table with it, and it
restores the figures after rows were written by hand), and reconciliation, usage, the
checks and generation read a few thousand sums instead of a month's millions of rows.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from models.costs.focus import EXACT
from models.costs.records import CostOrigin

if TYPE_CHECKING:
    from models.costs.records import CostImport
    from models.managed_accounts import ManagedAccount
    from models.organizations import Organization

# Wide enough for the sum of any delivery's NUMERIC(38,16) values.
_SUM_DIGITS = 60
_WIDE = pa.decimal256(76, 16)

# What a group of rows is keyed by, as the checked batch names its columns ('' for a null).
KEYS = (
    "provider_name",
    "billing_account_id",
    "billing_month",
    "billing_currency",
    "managed_account_id",
    "sub_account_id",
    "service_name",
    "service_category",
    "charge_category",
    "consumed_unit",
)
# The coarse key of the import's report and supersession: (provider, billing account, month,
# currency, account, sub-account).
COARSE = 6
# The sums of a group: rows, BilledCost, EffectiveCost and ListCost (BilledCost where the row
# has none, as every reader bills them), ConsumedQuantity (None: no row had one), sub-account name.
_ROWS, _BILLED, _EFFECTIVE, _LIST, _QUANTITY, _NAME = range(6)

COLUMNS = (
    "organization_id",
    "cost_import_id",
    "origin",
    *KEYS,
    "row_count",
    "billed_cost",
    "effective_cost",
    "list_cost",
    "consumed_quantity",
)


class CostTotal(Model):
    """A month's cost records of one delivery summed per account, sub-account, provider,
    billing account, service, category, unit and currency. Kept equal to the records by every
    write that changes them (see models/costs/totals.py)."""

    id = fields.BigIntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name=False, on_delete=fields.CASCADE
    )
    cost_import: fields.ForeignKeyRelation[CostImport] = fields.ForeignKeyField(
        "models.CostImport", related_name=False, on_delete=fields.CASCADE
    )
    origin = fields.CharEnumField(CostOrigin, max_length=32)
    billing_month = fields.DateField()
    provider_name = fields.CharField(max_length=128)
    # '' where the records have none (billing account, service, categories, unit).
    billing_account_id = fields.CharField(max_length=512)
    billing_currency = fields.CharField(max_length=3)
    managed_account: fields.ForeignKeyNullableRelation[ManagedAccount] = fields.ForeignKeyField(
        "models.ManagedAccount", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    sub_account_id = fields.CharField(max_length=512)
    service_name = fields.CharField(max_length=255)
    service_category = fields.CharField(max_length=128)
    charge_category = fields.CharField(max_length=64)
    consumed_unit = fields.CharField(max_length=128)
    row_count = fields.BigIntField()
    billed_cost = fields.DecimalField(max_digits=_SUM_DIGITS, decimal_places=16)
    # The rows' EffectiveCost and ListCost, their BilledCost where they have none.
    effective_cost = fields.DecimalField(max_digits=_SUM_DIGITS, decimal_places=16)
    list_cost = fields.DecimalField(max_digits=_SUM_DIGITS, decimal_places=16)
    consumed_quantity = fields.DecimalField(max_digits=_SUM_DIGITS, decimal_places=16, null=True)

    organization_id: uuid.UUID
    cost_import_id: uuid.UUID
    managed_account_id: uuid.UUID | None

    class Meta:
        table = "cost_totals"
        indexes = (
            Index(fields=("organization_id", "billing_month"), name="cost_totals_month"),
            Index(fields=("managed_account_id", "billing_month"), name="cost_totals_account_month"),
            Index(fields=("cost_import_id",), name="cost_totals_import"),
        )


# Partial sums held before they are folded into one table: memory stays bounded by the
# delivery's distinct groups, not its rows.
_FOLD_ROWS = 1 << 17
_SUMS = ("rows", "billed", "effective", "list", "quantity", "name")


def _grouped(table: pa.Table, first: str) -> pa.Table:
    """`table` (KEYS and _SUMS, `rows` counted with `first`) summed per key, columns KEYS and _SUMS."""
    aggregates = [("rows", first), ("billed", "sum"), ("effective", "sum"), ("list", "sum"), ("quantity", "sum"), ("name", "first")]
    grouped = table.group_by(list(KEYS), use_threads=False).aggregate(aggregates)
    return grouped.select([*KEYS, *(f"{name}_{how}" for name, how in aggregates)]).rename_columns([*KEYS, *_SUMS])


class Sums:
    """A delivery's sums per group (KEYS), kept in Arrow while it streams: each checked batch
    is grouped as it comes (`add`, in the worker thread; Arrow's kernels release the GIL), the
    partial groups folded together whenever they pile up, and Python reads each group once at
    the end (`groups`)."""

    def __init__(self) -> None:
        self._parts: list[pa.Table] = []
        self._rows = 0
        self._folded = 0

    def add(self, table: pa.Table) -> None:
        """Sum a checked batch (columns ROW_FIELDS)."""
        billed = table["billed_cost"].cast(_WIDE)
        keyed = {name: table[name] if name in ("billing_month", "managed_account_id") else pc.fill_null(table[name], "") for name in KEYS}
        keyed |= {
            # Counted as rows: BilledCost is never null.
            "rows": billed,
            "billed": billed,
            "effective": pc.coalesce(table["effective_cost"].cast(_WIDE), billed),
            "list": pc.coalesce(table["list_cost"].cast(_WIDE), billed),
            "quantity": table["consumed_quantity"].cast(_WIDE),
            "name": table["sub_account_name"],
        }
        part = _grouped(pa.table(keyed), "count")
        self._parts.append(part)
        self._rows += part.num_rows
        if self._rows > max(_FOLD_ROWS, 2 * self._folded):
            self._fold()

    def _fold(self) -> None:
        if len(self._parts) > 1:
            self._parts = [_grouped(pa.concat_tables(self._parts), "sum")]
        self._rows = self._folded = self._parts[0].num_rows if self._parts else 0

    def groups(self) -> dict[tuple, list[Any]]:
        """The sums: key (KEYS) -> [rows, BilledCost, EffectiveCost, ListCost, ConsumedQuantity
        (None: no row had one), sub-account name]."""
        self._fold()
        if not self._parts:
            return {}
        columns = [self._parts[0][name].to_pylist() for name in (*KEYS, *_SUMS)]
        keys, sums = columns[: len(KEYS)], columns[len(KEYS) :]
        return {key: list(values) for key, values in zip(zip(*keys, strict=True), zip(*sums, strict=True), strict=True)}


def coarse(groups: dict[tuple, list[Any]]) -> dict[tuple, list[Any]]:
    """The groups per (provider, billing account, month, currency, account, sub-account) ->
    [rows, BilledCost, sub-account name], as the import's report and supersession read them
    (the account None for a sub-account no one claims)."""
    merged: dict[tuple, list[Any]] = {}
    for key, sums in groups.items():
        provider, billing_account, month, currency, account, sub_account = key[:COARSE]
        entry = merged.setdefault((provider, billing_account, month, currency, account, sub_account), [0, Decimal(0), None])
        entry[0] += sums[_ROWS]
        entry[1] = EXACT.add(entry[1], sums[_BILLED])
        entry[2] = entry[2] or sums[_NAME]
    return merged


async def write(pg: Any, groups: dict[tuple, list[Any]], delivery: tuple[uuid.UUID, uuid.UUID, str]) -> None:
    """The import's sums into `cost_totals` (`pg`: its transaction's asyncpg connection);
    `delivery` is (organization, import, origin)."""
    organization_id, cost_import_id, origin = delivery
    records = []
    for key, sums in groups.items():
        values: list[Any] = list(key)
        values[4] = None if values[4] is None else uuid.UUID(values[4])
        records.append(
            (
                organization_id,
                cost_import_id,
                origin,
                *values,
                sums[_ROWS],
                sums[_BILLED],
                sums[_EFFECTIVE],
                sums[_LIST],
                sums[_QUANTITY],
            )
        )
    if records:
        await pg.copy_records_to_table("cost_totals", records=records, columns=COLUMNS)


# The records' sums as the table keeps them: the scan the table always equals.
SCAN = """
SELECT organization_id, cost_import_id, origin, provider_name, COALESCE(billing_account_id, '') AS billing_account_id,
       billing_month, billing_currency, managed_account_id, sub_account_id, COALESCE(service_name, '') AS service_name,
       COALESCE(service_category, '') AS service_category, charge_category,
       COALESCE(consumed_unit, '') AS consumed_unit, count(*) AS row_count, sum(billed_cost) AS billed_cost,
       sum(COALESCE(effective_cost, billed_cost)) AS effective_cost, sum(COALESCE(list_cost, billed_cost)) AS list_cost,
       sum(consumed_quantity) AS consumed_quantity
FROM cost_records WHERE organization_id = $1
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
"""
_SCAN_COLUMNS = (
    "organization_id, cost_import_id, origin, provider_name, billing_account_id, billing_month, billing_currency,"
    " managed_account_id, sub_account_id, service_name, service_category, charge_category, consumed_unit,"
    " row_count, billed_cost, effective_cost, list_cost, consumed_quantity"
)


async def rebuild(connection: Any, organization_id: uuid.UUID | str) -> None:
    """The organization's totals summed again from its records (`connection`: Tortoise's)."""
    await connection.execute_query("DELETE FROM cost_totals WHERE organization_id = $1", [str(organization_id)])
    await connection.execute_query(
        f"INSERT INTO cost_totals ({_SCAN_COLUMNS}) SELECT {_SCAN_COLUMNS} FROM ({SCAN}) AS scan",
        [str(organization_id)],
    )


__all__ = ["COARSE", "KEYS", "SCAN", "CostTotal", "Sums", "coarse", "rebuild", "write"]
