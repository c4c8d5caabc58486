"""Invoice numbers: sequential per organization and year (INV-2026-0042), never reused.

A number is taken in the same transaction that stores it on the invoice: the counter row
is locked by its UPDATE until commit, so concurrent generations queue on it briefly and a
rolled-back transaction gives its number back. Nothing else ever takes a number, so the
sequence has no gaps. Invoices and counters are locked in a fixed order (by id, then by
organization and year), so two transactions numbering overlapping sets never deadlock."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tortoise.transactions import in_transaction


async def ensure_number(invoice_id: Any, year: int) -> str:
    """The invoice's number, taking the next one of its organization if it has none yet."""
    return (await ensure_numbers([(invoice_id, year)]))[str(invoice_id)]


async def ensure_numbers(invoices: list[tuple[Any, int]]) -> dict[str, str]:
    """Each invoice's number (by id as text), taking the next ones of its organization and
    year, in the order given, for those that have none yet."""
    ids = [str(invoice_id) for invoice_id, _ in invoices]
    async with in_transaction() as conn:
        rows = await conn.execute_query_dict(
            "SELECT i.id::text AS id, i.number, i.organization_id::text AS organization_id, o.invoice_prefix"
            " FROM invoices i JOIN organizations o ON o.id = i.organization_id"
            " WHERE i.id = ANY($1::uuid[]) ORDER BY i.id FOR UPDATE OF i",
            [ids],
        )
        found = {row["id"]: row for row in rows}
        numbers = {invoice_id: row["number"] for invoice_id, row in found.items() if row["number"]}
        wanting: dict[tuple[str, int], list[str]] = defaultdict(list)
        for invoice_id, (_, year) in zip(ids, invoices, strict=True):
            row = found.get(invoice_id)
            if row is None or invoice_id in numbers:
                continue
            waiting = wanting[(row["organization_id"], year)]
            if invoice_id not in waiting:
                waiting.append(invoice_id)
        for (organization_id, year), waiting in sorted(wanting.items()):
            first = await take(conn, "invoice_number_counters", organization_id, year, len(waiting))
            prefix = found[waiting[0]]["invoice_prefix"]
            numbers |= {invoice_id: format_number(prefix, year, first + k) for k, invoice_id in enumerate(waiting)}
        taken = [invoice_id for waiting in wanting.values() for invoice_id in waiting]
        if taken:
            await conn.execute_query(
                "UPDATE invoices SET number = v.number FROM unnest($1::uuid[], $2::text[]) AS v(id, number)"
                " WHERE invoices.id = v.id",
                [taken, [numbers[invoice_id] for invoice_id in taken]],
            )
    return numbers


async def take(conn: Any, counters: str, organization_id: Any, year: int, count: int = 1) -> int:
    """The first of `count` values taken from an organization's counter of `year` in
    `counters` (a counter table's name, never input), inside the caller's transaction: the
    counter row stays locked until it commits."""
    await conn.execute_query(
        f"INSERT INTO {counters} (id, organization_id, year, last_value)"
        " VALUES (gen_random_uuid(), $1, $2, 0) ON CONFLICT (organization_id, year) DO NOTHING",
        [str(organization_id), year],
    )
    (counter,) = await conn.execute_query_dict(
        f"UPDATE {counters} SET last_value = last_value + $3 WHERE organization_id = $1 AND year = $2 RETURNING last_value",
        [str(organization_id), year, count],
    )
    return counter["last_value"] - count + 1


def format_number(prefix: str, year: int, value: int) -> str:
    return f"{prefix}-{year}-{value:04d}"
