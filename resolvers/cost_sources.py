"""Cost sources: the list, create/update/delete, a test read, and a sync on demand."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import strawberry

from infra import object_stores
from jobs import dispatch
from models import cost_sources
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid, node_uuid_or_none
from schema.core.pagination import Direction, paginate
from schema.core.permissions import MSP_USERS, OWNERS, requires
from schema.core.scalars import Month
from schema.cost_sources import (
    CostSource,
    CostSourceConnection,
    CostSourceDeleted,
    CostSourceMonth,
    CostSourceOrder,
    CostSourceOrderField,
    CostSourceSaved,
    CostSourceSyncQueued,
    CostSourceTested,
    CreateCostSourceInput,
    CreateCostSourcePayload,
    DeleteCostSourcePayload,
    SyncCostSourcePayload,
    TestCostSourcePayload,
    UpdateCostSourceInput,
    UpdateCostSourcePayload,
    source_input,
)

TYPE_NAME = "CostSource"


@strawberry.type
class Query:
    @strawberry.field(
        description="The organization's cost sources; by default by name.",
        extensions=requires(*MSP_USERS),
    )
    async def cost_sources(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None, order_by: CostSourceOrder | None = None,
    ) -> CostSourceConnection:
        return await paginate(
            info, CostSourceConnection, cost_sources.visible_sources(info.context.authenticated()),
            CostSource.from_model, order_by or CostSourceOrder(field=CostSourceOrderField.NAME, direction=Direction.ASC),
            first=first, after=after, last=last, before=before,
        )


@strawberry.type
class Mutation:
    @mutation(
        description="Connect a bucket or container where cost exports land (AWS Data Exports' S3 path prefix, an "
        "S3-compatible store's, an Azure Cost Management export's container and directory, a Cloud Storage bucket "
        "where billing data is exported). Nothing is read until `testCostSource` or a sync.",
        scopes=OWNERS,
    )
    async def create_cost_source(self, info: Info, input: CreateCostSourceInput) -> CreateCostSourcePayload:
        settings = info.context.settings
        data = replace(source_input(input), account_id=node_uuid(input.account_id, "ManagedAccount", field="accountId"))
        row = await cost_sources.create_source(
            info.context.principal, settings, data, partial(object_stores.check_endpoint, settings)
        )
        return CostSourceSaved(cost_source=CostSource.from_model(row))

    @mutation(description="Change a cost source; only the fields given change.", scopes=OWNERS)
    async def update_cost_source(
        self, info: Info, id: strawberry.ID, input: UpdateCostSourceInput
    ) -> UpdateCostSourcePayload:
        settings = info.context.settings
        row = await cost_sources.update_source(
            info.context.principal, settings, node_uuid_or_none(id, TYPE_NAME), source_input(input),
            partial(object_stores.check_endpoint, settings),
        )
        return CostSourceSaved(cost_source=CostSource.from_model(row))

    @mutation(description="Delete a cost source; the imports it made, and their costs, stay.", scopes=OWNERS)
    async def delete_cost_source(self, info: Info, id: strawberry.ID) -> DeleteCostSourcePayload:
        await cost_sources.delete_source(info.context.principal, node_uuid_or_none(id, TYPE_NAME))
        return CostSourceDeleted(deleted_id=id)

    @mutation(
        description="Read the source now, importing nothing: the deliveries found per billing month, or why it "
        "cannot be read (COST_SOURCE_UNREADABLE).",
        scopes=OWNERS,
    )
    async def test_cost_source(self, info: Info, id: strawberry.ID) -> TestCostSourcePayload:
        settings = info.context.settings
        source = await cost_sources.owned_source(info.context.principal, node_uuid_or_none(id, TYPE_NAME))
        store = await object_stores.open_store(settings, source, cost_sources.credentials_of(settings, source))
        found = cost_sources.discover(await object_stores.list_objects(store, source.prefix))
        months = await cost_sources.months_found(source, found)
        return CostSourceTested(cost_source=CostSource.from_model(source), months=[
            CostSourceMonth(month=Month(m.period), deliveries=m.deliveries, imported=m.imported, latest_at=m.latest_at)
            for m in months
        ])

    @mutation(
        description="Sync the source now, on the worker: each new delivery is imported (follow `imports` and "
        "`costImportChanged`). One sync per source runs at a time.",
        scopes=OWNERS,
    )
    async def sync_cost_source(self, info: Info, id: strawberry.ID) -> SyncCostSourcePayload:
        source = await cost_sources.owned_source(info.context.principal, node_uuid_or_none(id, TYPE_NAME))
        queued = await dispatch.enqueue_cost_source_sync(info.context.redis, source.id)
        return CostSourceSyncQueued(cost_source=CostSource.from_model(source), already_queued=not queued)
