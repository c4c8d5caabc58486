"""Exchange rates: list and set."""

from __future__ import annotations

import strawberry

from models import exchange_rates
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.pagination import Direction, paginate
from schema.core.permissions import MSP_USERS, OWNERS, requires
from schema.exchange_rates import (
    ExchangeRate,
    ExchangeRateConnection,
    ExchangeRateFilter,
    ExchangeRateOrder,
    ExchangeRateOrderField,
    ExchangeRateSaved,
    SetExchangeRateInput,
    SetExchangeRatePayload,
    rate_query,
)


@strawberry.type
class Query:
    @strawberry.field(
        description="The organization's monthly exchange rates.", extensions=requires(*MSP_USERS)
    )
    async def exchange_rates(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
        filter: ExchangeRateFilter | None = None, order_by: ExchangeRateOrder | None = None,
    ) -> ExchangeRateConnection:
        order = order_by or ExchangeRateOrder(field=ExchangeRateOrderField.MONTH, direction=Direction.DESC)
        return await paginate(
            info,
            ExchangeRateConnection,
            exchange_rates.filter_rates(exchange_rates.visible_rates(info.context.principal), rate_query(filter)),
            ExchangeRate.from_model,
            order, first=first, after=after, last=last, before=before,
        )


@strawberry.type
class Mutation:
    @mutation(
        description="Set a month's exchange rate; regenerate invoices already generated to "
        "apply it.",
        scopes=OWNERS,
    )
    async def set_exchange_rate(self, info: Info, input: SetExchangeRateInput) -> SetExchangeRatePayload:
        rate = await exchange_rates.set_rate(
            info.context.principal, input.month, input.currency, input.rate, input.base_currency
        )
        return ExchangeRateSaved(exchange_rate=ExchangeRate.from_model(rate))
