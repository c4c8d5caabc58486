"""Custom scalars, registered in the schema's `scalar_map`."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, NewType

import strawberry
from graphql import GraphQLError

from models.errors import RequestErrorCode

if TYPE_CHECKING:
    from strawberry.types.scalar import ScalarDefinition

# Year 0001 to 9999, as `date` holds them; ASCII digits only, nothing after the month.
_MONTH = re.compile(r"\A(?!0000)(\d{4})-(0[1-9]|1[0-2])\Z", re.ASCII)

Month = NewType("Month", date)


def _parse_month(value: str) -> date:
    match = _MONTH.match(value) if isinstance(value, str) else None
    if not match:
        # A GraphQL error of its own (not a ValueError) so that it reads as the client's
        # mistake, located at the value, rather than as a failure of the server.
        raise GraphQLError(
            f"{_quoted(value)} is not a month; write YYYY-MM, e.g. 2026-10.",
            extensions={"code": RequestErrorCode.BAD_USER_INPUT.value},
        )
    return date(int(match[1]), int(match[2]), 1)


def _quoted(value: object, limit: int = 40) -> str:
    """The value as the client wrote it, cut short: a refusal need not echo a megabyte."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


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
