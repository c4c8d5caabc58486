"""Cost sources: the buckets where an organization's cloud cost exports land, read by a
scheduled sync (the reading itself is `infra.object_stores`; the sync is `jobs.cost_sources`).

A source's credentials are sealed at rest (`models.sealing`) under a label of their own and never
leave this module but to the one place that reaches object stores; the API shows a hint only.

Discovery is decided here from a listing of the source's objects. An AWS Data Exports delivery is
its manifest (`<export>/metadata/BILLING_PERIOD=YYYY-MM/[<run>/]<export>-Manifest.json`, written
once all its data files are); an Azure Cost Management one is its run's manifest
(`<export>/<YYYYMMDD-YYYYMMDD>/<run id>/manifest.json`); each the latest of its export and billing
period. A manifest already imported under the same key and ETag is skipped without reading
anything; one naming a data file not there yet is a delivery still being written, left for the
next sync. Exports without a manifest (Google Cloud's from BigQuery, OCI's reports copied into
months) are a set of files in a billing month's folder (`BILLING_PERIOD=YYYY-MM/`, not an AWS
export's `data/` one), known by their names and ETags together, and taken once none of them
changed for COST_SOURCE_QUIET_MINUTES (a set still being written changes)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
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
_AZURE_MANIFEST = re.compile(
    r"(^|/)(?P<export>[^/]*)/(?P<year>\d{4})(?P<month>\d{2})\d{2}-\d{8}/[^/]+/manifest\.json$", re.I
)
# A month's folder of files without a manifest (Google Cloud's exports), and the files taken from it.
_MONTH_FOLDER = re.compile(r"(^|/)BILLING_PERIOD=(?P<period>\d{4}-\d{2})/(?P<name>[^/]+)$")
_AWS_DATA = re.compile(r"(^|/)data/BILLING_PERIOD=[^/]+/[^/]+$")
_DATA_FILE = re.compile(r"\.(csv|csv\.gz|gz|parquet)$", re.I)
# Azure storage account names: 3 to 24 lower-case letters and digits; containers as S3 buckets, no dots.
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
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


# The kinds a source can be made of.
AVAILABLE_KINDS = tuple(CostSourceKind)
_S3_KINDS = (CostSourceKind.AWS_S3, CostSourceKind.S3_COMPATIBLE)


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
    # The Azure storage account holding the container (empty for the other kinds).
    account = fields.CharField(max_length=64, default="", db_default="")
    # The credentials (`Credentials`), sealed (`seal_credentials`); only `key_hint` is ever shown.
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
    """What reaches the store, one kind of it set: S3's access key and/or a role to assume
    (with its external id), Azure's SAS token, service principal or account key, or a
    Google service account's key (its JSON). Used only to reach the store, never shown or logged."""

    access_key_id: str = ""
    secret_access_key: str = ""
    role_arn: str = ""
    external_id: str = ""
    sas_token: str = ""
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = ""
    account_key: str = ""
    service_account_key: str = ""

    def __repr__(self) -> str:
        return "Credentials(…)"


_CREDENTIAL_FIELDS = tuple(field.name for field in dataclass_fields(Credentials))
# The input field an error about a kind's credentials points at.
CREDENTIAL_FIELD = {
    CostSourceKind.AWS_S3: "accessKeyId", CostSourceKind.S3_COMPATIBLE: "accessKeyId",
    CostSourceKind.AZURE_BLOB: "sasToken", CostSourceKind.GCS: "serviceAccountKey",
}


def _sealer(settings: Settings):
    return sealing.fernet(settings, _SEAL_LABEL)


def credentials_of(settings: Settings, source: CostSource) -> Credentials:
    """The source's credentials; refused as unreadable when they cannot be unsealed (the
    server's key changed): the owner enters them again."""
    value = sealing.unseal(_sealer(settings), source.credentials)
    if value is None:
        raise CostSourceUnreadable(
            "The source's credentials cannot be read with this server's key; enter them again.",
            SourceProblem.ACCESS_DENIED, field=CREDENTIAL_FIELD[source.kind],
        )
    return Credentials(**{name: str(value[name]) for name in _CREDENTIAL_FIELDS if value.get(name)})


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
    role_arn: str | None = None
    external_id: str | None = None
    sas_token: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    account_key: str | None = None
    service_account_key: str | None = None
    # The managed account whose own integration the source is (create only; None: the MSP's).
    account_id: UUID | None = None

    def credentials_given(self) -> bool:
        return any(getattr(self, name) is not None for name in _CREDENTIAL_FIELDS)


