"""Custom scalars, registered in the schema's `scalar_map`."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, NewType

import strawberry

if TYPE_CHECKING:
    from strawberry.types.scalar import ScalarDefinition

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

Month = NewType("Month", date)


def _parse_month(value: str) -> date:
    match = _MONTH.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"'{value}' is not a month; write YYYY-MM, e.g. 2026-10.")
    return date(int(match[1]), int(match[2]), 1)


SCALARS: dict[object, ScalarDefinition] = {
    Month: strawberry.scalar(
        name="Month",
        description='A calendar month, written YYYY-MM (e.g. "2026-10").',
        serialize=lambda value: value.strftime("%Y-%m"),
        parse_value=_parse_month,
    ),
}


def plain(value: Decimal) -> Decimal:
    """A decimal without trailing zeros and never in exponent notation (0.9210000 -> 0.921)."""
    normalized = value.normalize()
    return normalized.quantize(Decimal(1)) if normalized == normalized.to_integral() else normalized
