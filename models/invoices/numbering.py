"""Invoice numbers: sequential per organization and year (INV-2026-0042), never reused.

A number is taken in the same transaction that stores it on the invoice: the counter row
is locked by its UPDATE until commit, so concurrent generations queue on it briefly and a
rolled-back transaction gives its number back. Nothing else ever takes a number, so the
sequence has no gaps."""

from __future__ import annotations

from typing import Any

from tortoise.transactions import in_transaction

from models.invoices.tables import Invoice
from models.organizations import Organization


async def ensure_number(invoice_id: Any, year: int) -> str:
    """The invoice's number, taking the next one of its organization if it has none yet."""
    async with in_transaction() as conn:
        invoice = await Invoice.select_for_update().using_db(conn).get(id=invoice_id)
        if invoice.number:
            return invoice.number
        org = await Organization.get(id=invoice.organization_id, using_db=conn)
        await conn.execute_query(
            "INSERT INTO invoice_number_counters (id, organization_id, year, last_value)"
            " VALUES (gen_random_uuid(), $1, $2, 0) ON CONFLICT (organization_id, year) DO NOTHING",
            [str(org.id), year],
        )
        rows = await conn.execute_query_dict(
            "UPDATE invoice_number_counters SET last_value = last_value + 1"
            " WHERE organization_id = $1 AND year = $2 RETURNING last_value",
            [str(org.id), year],
        )
        number = format_number(org.invoice_prefix, year, rows[0]["last_value"])
        await Invoice.filter(id=invoice_id).using_db(conn).update(number=number)
        return number


def format_number(prefix: str, year: int, value: int) -> str:
    return f"{prefix}-{year}-{value:04d}"
