"""Credit note numbers: their own series per organization and year (CN-2026-0001), gapless.

The same technique as invoice numbers (models/invoices/numbering.py): the number is taken in
the transaction that stores the credit note, by one UPDATE of the counter row, which stays
locked until commit. Concurrent credit notes queue on it briefly; a rolled-back transaction
gives its number back; nothing else takes numbers, so the series has no gaps."""

from __future__ import annotations

from typing import Any

from models.invoices.numbering import format_number, take

PREFIX = "CN"


async def next_number(conn: Any, organization_id: Any, year: int) -> str:
    """The organization's next credit note number of `year`, inside the caller's transaction."""
    return format_number(PREFIX, year, await take(conn, "credit_note_number_counters", organization_id, year))
