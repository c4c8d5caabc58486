"""Supersession: a delivery's rows of a scope replace what earlier deliveries said about it.

A scope is one provider's billing account in one billing month, from one source: the MSP's
delegated integration, or one managed account's own (an account's integration never replaces
the MSP's rows, nor the other way round). The new rows are already in `cost_records` under
the new import (COPY, same transaction); per scope this module then

- leaves the scope as it is when its current delivery is byte-identical (and drops the new
  copy): a re-import changes nothing;
- otherwise removes the earlier rows of the scope, except those of accounts whose invoice
  for the month is approved (or was, before a void): those stay as invoiced, the new rows
  of those accounts are dropped, and the difference is stored as a late cost;
- records the delivery as the scope's current one, and which one it superseded.

Each removal of records removes their sums from `cost_totals` too, with the same condition
(models/costs/totals.py). Everything runs in the import's transaction: a failure leaves the
scopes as they were.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from models.costs.focus import EXACT
from models.costs.records import CostOrigin
from models.costs.reports import LateCostEntry, ScopeOutcome

# Invoices whose costs may not change any more: approved, or voided after approval (it was
# numbered, so it was sent as it is).
_INVOICED = "(i.status = 'APPROVED' OR (i.status = 'VOIDED' AND i.number IS NOT NULL))"

# The rows of a scope from one source: $1 org, $2 month, $3 provider, $4 billing account,
# $5 origin, $6 integration account (null: the MSP's); $7, the new import, is the caller's.
_SCOPE_ROWS = """organization_id = $1 AND billing_month = $2 AND provider_name = $3
    AND COALESCE(billing_account_id, '') = $4 AND origin = $5
    AND ($6::uuid IS NULL OR cost_import_id IN (SELECT id FROM cost_imports WHERE managed_account_id = $6))"""


@dataclass(slots=True)
class ScopeDelivery:
    """What the new delivery holds for one scope."""

    rows: int = 0
    totals: dict[str, Decimal] = field(default_factory=dict)


@dataclass(slots=True)
class Supersession:
    """The outcome over all the delivery's scopes."""

    scopes: list[ScopeOutcome] = field(default_factory=list)
    late_costs: list[LateCostEntry] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0
    replaced: int = 0


async def supersede(
    pg: Any, *, organization_id: uuid.UUID, cost_import_id: uuid.UUID, digest: str,
    origin: CostOrigin, integration_account_id: uuid.UUID | None,
    scopes: dict[tuple[str, str, date], ScopeDelivery],
) -> Supersession:
    """Make the new import (whose rows are all in `cost_records`) current for each of its
    scopes; `pg` is the transaction's asyncpg connection."""
    result = Supersession()
    # month -> account -> provider ('' for an invoice of every provider) -> invoice
    invoiced_by_month: dict[date, dict[uuid.UUID, dict[str, uuid.UUID]]] = {}
    # (account, month, currency, provider, billing account) -> [invoiced, delivered, rows, rows]
    late: dict[tuple[uuid.UUID, date, str, str, str], list[Any]] = {}
    account = integration_account_id
    for (provider, billing_account, month), delivered in sorted(scopes.items()):
        current = await pg.fetchrow(
            """SELECT s.id, s.cost_import_id, c.file_sha256 FROM cost_delivery_scopes s
               JOIN cost_imports c ON c.id = s.cost_import_id
               WHERE s.organization_id = $1 AND s.is_current AND s.origin = $2
                 AND s.integration_account_id IS NOT DISTINCT FROM $3::uuid AND s.provider_name = $4
                 AND s.billing_account_id = $5 AND s.billing_month = $6
               FOR UPDATE OF s""",
            organization_id, origin.value, account, provider, billing_account, month,
        )
        totals = tuple(sorted(delivered.totals.items()))
        scope_args = (organization_id, month, provider, billing_account, origin.value, account, cost_import_id)
        if current is not None and current["file_sha256"] == digest:
            await _delete(pg, "cost_import_id = $7 AND " + _SCOPE_ROWS, *scope_args)
            result.duplicates += delivered.rows
            result.scopes.append(ScopeOutcome(
                provider, billing_account, month, "UNCHANGED", delivered.rows, totals, None, 0
            ))
            continue
        if month not in invoiced_by_month:
            invoiced_by_month[month] = await _invoiced_accounts(pg, organization_id, month)
        locked = list(invoiced_by_month[month])
        if locked:
            result.late += await _keep_invoiced(pg, scope_args, locked, late)
        removed, superseded = await _replace(pg, scope_args, locked, current, delivered.rows, totals)
        result.replaced += removed
        result.scopes.append(ScopeOutcome(
            provider, billing_account, month, "NEW" if current is None else "REPLACED",
            delivered.rows, totals, superseded, removed,
        ))
    await _late_costs(pg, result, late, invoiced_by_month, (organization_id, cost_import_id, origin))
    return result


