"""The cost source table: where an organization's cost exports land, of which kind, in which
state its syncs left it, why it cannot be read; and who sees it."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING
from uuid import UUID

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model

from models.base import TimestampMixin, enum_check
from models.errors import DomainError, ErrorCode

if TYPE_CHECKING:
    from models.managed_accounts import ManagedAccount
    from models.organizations import Organization


class CostSourceKind(str, Enum):
    """Where the deliveries land: AWS S3, another S3-compatible store (OCI, MinIO, Wasabi),
    an Azure blob container or a Google Cloud Storage bucket."""

    AWS_S3 = "AWS_S3"
    AZURE_BLOB = "AZURE_BLOB"
    GCS = "GCS"
    S3_COMPATIBLE = "S3_COMPATIBLE"


# The kinds a source can be made of.
AVAILABLE_KINDS = tuple(CostSourceKind)
S3_KINDS = (CostSourceKind.AWS_S3, CostSourceKind.S3_COMPATIBLE)


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


def visible_sources(principal):
    """An organization's sources are its MSP users'; a customer sees none."""
    if not principal.is_msp_user:
        return CostSource.filter(id__in=[])
    return CostSource.filter(organization_id=principal.organization_id)
