"""Billing periods: the list of months."""

from __future__ import annotations

from typing import Annotated

import strawberry

from models import billing_periods
from models.actors import Actor
from schema.billing_periods import (
    BillingPeriod,
    BillingPeriodClosed,
    BillingPeriodConnection,
    BillingPeriodFilter,
    BillingPeriodOrder,
    BillingPeriodOrderField,
    CloseBillingPeriodPayload,
    period_query,
)
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.pagination import Direction, paginate
from schema.core.permissions import MSP_USERS, OWNERS, requires
from schema.core.scalars import Month


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
            info,
            BillingPeriodConnection,
            billing_periods.filter_periods(billing_periods.visible_periods(info.context.principal), period_query(filter)),
            BillingPeriod.from_model,
            order, first=first, after=after, last=last, before=before,
        )


@strawberry.type
class Mutation:
    @mutation(
        description="Close a past month now (the scheduler does it on the 1st, or the 4th with "
        "the data ingestion delay; with cost sources, once their data is complete): every managed "
        "account gets a READY_TO_INVOICE invoice. Closing again changes nothing. While a cost "
        "source's data of the month is not complete, refused (DATA_INCOMPLETE) unless `force`.",
        scopes=OWNERS,
    )
    async def close_billing_period(
        self, info: Info, month: Month,
        force: Annotated[bool, strawberry.argument(
            description="Close even though a cost source's data of the month is not complete: recorded on the period "
            "(`forcedAt`, `forcedBy`), and its invoices carry an INCOMPLETE_DATA warning to acknowledge."
        )] = False,
    ) -> CloseBillingPeriodPayload:
        principal = info.context.authenticated()
        created = await billing_periods.close_period(
            principal.organization_id, month, Actor(user_id=principal.user.id), must_be_past=True, force=force
        )
        period = await billing_periods.visible_periods(principal).get(start_date=month)
        return BillingPeriodClosed(
            billing_period=BillingPeriod.from_model(period), invoices_created=len(created), invoice_ids=created
        )