_LOCATION_FORMS = {
    CostSourceKind.AWS_S3: "s3://bucket/prefix",
    CostSourceKind.S3_COMPATIBLE: "s3://bucket/prefix",
    CostSourceKind.AZURE_BLOB: "az://account.blob.core.windows.net/container/prefix (or "
    "abfss://container@account.dfs.core.windows.net/prefix)",
    CostSourceKind.GCS: "gs://bucket/prefix",
}


def parse_location(location: str, kind: CostSourceKind = CostSourceKind.AWS_S3) -> tuple[str, str, str]:
    """The location as its bucket (or container), prefix (without slashes around it) and
    Azure storage account (empty for the other kinds): `s3://bucket/prefix`,
    `az://<account>.blob.core.windows.net/<container>/<prefix>` or
    `abfs[s]://<container>@<account>.dfs.core.windows.net/<prefix>`, `gs://bucket/prefix`."""
    parts = urlsplit(location.strip())
    refused = ValidationFailed(f"Give the location as {_LOCATION_FORMS[kind]}.", field="location")
    if not parts.netloc or parts.query or parts.fragment or parts.password:
        raise refused
    account = ""
    if kind in _S3_KINDS:
        if parts.scheme != "s3":
            raise refused
        bucket, prefix = parts.netloc, parts.path
        if not _BUCKET.match(bucket):
            raise ValidationFailed("The bucket name is not a valid S3 bucket name.", field="location")
    elif kind == CostSourceKind.GCS:
        if parts.scheme != "gs":
            raise refused
        bucket, prefix = parts.netloc, parts.path
        if not _GCS_BUCKET.match(bucket):
            raise ValidationFailed("The bucket name is not a valid Cloud Storage bucket name.", field="location")
    else:
        host = (parts.hostname or "").lower()
        if parts.scheme == "az" and host.endswith(".blob.core.windows.net") and not parts.username:
            account = host.removesuffix(".blob.core.windows.net")
            bucket, _, prefix = parts.path.lstrip("/").partition("/")
        elif parts.scheme in ("abfs", "abfss") and host.endswith(".dfs.core.windows.net") and parts.username:
            account, bucket, prefix = host.removesuffix(".dfs.core.windows.net"), parts.username, parts.path
        else:
            raise refused
        if not _ACCOUNT.match(account) or not _CONTAINER.match(bucket):
            raise ValidationFailed("The storage account or container name is not valid.", field="location")
    return bucket, prefix.strip("/"), account


def location_of(source: CostSource) -> str:
    """The source's location as it is given (`parse_location`'s forms)."""
    if source.kind == CostSourceKind.AZURE_BLOB:
        found = f"az://{source.account}.blob.core.windows.net/{source.bucket}/{source.prefix}"
    else:
        found = f"{'gs' if source.kind == CostSourceKind.GCS else 's3'}://{source.bucket}/{source.prefix}"
    return found.rstrip("/")


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
    kind = CostSourceKind(columns.get("kind", current.get("kind")))
    if data.location is not None:
        columns["bucket"], columns["prefix"], columns["account"] = parse_location(data.location, kind)
    elif "kind" in columns and kind != current.get("kind"):
        raise ValidationFailed("Give the location of the new kind of store.", field="location")
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
    elif kind == CostSourceKind.S3_COMPATIBLE and not endpoint:
        raise ValidationFailed("Give the S3-compatible store's endpoint (https://host).", field="endpoint")
    if data.credentials_given():
        credentials = _credentials(kind, data)
        columns["credentials"] = sealing.seal(
            _sealer(settings), {name: value for name, value in vars(credentials).items() if value}
        )
        columns["key_hint"] = _hint(credentials)
    elif "kind" in columns and kind != current.get("kind"):
        raise ValidationFailed("Give the credentials of the new kind of store.", field="kind")
    return columns


def _given(data: SourceInput, *names: str) -> dict[str, str]:
    return {name: (getattr(data, name) or "").strip() for name in names if getattr(data, name) is not None}