async def _invoiced_accounts(pg: Any, organization_id: uuid.UUID, month: date) -> dict[uuid.UUID, dict[str, uuid.UUID]]:
    """The month's accounts whose costs may not change any more: account -> provider -> invoice."""
    by_account: dict[uuid.UUID, dict[str, uuid.UUID]] = {}
    # An approved month's invoice is preferred to a voided or supplementary one.
    for row in await pg.fetch(
        f"""SELECT i.id, i.managed_account_id, i.provider_name FROM invoices i
            JOIN billing_periods p ON p.id = i.billing_period_id
            WHERE i.organization_id = $1 AND p.start_date = $2 AND {_INVOICED}
            ORDER BY i.status = 'APPROVED', i.kind = 'REGULAR', i.created_at""",
        organization_id, month,
    ):
        by_account.setdefault(row["managed_account_id"], {})[row["provider_name"]] = row["id"]
    return by_account


async def _keep_invoiced(pg: Any, scope_args: tuple, locked: list[uuid.UUID], late: dict) -> int:
    """The invoiced accounts keep their rows as invoiced: what they were made of and what is
    delivered now is summed into `late`, and the new rows of those accounts are dropped (how many)."""
    _, month, provider, billing_account = scope_args[:4]
    for row in await pg.fetch(
        f"""SELECT managed_account_id, billing_currency, cost_import_id = $7 AS is_new,
                   sum(row_count)::bigint AS rows, sum(billed_cost) AS cost
            FROM cost_totals WHERE managed_account_id = ANY($8::uuid[])
              AND {_SCOPE_ROWS}
            GROUP BY 1, 2, 3""",
        *scope_args, locked,
    ):
        sums = late.setdefault(
            (row["managed_account_id"], month, row["billing_currency"], provider, billing_account),
            [Decimal(0), Decimal(0), 0, 0],
        )
        slot = 1 if row["is_new"] else 0
        sums[slot] = EXACT.add(sums[slot], row["cost"])
        sums[slot + 2] += row["rows"]
    return await _delete(
        pg, "cost_import_id = $7 AND managed_account_id = ANY($8::uuid[]) AND " + _SCOPE_ROWS, *scope_args, locked,
    )


async def _replace(
    pg: Any, scope_args: tuple, locked: list[uuid.UUID], current: Any, rows: int, totals: tuple,
) -> tuple[int, uuid.UUID | None]:
    """The scope's earlier rows removed (but the invoiced accounts'), and the new import
    recorded as its current delivery: (rows removed, the import it superseded)."""
    organization_id, month, provider, billing_account, origin, account, cost_import_id = scope_args
    removed = 0
    superseded = None
    if current is not None:
        # Without a current delivery the scope has no rows from this source (migration
        # 0007 recorded one for the rows imported before), and a month's partition of
        # millions of rows is not scanned for nothing.
        removed = await _delete(
            pg, "cost_import_id <> $7 AND (managed_account_id IS NULL OR managed_account_id <> ALL($8::uuid[]))"
            " AND " + _SCOPE_ROWS, *scope_args, locked,
        )
        superseded = current["cost_import_id"]
        await pg.execute("UPDATE cost_delivery_scopes SET is_current = false WHERE id = $1", current["id"])
    await pg.execute(
        """INSERT INTO cost_delivery_scopes (id, organization_id, cost_import_id, origin,
               integration_account_id, provider_name, billing_account_id, billing_month,
               supersedes_id, is_current, row_count, totals, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true, $10, $11::jsonb, now())""",
        uuid.uuid4(), organization_id, cost_import_id, origin, account, provider,
        billing_account, month, superseded, rows,
        json.dumps({currency: f"{total:f}" for currency, total in totals}),
    )
    return removed, superseded


