"""Cost sources: the buckets where an organization's cloud cost exports land, read by a
scheduled sync (the reading itself is `infra.object_stores`; the sync is `jobs.cost_sources`).

A source's credentials are sealed at rest (`models.sealing`) under a label of their own and never
leave this module but to the one place that reaches object stores; the API shows a hint only.

Discovery is decided here from a listing of the source's objects: an AWS Data Exports delivery is
its manifest (`<export>/metadata/BILLING_PERIOD=YYYY-MM/[<run>/]<export>-Manifest.json`, written
once all its data files are), the latest of each export and billing period. A manifest already
imported under the same key and ETag is skipped without reading anything; one naming a data file
not there yet is a delivery still being written, left for the next sync."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

from tortoise import fields
from tortoise.expressions import F, Q
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from infra.settings import Settings
from models import sealing
from models.base import TimestampMixin, enum_check
from models.costs.importer import INTERNAL_ERROR
from models.costs.records import CostImport, CostImportState
from models.errors import DomainError, ErrorCode, NotFound, ValidationFailed
from models.managed_accounts import ManagedAccount

if TYPE_CHECKING:
    from models.organizations import Organization

_SEAL_LABEL = b"invoicing cost source credentials"
_MANIFEST = re.compile(r"(^|/)(?P<export>[^/]*)/metadata/BILLING_PERIOD=(?P<period>\d{4}-\d{2})/(?:[^/]+/)?[^/]*manifest\.json$", re.I)
# S3 bucket names (the general-purpose rules): 3 to 63 lower-case letters, digits, dots and dashes.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-\d$|^[a-z0-9-]{1,32}$")


class CostSourceKind(str, Enum):
    """Where the deliveries land: AWS S3, another S3-compatible store (OCI, MinIO, Wasabi),
    an Azure blob container or a Google Cloud Storage bucket."""

    AWS_S3 = "AWS_S3"
    AZURE_BLOB = "AZURE_BLOB"
    GCS = "GCS"
    S3_COMPATIBLE = "S3_COMPATIBLE"


# The kinds a source can be made of today; the others are refused as not yet available.
AVAILABLE_KINDS = (CostSourceKind.AWS_S3, CostSourceKind.S3_COMPATIBLE)


class CostSourceState(str, Enum):
    """NEW until its first sync; OK when the last sync read it; WAITING when a delivery was
    still being written (taken at the next sync); FAILING when the last sync could not read it
    (`last_error` says why)."""

    NEW = "NEW"
    OK = "OK"
    WAITING = "WAITING"
    FAILING = "FAILING"


class SourceProblem(str, Enum):
    """Why a source cannot be read."""

    ACCESS_DENIED = "ACCESS_DENIED"
    BUCKET_NOT_FOUND = "BUCKET_NOT_FOUND"
    UNREACHABLE = "UNREACHABLE"
    ENDPOINT_REFUSED = "ENDPOINT_REFUSED"
    TOO_LARGE = "TOO_LARGE"
    NOT_AVAILABLE = "NOT_AVAILABLE"


class CostSourceUnreadable(DomainError):
    """The source cannot be read: its credentials are refused, its bucket is missing, its
    endpoint does not answer or is refused. The message never holds a credential."""

    code = ErrorCode.COST_SOURCE_UNREADABLE

    def __init__(self, message: str, problem: SourceProblem, *, field: str | None = None):
        super().__init__(message, field=field)
        self.problem = problem


class CostSource(TimestampMixin, Model):
    """A bucket (and a prefix in it) where an organization's cost exports land."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="cost_sources", on_delete=fields.CASCADE
    )
    # An account's own integration: its deliveries import as that account's (ACCOUNT_INTEGRATION,
    # every row of its sub-accounts); null: the MSP's.
    managed_account: fields.ForeignKeyNullableRelation[ManagedAccount] = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="cost_sources", null=True, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=255)
    kind = fields.CharEnumField(CostSourceKind, max_length=16)
    bucket = fields.CharField(max_length=255)
    prefix = fields.CharField(max_length=1024, default="")
    region = fields.CharField(max_length=64, default="")
    endpoint = fields.CharField(max_length=1024, default="")
    # The access key id and secret, sealed (`seal_credentials`); only `key_hint` is ever shown.
    credentials = fields.TextField()
    key_hint = fields.CharField(max_length=16, default="")
    state = fields.CharEnumField(CostSourceState, max_length=16, default=CostSourceState.NEW)
    last_sync_at = fields.DatetimeField(null=True)
    # The newest delivery seen (its manifest's key and when it was written).
    last_delivery_key = fields.CharField(max_length=1024, null=True)
    last_delivery_at = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)
    # Syncs failed in a row: a failing source is retried sooner than the schedule, then less
    # and less often (`due_sources`).
    failures = fields.SmallIntField(default=0)

    organization_id: UUID
    managed_account_id: UUID | None

    class Meta:
        table = "cost_sources"
        constraints = (
            UniqueConstraint(fields=("organization_id", "name"), name="cost_sources_name_unique"),
            CheckConstraint(check="btrim(name) <> '' AND btrim(bucket) <> ''", name="cost_sources_named"),
            enum_check("cost_sources", "kind", CostSourceKind),
            enum_check("cost_sources", "state", CostSourceState),
        )