def _credentials(kind: CostSourceKind, data: SourceInput) -> Credentials:
    """The credentials given, checked against the kind of store: each kind takes its own and
    no other, each part within bounds."""
    allowed = {
        CostSourceKind.AWS_S3: ("access_key_id", "secret_access_key", "role_arn", "external_id"),
        CostSourceKind.S3_COMPATIBLE: ("access_key_id", "secret_access_key"),
        CostSourceKind.AZURE_BLOB: ("sas_token", "tenant_id", "client_id", "client_secret", "account_key"),
        CostSourceKind.GCS: ("service_account_key",),
    }[kind]
    foreign = [name for name in _CREDENTIAL_FIELDS if getattr(data, name) is not None and name not in allowed]
    if foreign:
        raise ValidationFailed(f"A {kind.value} source does not take {_camel(foreign[0])}.", field=_camel(foreign[0]))
    given = _given(data, *allowed)
    for name, value in given.items():
        if len(value) > (8192 if name == "service_account_key" else 2048):
            raise ValidationFailed("This is longer than such a credential can be.", field=_camel(name))
    if kind in _S3_KINDS:
        return _s3_credentials(given)
    if kind == CostSourceKind.AZURE_BLOB:
        return _azure_credentials(given)
    return _gcs_credentials(given)


def _s3_credentials(given: dict[str, str]) -> Credentials:
    key_id, secret = given.get("access_key_id", ""), given.get("secret_access_key", "")
    if bool(key_id) != bool(secret):
        raise ValidationFailed("Give the access key id and its secret together.", field="secretAccessKey")
    role, external_id = given.get("role_arn", ""), given.get("external_id", "")
    if not key_id and not role:
        raise ValidationFailed("Give an access key id and its secret, or a role to assume.", field="accessKeyId")
    if role and not _ROLE_ARN.match(role):
        raise ValidationFailed("Give the role as arn:aws:iam::<account>:role/<name>.", field="roleArn")
    if external_id and not role:
        raise ValidationFailed("An external id goes with a role to assume.", field="externalId")
    if external_id and not re.fullmatch(r"[\w+=,.@:/-]{2,1224}", external_id):
        raise ValidationFailed("The external id holds characters AWS does not take.", field="externalId")
    return Credentials(access_key_id=key_id, secret_access_key=secret, role_arn=role, external_id=external_id)


def _azure_credentials(given: dict[str, str]) -> Credentials:
    principal = {name: given.get(name, "") for name in ("tenant_id", "client_id", "client_secret")}
    ways = [bool(given.get("sas_token")), any(principal.values()), bool(given.get("account_key"))]
    if sum(ways) != 1:
        raise ValidationFailed(
            "Give one of: a SAS token, a service principal (tenant id, client id and secret), or the account key.",
            field="sasToken",
        )
    if any(principal.values()) and not all(principal.values()):
        missing = next(name for name, value in principal.items() if not value)
        raise ValidationFailed("Give the service principal's tenant id, client id and secret together.",
                               field=_camel(missing))
    return Credentials(sas_token=given.get("sas_token", "").lstrip("?"), account_key=given.get("account_key", ""),
                       **principal)


def _gcs_credentials(given: dict[str, str]) -> Credentials:
    refused = ValidationFailed(
        "Give the service account's key as the JSON file Google Cloud made for it (type service_account, "
        "with its client_email and private_key).", field="serviceAccountKey",
    )
    try:
        key = json.loads(given.get("service_account_key", ""))
    except ValueError:
        raise refused from None
    if not isinstance(key, dict) or key.get("type") != "service_account" or not all(
        isinstance(key.get(name), str) and key[name] for name in ("client_email", "private_key")
    ):
        raise refused
    # Only what identifies the account is kept: a key's other fields (a base URL, a switch that
    # turns signing off) would send the credentials, or the requests, elsewhere.
    kept = {name: key[name] for name in ("type", "project_id", "private_key_id", "private_key", "client_email")
            if isinstance(key.get(name), str)}
    return Credentials(service_account_key=json.dumps(kept))


def _hint(credentials: Credentials) -> str:
    """What tells the credentials apart without giving any secret away."""
    if credentials.access_key_id:
        return f"…{credentials.access_key_id[-4:]}"
    if credentials.role_arn:
        return f"role …{credentials.role_arn[-9:]}"
    if credentials.sas_token:
        return "SAS token"
    if credentials.client_id:
        return f"app …{credentials.client_id[-4:]}"
    if credentials.account_key:
        return "account key"
    return f"…{json.loads(credentials.service_account_key)['client_email'].split('@')[0][-15:]}"


