"""The kinds of line a document carries, one enum for invoices, credit notes and the Xero
account mapping (each of those modules imports it; none imports another for it)."""

from __future__ import annotations

import strawberry

from models.invoices import LineKind

strawberry.enum(
    LineKind,
    description="USAGE (cloud costs), ONE_OFF (an item added by hand), RULE (credit, discount or "
    "markup), CHARGE (additional charge), TAX, or LATE_COST (costs of an earlier, already invoiced month that a delivery "
    "restated afterwards; negative when it lowered them).",
)

__all__ = ["LineKind"]