@dataclass(frozen=True)
class Credentials:
    """An S3 access key: used only to reach the store, never shown or logged."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:
        return "Credentials(…)"


def _sealer(settings: Settings):
    return sealing.fernet(settings, _SEAL_LABEL)


def credentials_of(settings: Settings, source: CostSource) -> Credentials:
    """The source's credentials; refused as unreadable when they cannot be unsealed (the
    server's key changed): the owner enters them again."""
    value = sealing.unseal(_sealer(settings), source.credentials)
    if value is None:
        raise CostSourceUnreadable(
            "The source's credentials cannot be read with this server's key; enter them again.",
            SourceProblem.ACCESS_DENIED, field="accessKeyId",
        )
    return Credentials(value["access_key_id"], value["secret_access_key"])


def visible_sources(principal):
    """An organization's sources are its MSP users'; a customer sees none."""
    if not principal.is_msp_user:
        return CostSource.filter(id__in=[])
    return CostSource.filter(organization_id=principal.organization_id)


# --------------------------------------------------------------------------- writes

EndpointCheck = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class SourceInput:
    """What a create or update gives (None: unchanged on update)."""

    name: str | None = None
    kind: CostSourceKind | None = None
    location: str | None = None
    region: str | None = None
    endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    # The managed account whose own integration the source is (create only; None: the MSP's).
    account_id: UUID | None = None


def parse_location(location: str) -> tuple[str, str]:
    """`s3://bucket/prefix` as its bucket and prefix (without slashes around it)."""
    parts = urlsplit(location.strip())
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValidationFailed("Give the location as s3://bucket/prefix.", field="location")
    if not _BUCKET.match(parts.netloc):
        raise ValidationFailed("The bucket name is not a valid S3 bucket name.", field="location")
    return parts.netloc, parts.path.strip("/")


