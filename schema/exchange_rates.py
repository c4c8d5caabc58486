"""GraphQL types, queries and mutations of exchange rates."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated

import strawberry
from strawberry import relay

from models.exchange_rates import ExchangeRate as ExchangeRateModel
from models.exchange_rates import RateQuery, visible_rates
from schema.core.context import Info
from schema.core.errors import ValidationError
from schema.core.nodes import scoped_nodes
from schema.core.pagination import CountedConnection, Direction
from schema.core.scalars import Month, plain


@strawberry.type(name="ExchangeRate", description="A month's rate between two currencies.")
class ExchangeRate(relay.Node):
    id: relay.NodeID[str]
    month: Month = strawberry.field(description="The month the rate applies to.")
    base_currency: str = strawberry.field(description="The currency costs are billed in.")
    currency: str = strawberry.field(description="The invoice currency.")
    rate: Decimal = strawberry.field(description="1 base_currency = rate currency.")
    updated_at: datetime = strawberry.field(description="When the rate was last set.")

    @classmethod
    def from_model(cls, row: ExchangeRateModel) -> ExchangeRate:
        return cls(
            id=str(row.id), month=Month(row.month), base_currency=row.base_currency,
            currency=row.currency, rate=plain(row.rate), updated_at=row.updated_at,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_rates)


@strawberry.type(description="A page of exchange rates.")
class ExchangeRateConnection(CountedConnection[ExchangeRate]):
    pass


@strawberry.enum(description="What exchange rates can be sorted by.")
class ExchangeRateOrderField(Enum):
    MONTH = "month"
    CURRENCY = "currency"


@strawberry.input(description="Sort order of exchange rates.")
class ExchangeRateOrder:
    field: ExchangeRateOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.DESC, description="Direction.")


@strawberry.input(description="Narrow the list of exchange rates; all conditions combine.")
class ExchangeRateFilter:
    currencies: list[str] | None = strawberry.field(default=None, description="Invoice currencies.")
    month_from: Month | None = strawberry.field(default=None, description="From this month.")
    month_to: Month | None = strawberry.field(default=None, description="Up to this month.")


@strawberry.input(description="A month's exchange rate to set (replaces an earlier one).")
class SetExchangeRateInput:
    month: Month = strawberry.field(description="The month.")
    currency: str = strawberry.field(description="Invoice currency (ISO 4217), e.g. EUR.")
    rate: Decimal = strawberry.field(description="1 base currency = rate currency.")
    base_currency: str = strawberry.field(default="USD", description="Cost currency (ISO 4217).")


@strawberry.type(description="The rate was saved.")
class ExchangeRateSaved:
    exchange_rate: ExchangeRate = strawberry.field(description="The saved rate.")


SetExchangeRatePayload = Annotated[
    ExchangeRateSaved | ValidationError,
    strawberry.union("SetExchangeRatePayload", description="The result of `setExchangeRate`."),
]


def rate_query(where: ExchangeRateFilter | None) -> RateQuery:
    if where is None:
        return RateQuery()
    return RateQuery(currencies=where.currencies, month_from=where.month_from, month_to=where.month_to)

