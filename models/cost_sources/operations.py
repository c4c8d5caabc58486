"""Creating, changing and deleting an organization's cost sources, and loading one it owns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from tortoise.transactions import in_transaction

from infra.settings import Settings
from models.audit import AuditEntity, record_change, snapshot
from models.cost_sources.credentials import (
    CREDENTIAL_FIELD,
    CREDENTIAL_FIELDS,
    checked_credentials,
    key_hint,
    seal_credentials,
)
from models.cost_sources.locations import check_reach, parse_endpoint, parse_location, parse_region
from models.cost_sources.tables import CostSource, CostSourceKind, CostSourceState, visible_sources
from models.errors import ErrorCode, NotFound, ValidationFailed
from models.managed_accounts import ManagedAccount
from models.text import camel

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

    def credential_parts(self) -> dict[str, str]:
        """The parts of the credentials given, by their `Credentials` names."""
        return {name: getattr(self, name) for name in CREDENTIAL_FIELDS if getattr(self, name) is not None}

    def credentials_given(self) -> bool:
        return bool(self.credential_parts())


def _columns(data: SourceInput, current: dict[str, Any], settings: Settings) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    if data.name is not None:
        if not data.name.strip() or len(data.name) > 255:
            raise ValidationFailed("Give the source a name of 1 to 255 characters.", field="name")
        columns["name"] = data.name.strip()
    if data.kind is not None:
        columns["kind"] = data.kind
    kind = CostSourceKind(columns.get("kind", current.get("kind")))
    kind_changed = "kind" in columns and kind != current.get("kind")
    if data.location is not None:
        columns["bucket"], columns["prefix"], columns["account"] = parse_location(data.location, kind)
    elif kind_changed:
        raise ValidationFailed("Give the location of the new kind of store.", field="location")
    if data.region is not None:
        columns["region"] = parse_region(data.region)
    if data.endpoint is not None:
        columns["endpoint"] = parse_endpoint(data.endpoint)
    check_reach(kind, columns.get("endpoint", current.get("endpoint", "")), columns.get("region", current.get("region", "")))
    if data.credentials_given():
        credentials = checked_credentials(kind, data.credential_parts())
        columns["credentials"] = seal_credentials(settings, credentials)
        columns["key_hint"] = key_hint(credentials)
    elif kind_changed:
        raise ValidationFailed("Give the credentials of the new kind of store.", field="kind")
    return columns


async def create_source(principal, settings: Settings, data: SourceInput, check_endpoint: EndpointCheck) -> CostSource:
    """A new source of the principal's organization. `check_endpoint` refuses a custom
    endpoint that resolves to an address the server may not reach (`infra.object_stores`)."""
    for name in ("name", "kind", "location"):
        if getattr(data, name) is None:
            raise ValidationFailed("This is required.", field=camel(name))
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
        source = await CostSource.create(organization_id=principal.organization_id, using_db=connection, **columns)
        await record_change(connection, AuditEntity.COST_SOURCE, source.id, source.organization_id, None, snapshot(source))
        return source


async def update_source(principal, settings: Settings, source_id, data: SourceInput, check_endpoint: EndpointCheck) -> CostSource:
    """Change a source; only what is given changes. New credentials or a new location make
    it NEW again (its last error was about the old ones)."""
    async with in_transaction() as connection:
        source = await _owned(principal, source_id, connection)
        before = snapshot(source)
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
        await record_change(connection, AuditEntity.COST_SOURCE, source.id, source.organization_id, before, snapshot(source))
        return source


async def delete_source(principal, source_id) -> None:
    """Delete a source; the imports it made, and their costs, stay."""
    async with in_transaction() as connection:
        source = await _owned(principal, source_id, connection)
        await source.delete(using_db=connection)
        await record_change(connection, AuditEntity.COST_SOURCE, source.id, source.organization_id, snapshot(source), None)


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
