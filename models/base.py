"""Shared model pieces: enums, mixins and the column types money and costs use."""

from __future__ import annotations

from enum import Enum
from typing import Any

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint


class Scope(str, Enum):
    OWNER = "OWNER"
    VIEWER = "VIEWER"
    CUSTOMER = "CUSTOMER"


def enum_check(table: str, column: str, enum: type[Enum]) -> CheckConstraint:
    """The database refuses a value outside the enum, whoever writes it."""
    values = ", ".join(f"'{member.value}'" for member in enum)
    return CheckConstraint(check=f"{column} IN ({values})", name=f"{table}_{column}_valid")


def money(**kwargs: Any) -> fields.DecimalField:
    """An amount in a currency: rounded to the currency's minor unit (at most 4 places)."""
    return fields.DecimalField(max_digits=20, decimal_places=4, **kwargs)


def cost_decimal(**kwargs: Any) -> fields.DecimalField:
    """A cost or quantity exactly as a cloud provider exported it."""
    return fields.DecimalField(max_digits=38, decimal_places=16, **kwargs)


class TimestampMixin:
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)


class AddressMixin:
    """A postal address, structured the way accounting imports (Xero) expect it."""

    address_line1 = fields.CharField(max_length=255, default="")
    address_line2 = fields.CharField(max_length=255, default="")
    address_line3 = fields.CharField(max_length=255, default="")
    address_line4 = fields.CharField(max_length=255, default="")
    city = fields.CharField(max_length=255, default="")
    region = fields.CharField(max_length=255, default="")
    postal_code = fields.CharField(max_length=64, default="")
    country = fields.CharField(max_length=255, default="")

    ADDRESS_FIELDS = (
        "address_line1", "address_line2", "address_line3", "address_line4",
        "city", "region", "postal_code", "country",
    )


# Address columns as inputs name them (camelCase under `address`), with their length limits:
# column -> (input field, max length, required).
ADDRESS_TEXT_COLUMNS = {
    "address_line1": ("address.line1", 255, False),
    "address_line2": ("address.line2", 255, False),
    "address_line3": ("address.line3", 255, False),
    "address_line4": ("address.line4", 255, False),
    "city": ("address.city", 255, False),
    "region": ("address.region", 255, False),
    "postal_code": ("address.postalCode", 64, False),
    "country": ("address.country", 255, False),
}