async def _late_costs(
    pg: Any, result: Supersession, late: dict, invoiced_by_month: dict, delivery: tuple[uuid.UUID, uuid.UUID, CostOrigin],
) -> None:
    """Each invoiced scope's difference stored as a late cost, and reported per account,
    month and currency."""
    organization_id, cost_import_id, origin = delivery
    per_account: dict[tuple[uuid.UUID, date, str], list[Any]] = {}
    for (account_id, month, currency, provider, billing_account), sums in sorted(
        late.items(), key=lambda item: (str(item[0][0]), *item[0][1:])
    ):
        total = per_account.setdefault((account_id, month, currency), [Decimal(0), Decimal(0), 0, 0])
        for slot in range(4):
            total[slot] = EXACT.add(total[slot], sums[slot]) if slot < 2 else total[slot] + sums[slot]
        await _record_late_cost(
            pg, organization_id, cost_import_id, origin, _invoice_of(invoiced_by_month[month][account_id], provider),
            (account_id, month, currency, provider, billing_account), sums,
        )
    for (account_id, month, currency), (invoiced_cost, delivered_cost, invoiced_rows, delivered_rows) in sorted(
        per_account.items(), key=lambda item: (str(item[0][0]), item[0][1], item[0][2])
    ):
        result.late_costs.append(LateCostEntry(
            account_id, _invoice_of(invoiced_by_month[month][account_id], ""), month, currency, invoiced_cost, delivered_cost,
            EXACT.subtract(delivered_cost, invoiced_cost), invoiced_rows, delivered_rows,
        ))


def _invoice_of(invoices: dict[str, uuid.UUID], provider: str) -> uuid.UUID:
    """The account's invoice of the month that billed `provider` (its own, or the one of every
    provider); for the report, any of them."""
    return invoices.get(provider) or invoices.get("") or next(iter(invoices.values()))


async def _record_late_cost(
    pg: Any, organization_id: uuid.UUID, cost_import_id: uuid.UUID, origin: CostOrigin, invoice_id: uuid.UUID,
    key: tuple[uuid.UUID, date, str, str, str], sums: list[Any],
) -> None:
    """Store a scope's difference from what was invoiced, with what it adds to the scope's
    earlier late costs (nothing stored when it adds nothing)."""
    account_id, month, currency, provider, billing_account = key
    invoiced_cost, delivered_cost, invoiced_rows, delivered_rows = sums
    difference = EXACT.subtract(delivered_cost, invoiced_cost)
    previous = await pg.fetchval(
        """SELECT difference FROM late_costs WHERE managed_account_id = $1 AND billing_month = $2
             AND currency = $3 AND provider_name = $4 AND billing_account_id = $5 AND origin = $6
           ORDER BY created_at DESC, id DESC LIMIT 1""",
        account_id, month, currency, provider, billing_account, origin.value,
    )
    billable = EXACT.subtract(difference, previous or Decimal(0))
    if not billable:
        return
    await pg.execute(
        """INSERT INTO late_costs (id, organization_id, cost_import_id, managed_account_id,
               invoice_id, billing_month, origin, provider_name, billing_account_id, currency,
               invoiced_cost, delivered_cost, difference, billable, invoiced_rows, delivered_rows, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, clock_timestamp())""",
        uuid.uuid4(), organization_id, cost_import_id, account_id, invoice_id, month, origin.value,
        provider, billing_account, currency, invoiced_cost, delivered_cost, difference, billable,
        invoiced_rows, delivered_rows,
    )


async def _delete(pg: Any, condition: str, *args: Any) -> int:
    """Remove the records that meet `condition`, and their sums from `cost_totals` (the same
    condition holds there: its columns are the records'): how many records went."""
    await pg.execute("DELETE FROM cost_totals WHERE " + condition, *args)
    return _count(await pg.execute("DELETE FROM cost_records WHERE " + condition, *args))


def _count(status: str) -> int:
    """The row count of a command status such as `DELETE 12`."""
    return int(status.rsplit(" ", 1)[1])


def scope_totals(groups: dict[tuple, list[Any]]) -> dict[tuple[str, str, date], ScopeDelivery]:
    """The delivery's rows and totals per scope, from its groups
    (provider, billing account, month, currency, account, sub-account) -> [rows, cost, name]."""
    scopes: dict[tuple[str, str, date], ScopeDelivery] = defaultdict(ScopeDelivery)
    for (provider, billing_account, month, currency, _, _), (rows, cost, _) in groups.items():
        scope = scopes[(provider, billing_account, month)]
        scope.rows += rows
        scope.totals[currency] = EXACT.add(scope.totals.get(currency, Decimal(0)), cost)
    return dict(scopes)
