"""The audit log: who changed which setting, rule, rate, account, user, token or connection,
when, from where, and each changed field before and after.

A writer calls `record_change` inside the transaction of its change, with a `snapshot` of the
row before and after (None for a row created or deleted): the entry commits or rolls back with
the change. Who acts is `models.actors.current()`, said by the unit of work around the change
(a mutation, a command). Secrets (passwords, tokens, sealed credentials, keys) are masked: the
entry says that they changed, never what they are. Entries cannot be altered or deleted: a
database trigger refuses it (migration 0021), as it does for approved invoices."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any
from uuid import UUID

from tortoise import fields
from tortoise.models import Model

from models.actors import current
from models.base import Scope, enum_check


class AuditEntity(StrEnum):
    """What an entry is about. A new kind of audited row adds its name here (and to the
    check constraint's list, in its migration)."""

    ORGANIZATION = "ORGANIZATION"
    BILLING_PROFILE = "BILLING_PROFILE"
    BILLING_RULE = "BILLING_RULE"
    EXCHANGE_RATE = "EXCHANGE_RATE"
    MANAGED_ACCOUNT = "MANAGED_ACCOUNT"
    USER = "USER"
    INVITATION = "INVITATION"
    API_TOKEN = "API_TOKEN"
    XERO_CONNECTION = "XERO_CONNECTION"
    XERO_SETTINGS = "XERO_SETTINGS"
    COST_SOURCE = "COST_SOURCE"
    WEBHOOK_ENDPOINT = "WEBHOOK_ENDPOINT"
    INVOICE_TEMPLATE = "INVOICE_TEMPLATE"


class AuditAction(StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


MASK = "********"
# A field whose name holds one of these is a secret: its values never reach an entry.
_SECRET_PARTS = ("password", "token", "secret", "credential", "sealed", "refresh", "private_key", "access_key")
# Bookkeeping columns that change with every write and say nothing an auditor asks.
_SKIPPED = ("id", "created_at", "updated_at", "last_used_at", "last_login_at")


class AuditEntry(Model):
    id = fields.UUIDField(primary_key=True)
    # A plain column, not a foreign key: nothing deleted elsewhere may reach an entry.
    organization_id = fields.UUIDField(db_index=True)
    at = fields.DatetimeField(auto_now_add=True)
    actor_user_id = fields.UUIDField(null=True)
    actor_token_id = fields.UUIDField(null=True)
    # The user's e-mail when the change was made, or the part of the system (`cli`).
    actor_label = fields.CharField(max_length=320, default="")
    address = fields.CharField(max_length=64, null=True)
    entity = fields.CharEnumField(AuditEntity, max_length=32)
    entity_id = fields.CharField(max_length=64)
    action = fields.CharEnumField(AuditAction, max_length=16)
    # {field: {"before": value, "after": value}}, secrets masked.
    changes: Any = fields.JSONField(default=dict)

    class Meta:
        table = "audit_entries"
        constraints = (
            enum_check("audit_entries", "entity", AuditEntity),
            enum_check("audit_entries", "action", AuditAction),
        )


def _plain(value: Any) -> Any:
    """A column's value as JSON holds it."""
    if isinstance(value, Enum):
        # By name, as the API names it (an export's date format DAY_FIRST, not DD/MM/YYYY).
        return value.name
    if isinstance(value, Decimal):
        # 10 and 10.0000 are one amount, whether assigned or read back.
        return format(value.normalize(), "f")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        # A file (a logo): which one, not its bytes.
        return f"sha256:{hashlib.sha256(value).hexdigest()[:16]} ({len(value)} bytes)"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def is_secret(name: str) -> bool:
    return any(part in name.lower() for part in _SECRET_PARTS)


def snapshot(row: Model | None, **extra: Any) -> dict[str, Any] | None:
    """The row's columns as an entry compares them (foreign keys by id), with `extra` values
    that live in other tables (a billing profile's charges); None for no row."""
    if row is None:
        return None
    names = [name for name in row._meta.fields_db_projection if name not in _SKIPPED]
    return {**{name: _plain(getattr(row, name, None)) for name in names}, **{k: _plain(v) for k, v in extra.items()}}


def _changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    old, new = before or {}, after or {}
    changed = {}
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        was, now = old.get(name), new.get(name)
        if is_secret(name):
            was, now = (MASK if was not in (None, "") else was), (MASK if now not in (None, "") else now)
        changed[name] = {"before": was, "after": now}
    return changed


async def record_change(
    connection: Any,
    entity: AuditEntity,
    subject_id: Any,
    organization_id: Any,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEntry | None:
    """Log a change of one row, in the transaction (`connection`) that makes it: created
    (`before` None), deleted (`after` None) or updated (only the fields that differ). A
    change that changed nothing is not logged."""
    changes = _changes(before, after)
    if not changes:
        return None
    action = AuditAction.CREATED if before is None else AuditAction.DELETED if after is None else AuditAction.UPDATED
    actor = current()
    return await AuditEntry.create(
        organization_id=organization_id,
        actor_user_id=actor.user_id,
        actor_token_id=actor.token_id,
        actor_label=actor.label[:320],
        address=(actor.address or None) and actor.address[:64],
        entity=entity,
        entity_id=str(subject_id),
        action=action,
        changes=changes,
        using_db=connection,
    )


@dataclass(frozen=True)
class AuditFilter:
    """Which entries: of one kind of entity, by one user (or part of the system, by its
    label), made from `since` (inclusive) until `until` (exclusive)."""

    entity: AuditEntity | None = None
    actor_user_id: Any = None
    actor_label: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def visible_entries(principal: Any, where: AuditFilter | None = None):
    """The organization's entries, for its owners only; none for anyone else."""
    if principal.scope != Scope.OWNER:
        return AuditEntry.filter(id__isnull=True)
    query = AuditEntry.filter(organization_id=principal.organization_id)
    where = where or AuditFilter()
    if where.entity is not None:
        query = query.filter(entity=where.entity)
    if where.actor_user_id is not None:
        query = query.filter(actor_user_id=where.actor_user_id)
    if where.actor_label is not None:
        query = query.filter(actor_label=where.actor_label)
    if where.since is not None:
        query = query.filter(at__gte=where.since)
    if where.until is not None:
        query = query.filter(at__lt=where.until)
    return query


AUDIT_COLUMNS = ("At", "Actor", "ActorUserId", "ActorTokenId", "Address", "Entity", "EntityId", "Action", "Field", "Before", "After")


def audit_rows(entries: list[AuditEntry]) -> list[list[Any]]:
    """One CSV row per changed field of each entry (an entry that changed none: one row)."""
    rows = []
    for entry in entries:
        head = [
            entry.at.isoformat(),
            entry.actor_label,
            entry.actor_user_id or "",
            entry.actor_token_id or "",
            entry.address or "",
            entry.entity.value,
            entry.entity_id,
            entry.action.value,
        ]
        for name, change in sorted(entry.changes.items()) or [("", {})]:
            rows.append([*head, name, _cell(change.get("before")), _cell(change.get("after"))])
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def filter_text(where: AuditFilter) -> str:
    """The filter as a signed link carries it."""
    return json.dumps(
        {
            "entity": where.entity.value if where.entity else None,
            "user": str(where.actor_user_id) if where.actor_user_id else None,
            "label": where.actor_label,
            "since": where.since.isoformat() if where.since else None,
            "until": where.until.isoformat() if where.until else None,
        }
    )


def parse_filter(text: str) -> AuditFilter:
    data = json.loads(text)
    return AuditFilter(
        entity=AuditEntity(data["entity"]) if data["entity"] else None,
        actor_user_id=data["user"],
        actor_label=data["label"],
        since=datetime.fromisoformat(data["since"]) if data["since"] else None,
        until=datetime.fromisoformat(data["until"]) if data["until"] else None,
    )
