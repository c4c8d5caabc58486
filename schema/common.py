"""Small value types shared by several domains: postal addresses and ordered key/value pairs."""

from __future__ import annotations

from typing import Any

import strawberry


@strawberry.type(description="A postal address, structured the way accounting imports (Xero) expect it.")
class Address:
    line1: str = strawberry.field(description="First address line.")
    line2: str = strawberry.field(description="Second address line.")
    line3: str = strawberry.field(description="Third address line.")
    line4: str = strawberry.field(description="Fourth address line.")
    city: str = strawberry.field(description="City or town.")
    region: str = strawberry.field(description="State, province or region.")
    postal_code: str = strawberry.field(description="Postal or ZIP code.")
    country: str = strawberry.field(description="Country, as it should be printed.")

    @classmethod
    def from_model(cls, row: Any) -> Address:
        """From any row with `models.base.AddressMixin` columns."""
        return cls(
            line1=row.address_line1, line2=row.address_line2, line3=row.address_line3,
            line4=row.address_line4, city=row.city, region=row.region,
            postal_code=row.postal_code, country=row.country,
        )


@strawberry.input(description="A postal address; on update, an omitted field keeps its value.")
class AddressInput:
    line1: str | None = strawberry.field(default=None, description="First address line.")
    line2: str | None = strawberry.field(default=None, description="Second address line.")
    line3: str | None = strawberry.field(default=None, description="Third address line.")
    line4: str | None = strawberry.field(default=None, description="Fourth address line.")
    city: str | None = strawberry.field(default=None, description="City or town.")
    region: str | None = strawberry.field(default=None, description="State, province or region.")
    postal_code: str | None = strawberry.field(default=None, description="Postal or ZIP code.")
    country: str | None = strawberry.field(default=None, description="Country, as it should be printed.")

    def to_columns(self) -> dict[str, str]:
        """The given fields as `AddressMixin` column names (omitted fields left out)."""
        pairs = {
            "address_line1": self.line1, "address_line2": self.line2,
            "address_line3": self.line3, "address_line4": self.line4,
            "city": self.city, "region": self.region,
            "postal_code": self.postal_code, "country": self.country,
        }
        return {column: value for column, value in pairs.items() if value is not None}


@strawberry.type(description="One labelled value, e.g. `VAT number: GB123456789`.")
class KeyValue:
    key: str = strawberry.field(description="The label.")
    value: str = strawberry.field(description="The value.")

    @classmethod
    def from_list(cls, pairs: list[dict[str, str]] | None) -> list[KeyValue]:
        """From a stored ordered `[{"key": ..., "value": ...}]` list."""
        return [cls(key=p.get("key", ""), value=p.get("value", "")) for p in pairs or []]


@strawberry.input(description="One labelled value, e.g. `IBAN: GB33BUKB20201555555555`.")
class KeyValueInput:
    key: str = strawberry.field(description="The label (1 to 100 characters).")
    value: str = strawberry.field(description="The value (at most 500 characters).")


def key_values(pairs: list[KeyValueInput] | None) -> list[dict[str, str]] | None:
    """Input pairs as the plain dicts the domain stores (None stays None: not given)."""
    if pairs is None:
        return None
    return [{"key": p.key, "value": p.value} for p in pairs]
