"""What a client sends to edit an invoice's one-off items."""

from __future__ import annotations

from decimal import Decimal

import strawberry


@strawberry.input(description="A one-off item.")
class InvoiceItemInput:
    description: str = strawberry.field(description="The text printed on the line (at most 1,024 characters).")
    quantity: Decimal = strawberry.field(default=Decimal(1), description="How many, more than 0 (default 1).")
    unit_price: Decimal = strawberry.field(description="Price of one in the invoice currency (negative for a deduction).")


@strawberry.input(description="Changes to a one-off item: an omitted or null field keeps its value.")
class InvoiceItemChange:
    description: str | None = strawberry.field(default=None, description="The text printed on the line.")
    quantity: Decimal | None = strawberry.field(default=None, description="How many, more than 0.")
    unit_price: Decimal | None = strawberry.field(default=None, description="Price of one in the invoice currency.")
