"""Billing periods: the list of months."""

from __future__ import annotations

import strawberry

from models import billing_periods
from schema.billing_periods import (
    BillingPeriod,
    BillingPeriodConnection,
    BillingPeriodFilter,
    BillingPeriodOrder,
    BillingPeriodOrderField,
    filtered,
)
from schema.context import Info
from schema.pagination import Direction, order_fields, paginate
from schema.permissions import MSP_USERS, requires


@strawberry.type
class Query:
    @strawberry.field(
        description="The organization's billing periods, latest month first by default.",
        extensions=requires(*MSP_USERS),
    )
    async def billing_periods(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
        filter: BillingPeriodFilter | None = None, order_by: BillingPeriodOrder | None = None,
    ) -> BillingPeriodConnection:
        order = order_by or BillingPeriodOrder(field=BillingPeriodOrderField.MONTH, direction=Direction.DESC)
        return await paginate(
            BillingPeriodConnection,
            filtered(billing_periods.visible_periods(info.context.principal), filter),
            BillingPeriod.from_model,
            order_by=order_fields(order.field.value, order.direction),
            max_page_size=info.context.settings.max_page_size,
            first=first, after=after, last=last, before=before,
        )