def _endpoint(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        raise ValidationFailed("Give the endpoint as https://host[:port] without credentials.", field="endpoint")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValidationFailed("Give the endpoint as https://host[:port] alone, without a path.", field="endpoint")
    return f"{parts.scheme}://{parts.netloc}"


def _columns(data: SourceInput, current: dict[str, Any], settings: Settings) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    if data.name is not None:
        if not data.name.strip() or len(data.name) > 255:
            raise ValidationFailed("Give the source a name of 1 to 255 characters.", field="name")
        columns["name"] = data.name.strip()
    if data.kind is not None:
        columns["kind"] = data.kind
    kind = columns.get("kind", current.get("kind"))
    if kind not in AVAILABLE_KINDS:
        raise ValidationFailed(
            f"{CostSourceKind(kind).value} sources are not yet available; use AWS_S3 or S3_COMPATIBLE.", field="kind"
        )
    if data.location is not None:
        columns["bucket"], columns["prefix"] = parse_location(data.location)
    if data.region is not None:
        if data.region and not _REGION.match(data.region):
            raise ValidationFailed("The region is not a region name (such as eu-west-1).", field="region")
        columns["region"] = data.region
    if data.endpoint is not None:
        columns["endpoint"] = _endpoint(data.endpoint) if data.endpoint.strip() else ""
    endpoint = columns.get("endpoint", current.get("endpoint", ""))
    region = columns.get("region", current.get("region", ""))
    if kind == CostSourceKind.AWS_S3:
        if endpoint:
            raise ValidationFailed("An AWS_S3 source reaches AWS itself: give its region, not an endpoint.", field="endpoint")
        if not region:
            raise ValidationFailed("Give the bucket's region (such as eu-west-1).", field="region")
    elif not endpoint:
        raise ValidationFailed("Give the S3-compatible store's endpoint (https://host).", field="endpoint")
    if (data.access_key_id is None) != (data.secret_access_key is None):
        raise ValidationFailed("Give the access key id and its secret together.", field="secretAccessKey")
    if data.access_key_id is not None and data.secret_access_key is not None:
        key_id, secret = data.access_key_id.strip(), data.secret_access_key.strip()
        if not key_id or not secret or len(key_id) > 128 or len(secret) > 256:
            raise ValidationFailed("Give an access key id and its secret.", field="accessKeyId")
        columns["credentials"] = sealing.seal(_sealer(settings), {"access_key_id": key_id, "secret_access_key": secret})
        columns["key_hint"] = f"…{key_id[-4:]}"
    return columns


async def create_source(principal, settings: Settings, data: SourceInput, check_endpoint: EndpointCheck) -> CostSource:
    """A new source of the principal's organization. `check_endpoint` refuses a custom
    endpoint that resolves to an address the server may not reach (`infra.object_stores`)."""
    for name in ("name", "kind", "location", "access_key_id"):
        if getattr(data, name) is None:
            raise ValidationFailed("This is required.", field=_camel(name))
    columns = _columns(data, {}, settings)
    if columns.get("endpoint"):
        await check_endpoint(columns["endpoint"])
    async with in_transaction() as connection:
        if data.account_id is not None:
            if not await ManagedAccount.filter(
                id=data.account_id, organization_id=principal.organization_id
            ).using_db(connection).exists():
                raise NotFound("The managed account does not exist.", field="accountId")
            columns["managed_account_id"] = data.account_id
        await _name_free(principal.organization_id, columns["name"], None, connection)
        return await CostSource.create(organization_id=principal.organization_id, using_db=connection, **columns)


async def update_source(principal, settings: Settings, source_id, data: SourceInput, check_endpoint: EndpointCheck) -> CostSource:
    """Change a source; only what is given changes. New credentials or a new location make
    it NEW again (its last error was about the old ones)."""
    async with in_transaction() as connection:
        source = await _owned(principal, source_id, connection)
        current = {"kind": source.kind, "endpoint": source.endpoint, "region": source.region}
        columns = _columns(data, current, settings)
        if columns.get("endpoint"):
            await check_endpoint(columns["endpoint"])
        if "name" in columns:
            await _name_free(principal.organization_id, columns["name"], source.id, connection)
        if {"credentials", "bucket", "endpoint", "region", "kind"} & columns.keys():
            columns.update(state=CostSourceState.NEW, last_error=None, failures=0)
        if columns:
            await CostSource.filter(id=source.id).using_db(connection).update(**columns, updated_at=datetime.now(UTC))
        await source.refresh_from_db(using_db=connection)
        return source


async def delete_source(principal, source_id) -> None:
    """Delete a source; the imports it made, and their costs, stay."""
    async with in_transaction() as connection:
        source = await _owned(principal, source_id, connection)
        await source.delete(using_db=connection)


async def owned_source(principal, source_id) -> CostSource:
    source = await visible_sources(principal).filter(id=source_id).first() if source_id else None
    if source is None:
        raise NotFound("The cost source does not exist.", field="id")
    return source


async def _owned(principal, source_id, connection) -> CostSource:
    source = (
        await visible_sources(principal).filter(id=source_id).select_for_update().using_db(connection).first()
        if source_id else None
    )
    if source is None:
        raise NotFound("The cost source does not exist.", field="id")
    return source


async def _name_free(organization_id, name: str, own_id, connection) -> None:
    query = CostSource.filter(organization_id=organization_id, name=name).using_db(connection)
    if own_id is not None:
        query = query.exclude(id=own_id)
    if await query.exists():
        raise ValidationFailed("Another cost source has this name.", field="name", code=ErrorCode.CONFLICT)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class StoredObject:
    """An object of a listing: its key, ETag, size and when it was written."""

    key: str
    etag: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class Delivery:
    """A delivery found: the manifest of one export's billing period, its latest run."""

    export: str
    period: str  # "2025-10"
    manifest: StoredObject


def discover(listing: Iterable[StoredObject]) -> list[Delivery]:
    """The latest manifest of each export and billing period, by period then export."""
    latest: dict[tuple[str, str], Delivery] = {}
    for stored in listing:
        found = _MANIFEST.search(stored.key)
        if not found:
            continue
        export = stored.key[: found.start("export")] + found["export"]
        delivery = Delivery(export, found["period"], stored)
        current = latest.get((export, found["period"]))
        if current is None or (stored.modified, stored.key) > (current.manifest.modified, current.manifest.key):
            latest[(export, found["period"])] = delivery
    return sorted(latest.values(), key=lambda delivery: (delivery.period, delivery.export))


async def already_taken(source: CostSource, delivery: Delivery) -> bool:
    """Whether the manifest, as it is (key and ETag), was imported (or is being imported, or
    was refused: the same bytes would be refused again). One stopped by an internal error is
    taken again."""
    return await CostImport.filter(
        Q(state__not=CostImportState.FAILED) | Q(error_message__not=INTERNAL_ERROR),
        cost_source_id=source.id, source_key=delivery.manifest.key, source_etag=delivery.manifest.etag,
    ).exists()


@dataclass(frozen=True)
class MonthFound:
    """What a source holds for one billing month: its deliveries (one per export), how many
    of them are imported as they are, and when the latest was written."""

    period: date
    deliveries: int
    imported: int
    latest_at: datetime


async def months_found(source: CostSource, deliveries: list[Delivery]) -> list[MonthFound]:
    """The deliveries found, per billing month, oldest first."""
    taken = set(await CostImport.filter(cost_source_id=source.id).values_list("source_key", "source_etag"))
    months: dict[str, list[Delivery]] = {}
    for delivery in deliveries:
        months.setdefault(delivery.period, []).append(delivery)
    return [
        MonthFound(
            date.fromisoformat(f"{period}-01"), len(found),
            sum((delivery.manifest.key, delivery.manifest.etag) in taken for delivery in found),
            max(delivery.manifest.modified for delivery in found),
        )
        for period, found in sorted(months.items())
    ]


def object_key(data_file: str, bucket: str) -> str | None:
    """The object key a manifest's data file names (an S3 URI of the source's bucket); None
    for a file of another bucket."""
    parts = urlsplit(data_file)
    if parts.scheme == "s3":
        return parts.path.lstrip("/") if parts.netloc == bucket else None
    return data_file.lstrip("/")


def missing_parts(keys: Iterable[str | None], listing: Iterable[StoredObject]) -> list[str]:
    """The data files a manifest names that are not (yet) in the listing."""
    present = {stored.key for stored in listing}
    return [key or "(another bucket)" for key in keys if key is None or key not in present]


# --------------------------------------------------------------------------- sync outcomes


async def record_sync(source_id, *, state: CostSourceState, error: str | None = None,
                      newest: Delivery | None = None) -> None:
    """What a sync found: its state, the error of a failure (None clears it), the newest
    delivery; a failure adds one to the failures in a row, anything else ends them."""
    columns: dict[str, Any] = {
        "state": state, "last_sync_at": datetime.now(UTC), "last_error": error,
        "failures": F("failures") + 1 if state == CostSourceState.FAILING else 0,
    }
    if newest is not None:
        columns.update(last_delivery_key=newest.manifest.key[:1024], last_delivery_at=newest.manifest.modified)
    await CostSource.filter(id=source_id).update(**columns)


def newest(deliveries: Iterable[Delivery]) -> Delivery | None:
    return max(deliveries, key=lambda delivery: delivery.manifest.modified, default=None)


def imports_of(source: CostSource):
    """The imports a source made, newest first."""
    return CostImport.filter(cost_source_id=source.id).order_by("-created_at")


def sync_wait(state: CostSourceState, failures: int, every_hours: float, retry_minutes: float) -> timedelta:
    """How long after its last sync a source is synced again: `every_hours` when it was read;
    `retry_minutes` when a delivery was still being written; after a failure `retry_minutes`,
    doubling with each failure in a row, never longer than `every_hours`."""
    every = timedelta(hours=every_hours)
    if state == CostSourceState.WAITING:
        return min(timedelta(minutes=retry_minutes), every)
    if state == CostSourceState.FAILING:
        return min(timedelta(minutes=retry_minutes) * 2 ** min(max(failures - 1, 0), 20), every)
    return every


async def due_sources(now: datetime, every_hours: float, retry_minutes: float) -> list[UUID]:
    """The sources due for a sync (`sync_wait` after their last one, or never synced), each
    on its organization's interval (`every_hours` where it set none)."""
    rows = await CostSource.filter(kind__in=AVAILABLE_KINDS).values_list(
        "id", "last_sync_at", "state", "failures", "organization__cost_sync_hours"
    )
    return [
        source_id for source_id, synced, state, failures, own_hours in rows
        if synced is None
        or now - synced >= sync_wait(CostSourceState(state), failures, own_hours or every_hours, retry_minutes)
    ]


__all__ = [
    "AVAILABLE_KINDS", "CostImportState", "CostSource", "CostSourceKind", "CostSourceState", "CostSourceUnreadable",
    "Credentials", "Delivery", "SourceInput", "SourceProblem", "StoredObject", "credentials_of", "create_source",
    "delete_source", "discover", "missing_parts", "object_key", "owned_source", "record_sync", "update_source",
    "visible_sources",
]
