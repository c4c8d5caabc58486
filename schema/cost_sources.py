"""GraphQL types, inputs and payloads of cost sources."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import relay

from models import cost_sources as domain
from schema.context import Info
from schema.costs import CostImport, CostImportConnection, CostImportOrder, CostImportOrderField, account_of
from schema.errors import CostSourceUnreadableError, InvalidTransitionError, NotFoundError, ValidationError
from schema.managed_accounts import ManagedAccount
from schema.nodes import scoped_nodes
from schema.pagination import CountedConnection, Direction, paginate
from schema.scalars import Month

CostSourceKind = domain.CostSourceKind
strawberry.enum(
    CostSourceKind, name="CostSourceKind",
    description="Where a cost source's deliveries land: AWS_S3 (AWS Data Exports into S3), S3_COMPATIBLE "
    "(OCI Object Storage, MinIO, Wasabi, ... at an endpoint), AZURE_BLOB and GCS (not yet available).",
)
CostSourceState = domain.CostSourceState
strawberry.enum(
    CostSourceState, name="CostSourceState",
    description="NEW until its first sync; OK when the last sync read it; WAITING when a delivery was still "
    "being written (taken at the next sync); FAILING when the last sync could not read it (`lastError`).",
)


@strawberry.type(name="CostSource", description="A bucket where an organization's cloud cost exports land, synced "
                 "on a schedule (COST_SOURCE_SYNC_HOURS) and on `syncCostSource`. Its credentials are never shown.")
class CostSource(relay.Node):
    id: relay.NodeID[str]
    name: str = strawberry.field(description="The source's name, unique in the organization.")
    kind: CostSourceKind = strawberry.field(description="Which store it is.")
    location: str = strawberry.field(description="`s3://bucket/prefix`: where the exports are read from.")
    region: str = strawberry.field(description="The bucket's region (empty: the store's default).")
    endpoint: str = strawberry.field(description="The S3-compatible store's endpoint (empty for AWS_S3).")
    key_hint: str = strawberry.field(description="The last characters of the access key id, to tell keys apart.")
    state: CostSourceState = strawberry.field(description="How its last sync went.")
    last_sync_at: datetime | None = strawberry.field(description="When it was last synced; null: never.")
    last_delivery_key: str | None = strawberry.field(description="The newest delivery found: its manifest's key.")
    last_delivery_at: datetime | None = strawberry.field(description="When the newest delivery found was written.")
    last_error: str | None = strawberry.field(description="Why its last sync failed; null when it did not.")
    created_at: datetime = strawberry.field(description="When the source was added.")
    model: strawberry.Private[Any]

    @classmethod
    def from_model(cls, row: domain.CostSource) -> CostSource:
        return cls(
            id=str(row.id), name=row.name, kind=row.kind, location=f"s3://{row.bucket}/{row.prefix}".rstrip("/"),
            region=row.region, endpoint=row.endpoint, key_hint=row.key_hint, state=row.state,
            last_sync_at=row.last_sync_at, last_delivery_key=row.last_delivery_key,
            last_delivery_at=row.last_delivery_at, last_error=row.last_error, created_at=row.created_at, model=row,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False) -> list[Any]:
        return await scoped_nodes(cls, info, node_ids, required, domain.visible_sources)

    @strawberry.field(
        description="The managed account whose own integration the source is: its deliveries import as that "
        "account's (ACCOUNT_INTEGRATION, every row of its sub-accounts); null: the MSP's."
    )
    async def account(self, info: Info) -> ManagedAccount | None:
        return await account_of(info, self.model.managed_account_id)

    @strawberry.field(description="The imports its syncs made, newest first.")
    async def imports(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
    ) -> CostImportConnection:
        return await paginate(
            info, CostImportConnection, domain.imports_of(self.model), CostImport.from_model,
            CostImportOrder(field=CostImportOrderField.CREATED_AT, direction=Direction.DESC),
            first=first, after=after, last=last, before=before,
        )


@strawberry.type(description="A page of cost sources.")
class CostSourceConnection(CountedConnection[CostSource]):
    pass


@strawberry.enum(description="What cost sources can be sorted by.")
class CostSourceOrderField(Enum):
    NAME = "name"
    CREATED_AT = "created_at"
    LAST_SYNC_AT = "last_sync_at"


@strawberry.input(description="Sort order of cost sources.")
class CostSourceOrder:
    field: CostSourceOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.ASC, description="Direction.")


@strawberry.type(description="What a source holds for one billing month.")
class CostSourceMonth:
    month: Month = strawberry.field(description="The billing month.")
    deliveries: int = strawberry.field(description="Deliveries found (the latest run of each export).")
    imported: int = strawberry.field(description="Of them, those imported as they are now.")
    latest_at: datetime = strawberry.field(description="When the latest of them was written.")


@strawberry.input(description="A new cost source.")
class CreateCostSourceInput:
    name: str = strawberry.field(description="Its name (1 to 255 characters), unique in the organization.")
    kind: CostSourceKind = strawberry.field(description="AWS_S3 or S3_COMPATIBLE.")
    location: str = strawberry.field(description="`s3://bucket/prefix`: the export's S3 path prefix.")
    access_key_id: str = strawberry.field(description="An access key allowed to list and read the location.")
    secret_access_key: str = strawberry.field(description="Its secret; sealed at rest and never shown again.")
    region: str = strawberry.field(default="", description="The bucket's region; required for AWS_S3.")
    endpoint: str = strawberry.field(
        default="", description="`https://host[:port]` of an S3-compatible store; required for S3_COMPATIBLE, refused "
        "for AWS_S3. A host on a loopback, private or link-local address is refused.",
    )
    account_id: strawberry.ID | None = strawberry.field(
        default=None, description="For a managed account's own integration (its own cloud export): the account. Its "
        "deliveries then import as that account's, and one with a row of another account's sub-account is refused, "
        "as `importCosts` with ACCOUNT_INTEGRATION refuses it. Omitted: the MSP's source.",
    )


@strawberry.input(description="Changes to a cost source; only the fields given change.")
class UpdateCostSourceInput:
    name: str | None = strawberry.field(default=None, description="A new name.")
    location: str | None = strawberry.field(default=None, description="A new `s3://bucket/prefix`.")
    access_key_id: str | None = strawberry.field(default=None, description="A new access key id (with its secret).")
    secret_access_key: str | None = strawberry.field(default=None, description="The new key's secret.")
    region: str | None = strawberry.field(default=None, description="A new region.")
    endpoint: str | None = strawberry.field(default=None, description="A new endpoint (S3_COMPATIBLE).")


def source_input(data: CreateCostSourceInput | UpdateCostSourceInput) -> domain.SourceInput:
    return domain.SourceInput(
        name=data.name, kind=getattr(data, "kind", None), location=data.location, region=data.region,
        endpoint=data.endpoint, access_key_id=data.access_key_id, secret_access_key=data.secret_access_key,
    )


@strawberry.type(description="The cost source as saved.")
class CostSourceSaved:
    cost_source: CostSource = strawberry.field(description="The source.")


@strawberry.type(description="The cost source was deleted; the imports it made and their costs stay.")
class CostSourceDeleted:
    deleted_id: strawberry.ID = strawberry.field(description="The ID the source had.")


@strawberry.type(description="What the source holds, read now: its deliveries per billing month.")
class CostSourceTested:
    cost_source: CostSource = strawberry.field(description="The source.")
    months: list[CostSourceMonth] = strawberry.field(description="Per billing month, oldest first.")


@strawberry.type(description="The source's sync is queued (or was already queued or running); follow its imports.")
class CostSourceSyncQueued:
    cost_source: CostSource = strawberry.field(description="The source.")
    already_queued: bool = strawberry.field(description="A sync of it was queued or running already.")


CreateCostSourcePayload = Annotated[
    CostSourceSaved | ValidationError | NotFoundError | CostSourceUnreadableError,
    strawberry.union("CreateCostSourcePayload", description="The result of `createCostSource`."),
]
UpdateCostSourcePayload = Annotated[
    CostSourceSaved | ValidationError | NotFoundError | CostSourceUnreadableError,
    strawberry.union("UpdateCostSourcePayload", description="The result of `updateCostSource`."),
]
DeleteCostSourcePayload = Annotated[
    CostSourceDeleted | NotFoundError,
    strawberry.union("DeleteCostSourcePayload", description="The result of `deleteCostSource`."),
]
TestCostSourcePayload = Annotated[
    CostSourceTested | NotFoundError | CostSourceUnreadableError,
    strawberry.union("TestCostSourcePayload", description="The result of `testCostSource`."),
]
SyncCostSourcePayload = Annotated[
    CostSourceSyncQueued | NotFoundError | InvalidTransitionError,
    strawberry.union("SyncCostSourcePayload", description="The result of `syncCostSource`."),
]
