"""Credit note numbers: their own series per organization and year (CN-2026-0001), gapless.

The same technique as invoice numbers (models/invoices/numbering.py): the number is taken in
the transaction that stores the credit note, by one UPDATE of the counter row, which stays
locked until commit. Concurrent credit notes queue on it briefly; a rolled-back transaction
gives its number back; nothing else takes numbers, so the series has no gaps."""

from __future__ import annotations

from typing import Any

PREFIX = "CN"


async def next_number(conn: Any, organization_id: Any, year: int) -> str:
    """The organization's next credit note number of `year`, inside the caller's transaction."""
    await conn.execute_query(
        "INSERT INTO credit_note_number_counters (id, organization_id, year, last_value)"
        " VALUES (gen_random_uuid(), $1, $2, 0) ON CONFLICT (organization_id, year) DO NOTHING",
        [str(organization_id), year],
    )
    rows = await conn.execute_query_dict(
        "UPDATE credit_note_number_counters SET last_value = last_value + 1"
        " WHERE organization_id = $1 AND year = $2 RETURNING last_value",
        [str(organization_id), year],
    )
    return f"{PREFIX}-{year}-{rows[0]['last_value']:04d}"