async def create_source(principal, settings: Settings, data: SourceInput, check_endpoint: EndpointCheck) -> CostSource:
    """A new source of the principal's organization. `check_endpoint` refuses a custom
    endpoint that resolves to an address the server may not reach (`infra.object_stores`)."""
    for name in ("name", "kind", "location"):
        if getattr(data, name) is None:
            raise ValidationFailed("This is required.", field=_camel(name))
    if not data.credentials_given():
        raise ValidationFailed("Give the credentials that reach the store.", field=CREDENTIAL_FIELD[CostSourceKind(data.kind)])
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
        if {"credentials", "bucket", "prefix", "account", "endpoint", "region", "kind"} & columns.keys():
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
    """A delivery found: the manifest of one export's billing period, its latest run; or, for
    a store without manifests, the files of a billing month's folder (`parts`), its `manifest`
    then standing for the set: the folder's key, an ETag of the files' names and ETags, their
    bytes and the newest one's time."""

    export: str
    period: str  # "2025-10"
    manifest: StoredObject
    parts: tuple[StoredObject, ...] = ()


def discover(listing: Iterable[StoredObject]) -> list[Delivery]:
    """The deliveries of a listing, by period then export: the latest manifest of each export
    and billing period (AWS's, Azure's), and the files of each `BILLING_PERIOD=YYYY-MM/` folder
    that is not an AWS export's data folder (its manifest says which of them count)."""
    listing = list(listing)
    latest: dict[tuple[str, str], Delivery] = {}
    for stored in listing:
        found = _MANIFEST.search(stored.key)
        azure = None if found else _AZURE_MANIFEST.search(stored.key)
        if azure:
            found, period = azure, f"{azure['year']}-{azure['month']}"
        elif found:
            period = found["period"]
        else:
            continue
        export = stored.key[: found.start("export")] + found["export"]
        delivery = Delivery(export, period, stored)
        current = latest.get((export, period))
        if current is None or (stored.modified, stored.key) > (current.manifest.modified, current.manifest.key):
            latest[(export, period)] = delivery
    return sorted([*latest.values(), *_file_sets(listing)], key=lambda delivery: (delivery.period, delivery.export))


def _file_sets(listing: Iterable[StoredObject]) -> list[Delivery]:
    folders: dict[str, list[StoredObject]] = {}
    for stored in listing:
        found = _MONTH_FOLDER.search(stored.key)
        if found and _DATA_FILE.search(found["name"]) and stored.size > 0 and not _AWS_DATA.search(stored.key):
            folders.setdefault(stored.key[: found.start("name")], []).append(stored)
    deliveries = []
    for folder, files in folders.items():
        files.sort(key=lambda stored: stored.key)
        digest = hashlib.sha256("\n".join(f"{stored.key}\t{stored.etag}" for stored in files).encode()).hexdigest()
        found = _MONTH_FOLDER.search(files[0].key)
        assert found is not None  # each file was put in its folder by this match
        stands_for = StoredObject(folder, digest[:32], sum(stored.size for stored in files),
                                  max(stored.modified for stored in files))
        deliveries.append(Delivery(folder[: found.start("period")].removesuffix("BILLING_PERIOD=").rstrip("/"),
                                   found["period"], stands_for, tuple(files)))
    return sorted(deliveries, key=lambda delivery: (delivery.period, delivery.export))


def still_written(delivery: Delivery, now: datetime, quiet_minutes: float) -> bool:
    """Whether a set of files without a manifest may still be being written: one of them was
    written less than `quiet_minutes` ago (an export writes its files one after the other)."""
    return bool(delivery.parts) and now - delivery.manifest.modified < timedelta(minutes=quiet_minutes)


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
    "AVAILABLE_KINDS", "CREDENTIAL_FIELD", "CostImportState", "CostSource", "CostSourceKind", "CostSourceState", "CostSourceUnreadable",
    "Credentials", "Delivery", "SourceInput", "SourceProblem", "StoredObject", "credentials_of", "create_source",
    "delete_source", "discover", "location_of", "missing_parts", "object_key", "owned_source", "record_sync",
    "still_written", "update_source", "visible_sources",
]
