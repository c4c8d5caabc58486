"""GraphQL types of billing periods (calendar months)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from models import BillingPeriod as BillingPeriodModel
from models import CostSource as CostSourceModel
from models import Invoice as InvoiceModel
from models import Organization as OrganizationModel
from models import User as UserModel
from models import completeness as domain_completeness
from models.billing_periods import PeriodQuery, PeriodState, visible_periods
from models.invoices import visible_invoices
from schema.core.arguments import CheckedArguments
from schema.core.context import Info
from schema.core.errors import ValidationError
from schema.core.nodes import scoped_nodes
from schema.core.pagination import CountedConnection, Direction
from schema.core.scalars import Month
from schema.cost_sources import CostSource

if TYPE_CHECKING:
    from schema.invoices import Invoice, InvoiceConnection, InvoiceFilter, InvoiceOrder

_INVOICES = strawberry.lazy("schema.invoices")

# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
BillingPeriodState = PeriodState
strawberry.enum(
    BillingPeriodState,
    name="BillingPeriodState",
    description="OPEN while the month's costs may still change; CLOSED once the month was "
    "closed and its invoices made ready.",
)

DataCompleteness = domain_completeness.DataCompleteness
strawberry.enum(
    DataCompleteness,
    name="DataCompleteness",
    description="How complete a month's cost data is: MISSING (no delivery of the month imported), PARTIAL (the "
    "latest was written before the month ended, or less than the organization's settle time after), COMPLETE.",
)


@strawberry.type(description="One cost source's data of the month, for one provider.")
class SourceCompleteness:
    cost_source: CostSource = strawberry.field(description="The source.")
    provider: str | None = strawberry.field(
        description="The provider (FOCUS ProviderName) of its deliveries; null while it delivered nothing."
    )
    state: DataCompleteness = strawberry.field(description="How complete its data of the month is.")
    written_at: datetime | None = strawberry.field(
        description="When the store wrote its latest delivery with costs of the month; null: none."
    )


@strawberry.type(name="BillingPeriod", description="A calendar month that is invoiced.")
class BillingPeriod(relay.Node):
    id: relay.NodeID[str]
    month: Month = strawberry.field(description='The month, e.g. "2026-10".')
    start_date: date = strawberry.field(description="The month's first day.")
    end_date: date = strawberry.field(description="The month's last day (inclusive).")
    state: BillingPeriodState = strawberry.field(description="OPEN or CLOSED.")
    closed_at: datetime | None = strawberry.field(description="When the month was closed; null while open.")
    model: strawberry.Private[BillingPeriodModel]

    @classmethod
    def from_model(cls, row: BillingPeriodModel) -> BillingPeriod:
        # The table stores an exclusive end (the next month's first day); people read the last day.
        return cls(
            id=str(row.id), month=Month(row.start_date), start_date=row.start_date,
            end_date=row.end_date - timedelta(days=1), state=row.state, closed_at=row.closed_at,
            model=row,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_periods)

    @strawberry.field(
        description="How complete the month's cost data is now, the least complete of `sourceCompleteness`; null "
        "when the organization has no cost source (the month closes as scheduled). The scheduled close waits for "
        "COMPLETE until the latest close day; `closeBillingPeriod` closes before only with `force`."
    )
    async def completeness(self, info: Info) -> DataCompleteness | None:
        return domain_completeness.overall(await self._sources(info))

    @strawberry.field(description="The month's data per cost source and provider, by source name.")
    async def source_completeness(self, info: Info) -> list[SourceCompleteness]:
        found = await self._sources(info)
        loader = info.context.loaders.by_id(CostSourceModel)
        rows = await loader.load_many([source.source_id for source in found])
        return [
            SourceCompleteness(
                cost_source=CostSource.from_model(row), provider=source.provider, state=source.state,
                written_at=source.written_at,
            )
            for source, row in zip(found, rows, strict=True) if row is not None
        ]

    @strawberry.field(
        description="When the month was closed before its data was complete (with `force`, or by the scheduler at "
        "the latest close day); null: it was not."
    )
    def forced_at(self) -> datetime | None:
        return self.model.forced_at

    @strawberry.field(description="Who closed the month before its data was complete: a user's name, or the part of "
                      "the system (scheduler, cli); null: nobody did.")
    async def forced_by(self, info: Info) -> str | None:
        if self.model.forced_at is None:
            return None
        if self.model.forced_by_id is None:
            return self.model.forced_by_label or None
        user = await info.context.loaders.by_id(UserModel).load(self.model.forced_by_id)
        return (user.name or user.email) if user else None

    async def _sources(self, info: Info) -> list[domain_completeness.MonthSource]:
        loader = info.context.loaders.keyed("period_completeness", partial(_completeness, info))
        return await loader.load((self.model.organization_id, self.model.start_date))

    @strawberry.field(description="How many invoices the month has, in any status.")
    async def invoice_count(self, info: Info) -> int:
        return await info.context.loaders.counts(InvoiceModel, "billing_period_id").load(self.model.id)

    @strawberry.field(
        description="The month's invoices; the same filters and order as `invoices`, within this month.",
        extensions=[CheckedArguments()],
    )
    async def invoices(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
        filter: Annotated[InvoiceFilter, _INVOICES] | None = None,
        order_by: Annotated[InvoiceOrder, _INVOICES] | None = None,
    ) -> Annotated[InvoiceConnection, _INVOICES]:
        # Imported when used: schema.invoices refers to this module's types.
        from schema.invoices import period_invoices

        return await period_invoices(info, self.model.id, filter, order_by, first, after, last, before)


async def _completeness(info: Info, keys: list[tuple[Any, date]]) -> list[list[domain_completeness.MonthSource]]:
    """The completeness of the periods of a page, one query per organization (one in all)."""
    found: dict[tuple[Any, date], list[domain_completeness.MonthSource]] = {}
    for organization_id in {organization for organization, _ in keys}:
        organization = await info.context.loaders.by_id(OrganizationModel).load(organization_id)
        months = [month for owner, month in keys if owner == organization_id]
        by_month = await domain_completeness.months_sources(organization_id, months, organization.data_settle_hours)
        found.update({(organization_id, month): sources for month, sources in by_month.items()})
    return [found[key] for key in keys]


@strawberry.type(description="A page of billing periods.")
class BillingPeriodConnection(CountedConnection[BillingPeriod]):
    pass


@strawberry.enum(description="What billing periods can be sorted by.")
class BillingPeriodOrderField(Enum):
    MONTH = "start_date"


@strawberry.input(description="Sort order of billing periods.")
class BillingPeriodOrder:
    field: BillingPeriodOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.DESC, description="Direction.")


@strawberry.input(description="Narrow the list of billing periods; all conditions combine.")
class BillingPeriodFilter:
    state: BillingPeriodState | None = strawberry.field(default=None, description="Only periods in this state.")
    from_: Month | None = strawberry.field(default=None, name="from", description="From this month (inclusive).")
    to: Month | None = strawberry.field(default=None, description="Up to this month (inclusive).")


def period_query(where: BillingPeriodFilter | None) -> PeriodQuery:
    if where is None:
        return PeriodQuery()
    return PeriodQuery(
        state=where.state.value if where.state is not None else None, month_from=where.from_, month_to=where.to
    )


@strawberry.type(description="The month is closed; every managed account has its invoice.")
class BillingPeriodClosed:
    billing_period: BillingPeriod = strawberry.field(description="The closed month.")
    invoices_created: int = strawberry.field(
        description="Invoices this call created (0 when the month was already closed)."
    )
    invoice_ids: strawberry.Private[list]

    @strawberry.field(
        description="The invoices this call created (READY_TO_INVOICE, or GENERATING for "
        "auto-invoiced accounts), to generate or follow them without another query."
    )
    async def invoices(self, info: Info) -> list[Annotated[Invoice, _INVOICES]]:
        from schema.invoices import Invoice
        from schema.invoices.types import prefetch

        rows = await visible_invoices(info.context.authenticated()).filter(id__in=self.invoice_ids).order_by("created_at", "id")
        page = [Invoice.from_model(row) for row in rows]
        await prefetch(info, page)
        return page


CloseBillingPeriodPayload = Annotated[
    BillingPeriodClosed | ValidationError,
    strawberry.union("CloseBillingPeriodPayload", description="The result of `closeBillingPeriod`."),
]
