"""GraphQL types, inputs and payloads of cost sources."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import relay

from models import cost_sources as domain
from schema.core.context import Info
from schema.core.errors import CostSourceUnreadableError, InvalidTransitionError, NotFoundError, ValidationError
from schema.core.nodes import scoped_nodes
from schema.core.pagination import CountedConnection, Direction, paginate
from schema.core.scalars import Month
from schema.costs import CostImport, CostImportConnection, CostImportOrder, CostImportOrderField, account_of
from schema.managed_accounts import ManagedAccount

CostSourceKind = domain.CostSourceKind
strawberry.enum(
    CostSourceKind, name="CostSourceKind",
    description="Where a cost source's deliveries land: AWS_S3 (AWS Data Exports into S3), S3_COMPATIBLE "
    "(OCI Object Storage, MinIO, Wasabi, ... at an endpoint), AZURE_BLOB (Azure Cost Management exports into a "
    "blob container), GCS (billing data exported from BigQuery into a Cloud Storage bucket).",
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
    location: str = strawberry.field(
        description="Where the exports are read from: `s3://bucket/prefix`, "
        "`az://<account>.blob.core.windows.net/<container>/<prefix>` or `gs://bucket/prefix`."
    )
    region: str = strawberry.field(description="The bucket's region (empty: the store's default).")
    endpoint: str = strawberry.field(
        description="The store's custom endpoint (an S3-compatible store's; for Azure or Cloud Storage, empty but for "
        "another cloud or an emulator; always empty for AWS_S3)."
    )
    key_hint: str = strawberry.field(
        description="What tells its credentials apart without a secret: the access key id's last characters, "
        "`role …` and the role's last ones, `SAS token`, `app …` and the client id's last ones, `account key`, or "
        "the service account's name."
    )
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
            id=str(row.id), name=row.name, kind=row.kind, location=domain.location_of(row),
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


_CREDENTIALS = {
    "access_key_id": "S3: an access key allowed to list and read the location (with its secret).",
    "secret_access_key": "S3: the access key's secret; sealed at rest and never shown again.",
    "role_arn": "AWS_S3: a role to assume (`arn:aws:iam::<account>:role/<name>`), from the access key given or, "
    "without one, from the server's own AWS credentials.",
    "external_id": "AWS_S3: the external id the role's trust policy asks for.",
    "sas_token": "AZURE_BLOB: a SAS token allowed to list and read the container (the partners' MCA/CSP way).",
    "tenant_id": "AZURE_BLOB: a service principal's tenant (directory) id, with its client id and secret.",
    "client_id": "AZURE_BLOB: the service principal's client (application) id.",
    "client_secret": "AZURE_BLOB: the service principal's secret.",
    "account_key": "AZURE_BLOB: the storage account's key (an emulator's, or where no other way is allowed).",
    "service_account_key": "GCS: the service account's key, the JSON file Google Cloud made for it.",
}


@strawberry.input(description="A new cost source: its location and the credentials of its kind (one way of them).")
class CreateCostSourceInput:
    name: str = strawberry.field(description="Its name (1 to 255 characters), unique in the organization.")
    kind: CostSourceKind = strawberry.field(description="Which store it is.")
    location: str = strawberry.field(
        description="`s3://bucket/prefix` (the export's S3 path prefix), "
        "`az://<account>.blob.core.windows.net/<container>/<directory>` or "
        "`abfss://<container>@<account>.dfs.core.windows.net/<directory>`, or `gs://bucket/prefix`."
    )
    access_key_id: str | None = strawberry.field(default=None, description=_CREDENTIALS["access_key_id"])
    secret_access_key: str | None = strawberry.field(default=None, description=_CREDENTIALS["secret_access_key"])
    role_arn: str | None = strawberry.field(default=None, description=_CREDENTIALS["role_arn"])
    external_id: str | None = strawberry.field(default=None, description=_CREDENTIALS["external_id"])
    sas_token: str | None = strawberry.field(default=None, description=_CREDENTIALS["sas_token"])
    tenant_id: str | None = strawberry.field(default=None, description=_CREDENTIALS["tenant_id"])
    client_id: str | None = strawberry.field(default=None, description=_CREDENTIALS["client_id"])
    client_secret: str | None = strawberry.field(default=None, description=_CREDENTIALS["client_secret"])
    account_key: str | None = strawberry.field(default=None, description=_CREDENTIALS["account_key"])
    service_account_key: str | None = strawberry.field(default=None, description=_CREDENTIALS["service_account_key"])
    region: str = strawberry.field(default="", description="The bucket's region; required for AWS_S3.")
    endpoint: str = strawberry.field(
        default="", description="`https://host[:port]` of an S3-compatible store (required for S3_COMPATIBLE, refused "
        "for AWS_S3), or of another Azure cloud or Cloud Storage emulator. A host on a loopback, private or "
        "link-local address is refused.",
    )
    account_id: strawberry.ID | None = strawberry.field(
        default=None, description="For a managed account's own integration (its own cloud export): the account. Its "
        "deliveries then import as that account's, and one with a row of another account's sub-account is refused, "
        "as `importCosts` with ACCOUNT_INTEGRATION refuses it. Omitted: the MSP's source.",
    )


@strawberry.input(description="Changes to a cost source; only the fields given change. Credentials given replace "
                  "the source's whole set.")
class UpdateCostSourceInput:
    name: str | None = strawberry.field(default=None, description="A new name.")
    location: str | None = strawberry.field(default=None, description="A new location, in its kind's form.")
    access_key_id: str | None = strawberry.field(default=None, description=_CREDENTIALS["access_key_id"])
    secret_access_key: str | None = strawberry.field(default=None, description=_CREDENTIALS["secret_access_key"])
    role_arn: str | None = strawberry.field(default=None, description=_CREDENTIALS["role_arn"])
    external_id: str | None = strawberry.field(default=None, description=_CREDENTIALS["external_id"])
    sas_token: str | None = strawberry.field(default=None, description=_CREDENTIALS["sas_token"])
    tenant_id: str | None = strawberry.field(default=None, description=_CREDENTIALS["tenant_id"])
    client_id: str | None = strawberry.field(default=None, description=_CREDENTIALS["client_id"])
    client_secret: str | None = strawberry.field(default=None, description=_CREDENTIALS["client_secret"])
    account_key: str | None = strawberry.field(default=None, description=_CREDENTIALS["account_key"])
    service_account_key: str | None = strawberry.field(default=None, description=_CREDENTIALS["service_account_key"])
    region: str | None = strawberry.field(default=None, description="A new region.")
    endpoint: str | None = strawberry.field(default=None, description="A new endpoint.")


def source_input(data: CreateCostSourceInput | UpdateCostSourceInput) -> domain.SourceInput:
    return domain.SourceInput(
        name=data.name, kind=getattr(data, "kind", None), location=data.location, region=data.region,
        endpoint=data.endpoint, **{name: getattr(data, name) for name in _CREDENTIALS},
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
