"""Checks of the text people type (names, key/value pairs, e-mail addresses), shared by every
domain that stores it: the same limits and the same messages everywhere."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tortoise.exceptions import ValidationError as ColumnValueError

from models.errors import ValidationFailed

# Key/value pairs (business and banking fields) print on the invoice, laid out for these.
MAX_PAIRS = 50
MAX_PAIR_KEY = 100
MAX_PAIR_VALUE = 500


def clean_text(value: Any, field: str, limit: int, required: bool, label: str = "This") -> str:
    """`value` stripped, checked as text of at most `limit` characters for the input `field`."""
    if not isinstance(value, str):
        raise ValidationFailed(f"{label} must be text.", field=field)
    value = value.strip()
    if required and not value:
        raise ValidationFailed(f"{label} is required.", field=field)
    if len(value) > limit:
        raise ValidationFailed(f"{label} has at most {limit} characters.", field=field)
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise ValidationFailed(f"{label} contains a NUL character.", field=field)
    return value


def storable(model: Any, column: str, values: Iterable[str]) -> list[str]:
    """The `values` that the text column `model.column` could hold. A lookup by one it could
    not (longer than the column) matches no row, and Tortoise refuses to build one, so it is
    left out: a filter of such values alone matches nothing."""
    limit = model._meta.fields_map[column].max_length
    return [value for value in values if len(value) <= limit]


def camel(name: str) -> str:
    """The input field (camelCase) named after a column or an attribute (snake_case)."""
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def out_of_range(exc: ColumnValueError) -> ValidationFailed:
    """The refusal of a value that Tortoise would not send to its column (longer or larger
    than the column holds), raised where no check of the domain came first: Tortoise says
    `column: why`, and the input is named after the column (camelCase)."""
    field = camel(str(exc).split(":", 1)[0].strip())
    return ValidationFailed(f"`{field}` is out of range: too long or too large to be stored.", field=field)


def clean_pairs(pairs: Any, field: str) -> list[dict[str, str]]:
    """An ordered list of {"key", "value"} pairs, as printed on the invoice."""
    if not isinstance(pairs, (list, tuple)):
        raise ValidationFailed("Expected a list of key/value pairs.", field=field)
    if len(pairs) > MAX_PAIRS:
        raise ValidationFailed(f"At most {MAX_PAIRS} key/value pairs.", field=field)
    cleaned = []
    for number, pair in enumerate(pairs, start=1):
        if not isinstance(pair, dict):
            raise ValidationFailed(f"Pair {number} needs a key and a value.", field=field)
        key = clean_text(pair.get("key"), field, MAX_PAIR_KEY, True, f"The key of pair {number}")
        value = clean_text(pair.get("value"), field, MAX_PAIR_VALUE, False, f"The value of pair {number}")
        cleaned.append({"key": key, "value": value})
    return cleaned


MAX_EMAIL_LENGTH = 320


def normalize_email(email: str, field: str = "email") -> str:
    """A lower-cased address, or ValidationFailed on `field`. Deliberately simple: one @,
    a dotted domain, no spaces or control characters; deliverability is the mail server's
    to judge."""
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if (
        not local
        or email.count("@") != 1
        or "." not in domain
        or "" in domain.split(".")
        or len(email) > MAX_EMAIL_LENGTH
        or any(c.isspace() for c in email)
        or not email.isprintable()
    ):
        raise ValidationFailed(f"'{email[:80]}' is not an e-mail address.", field=field)
    return email
