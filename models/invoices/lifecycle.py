"""The invoice lifecycle: a table of allowed transitions, each one conditional UPDATE.

`UPDATE invoices SET status = <to> WHERE id = ... AND status IN (<from>)` lets exactly one of
two racing requests win; the loser learns the invoice moved on. Every transition writes a
timeline event in the same transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from tortoise.transactions import in_transaction

from models.actors import Actor
from models.errors import DomainError, InvalidTransition, NotFound
from models.invoices.tables import Invoice, InvoiceEvent, InvoiceStatus

S = InvoiceStatus


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[InvoiceStatus]
    target: InvoiceStatus
    refusal: str


TRANSITIONS = {
    t.name: t
    for t in (
        Transition("GENERATE", frozenset({S.READY_TO_INVOICE}), S.GENERATING,
                   "Only an invoice that is ready to invoice can be generated; regenerate it instead."),
        Transition("REGENERATE", frozenset({S.AWAITING_APPROVAL, S.ERROR}), S.GENERATING,
                   "Only an invoice awaiting approval or in error can be regenerated; approved invoices never change."),
        Transition("GENERATED", frozenset({S.GENERATING}), S.AWAITING_APPROVAL,
                   "The invoice is no longer being generated."),
        Transition("FAILED", frozenset({S.GENERATING}), S.ERROR,
                   "The invoice is no longer being generated."),
        Transition("APPROVE", frozenset({S.AWAITING_APPROVAL}), S.APPROVED,
                   "Only an invoice awaiting approval can be approved."),
        # VOIDED is final: no transition leaves it. While GENERATING, a job owns the invoice.
        Transition("VOID", frozenset({S.READY_TO_INVOICE, S.AWAITING_APPROVAL, S.ERROR, S.APPROVED}), S.VOIDED,
                   "Only an invoice that is not being generated and not voided already can be voided."),
    )
}


async def transition(
    invoice_id: Any,
    name: str,
    actor: Actor,
    *,
    organization_id: Any = None,
    changes: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
    connection: Any = None,
) -> Invoice:
    """Move one invoice along `name`, or raise InvalidTransition (NotFound when the invoice is
    not there, or not in `organization_id`). `changes` are further columns set by the same
    UPDATE (trusted names from domain code, never user input)."""
    async with _transaction(connection) as conn:
        (found,) = await _apply(conn, [invoice_id], name, actor, organization_id, changes, detail)
    if isinstance(found, DomainError):
        raise found
    return found


async def transition_each(
    ids: list[Any],
    name: str,
    actor: Actor,
    *,
    organization_id: Any = None,
    changes: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
    each: list[tuple[dict[str, Any], dict[str, Any]]] | None = None,
    connection: Any = None,
) -> list[Invoice | DomainError]:
    """`transition` of each invoice, in one transaction (a new one, or `connection`'s) and a
    few statements for all of them: each one's invoice, or why it did not move. `changes`
    and `detail` are the same for all; `each` gives every invoice, in the order of `ids`,
    further columns of its own and its event's detail."""
    async with _transaction(connection) as conn:
        return await _apply(conn, ids, name, actor, organization_id, changes, detail, each)


async def _apply(
    conn: Any, ids: list[Any], name: str, actor: Actor, organization_id: Any,
    changes: dict[str, Any] | None, detail: dict[str, Any] | None,
    each: list[tuple[dict[str, Any], dict[str, Any]]] | None = None,
) -> list[Invoice | DomainError]:
    rule = TRANSITIONS[name]
    columns = {"status": rule.target.value, "updated_at": datetime.now(UTC), **(changes or {})}
    assignments = [f'"{column}" = ${i}' for i, column in enumerate(columns, start=4)]
    params = [[str(invoice_id) for invoice_id in ids], str(organization_id) if organization_id else None,
              [source.value for source in rule.sources], *_db_values(columns.values())]
    own = ""
    if each:
        # Each invoice's own columns, typed as the table types them (JSON strings through the
        # columns' input functions: amounts stay exact).
        assignments += [f'"{column}" = v."{column}"' for column in dict.fromkeys(c for mine, _ in each for c in mine)]
        own = f", jsonb_populate_recordset(NULL::invoices, ${len(params) + 1}::jsonb) AS v"
        params.append(json.dumps([
            {"id": str(invoice_id), **{column: _json_value(value) for column, value in mine.items()}}
            for invoice_id, (mine, _) in zip(ids, each, strict=True)
        ]))
    # The sub-select reads the status before the change, so the timeline records it; it locks
    # in id order, as every bulk lock is taken.
    sql = (
        f"UPDATE invoices AS i SET {', '.join(assignments)} FROM ("
        " SELECT id, status FROM invoices WHERE id = ANY($1::uuid[])"
        " AND ($2::uuid IS NULL OR organization_id = $2) ORDER BY id FOR UPDATE"
        f") AS before{own} WHERE i.id = before.id AND before.status = ANY($3::text[])"
        + (" AND v.id = i.id" if own else "")
        + " RETURNING before.status AS from_status, i.*"
    )
    moved = {}
    for row in await conn.execute_query_dict(sql, params):
        from_status = row.pop("from_status")
        moved[str(row["id"])] = (Invoice._init_from_db(**row), from_status)
    if moved:
        details = {str(invoice_id): {**(detail or {}), **mine} for invoice_id, (_, mine) in zip(ids, each or [], strict=False)}
        await InvoiceEvent.bulk_create([
            InvoiceEvent(
                invoice_id=invoice.id, actor_id=actor.user_id, actor_label=actor.label, kind=name,
                from_status=from_status, to_status=rule.target.value, detail=details.get(invoice_id, detail or {}),
            )
            for invoice_id, (invoice, from_status) in moved.items()
        ], using_db=conn)
    stayed = [str(invoice_id) for invoice_id in ids if str(invoice_id) not in moved]
    existing = set()
    if stayed:
        query = Invoice.filter(id__in=stayed)
        if organization_id is not None:
            query = query.filter(organization_id=organization_id)
        existing = {str(invoice_id) for invoice_id in await query.using_db(conn).values_list("id", flat=True)}
    return [
        moved[str(invoice_id)][0] if str(invoice_id) in moved
        else InvalidTransition(rule.refusal, field="id") if str(invoice_id) in existing
        else NotFound("No such invoice.", field="id")
        for invoice_id in ids
    ]


async def lock_invoice(conn: Any, query, invoice_id: Any, field: str = "id") -> Invoice:
    """The invoice of `query` (a scoped invoice query) locked for this transaction: every
    change to its amounts takes this lock first, so concurrent payments, refunds and voids of
    one invoice run one after the other and none works from a stale balance."""
    invoice = await query.filter(id=invoice_id).select_for_update().using_db(conn).first() if invoice_id else None
    if invoice is None:
        raise NotFound("No such invoice.", field=field)
    return invoice


def _db_values(values) -> list[Any]:
    return [v.value if isinstance(v, Enum) else v for v in values]


def _json_value(value: Any) -> Any:
    """A column's value as JSON that its type reads back unchanged: amounts, dates, times and
    ids as their text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)  # Decimal, UUID


def _transaction(connection: Any):
    """A new transaction, or the caller's open one."""
    return in_transaction() if connection is None else _Joined(connection)


class _Joined:
    def __init__(self, connection: Any):
        self.connection = connection

    async def __aenter__(self) -> Any:
        return self.connection

    async def __aexit__(self, *exc: Any) -> None:
        return None
