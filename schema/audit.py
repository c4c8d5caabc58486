"""GraphQL types of the audit log: its entries, their changed fields, the filter and the export."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from models import audit as domain
from schema.core.context import Info
from schema.core.nodes import scoped_nodes
from schema.core.pagination import CountedConnection

AuditEntity = domain.AuditEntity
strawberry.enum(
    AuditEntity,
    name="AuditEntity",
    description="What an audit entry is about: the organization's settings, a billing profile (banking details "
    "included), a billing rule, an exchange rate, a managed account, a user, an invitation, an API token, the Xero "
    "connection or its settings (account codes, tax types, mappings), a cost source, a webhook endpoint.",
)
AuditAction = domain.AuditAction
strawberry.enum(AuditAction, name="AuditAction", description="Whether the row was created, updated or deleted.")


@strawberry.type(description="One field of a change: its value before and after (secrets show as ********).")
class AuditChange:
    field: str = strawberry.field(description="The field, as the database names it (snake_case).")
    before: JSON | None = strawberry.field(description="Its value before; null when it had none (or was created).")
    after: JSON | None = strawberry.field(description="Its value after; null when it has none (or was deleted).")


@strawberry.type(name="AuditEntry", description="A change of a setting, rule, rate, account, user, token or connection.")
class AuditEntry(relay.Node):
    id: relay.NodeID[str]
    at: datetime = strawberry.field(description="When the change was committed.")
    actor: str = strawberry.field(description="Who made it: the user's e-mail then, or `cli` for the command line.")
    actor_user_id: strawberry.ID | None = strawberry.field(description="The user's global id; null for the command line.")
    actor_token_id: strawberry.ID | None = strawberry.field(description="The id of the token the user presented.")
    address: str | None = strawberry.field(description="The request's client address; null for the command line.")
    entity: AuditEntity = strawberry.field(description="What kind of row changed.")
    entity_id: str = strawberry.field(description="Its id (a global id's raw part: the row's UUID).")
    action: AuditAction = strawberry.field(description="Created, updated or deleted.")
    changes: list[AuditChange] = strawberry.field(description="The fields that changed, by name.")

    @classmethod
    def from_model(cls, row: domain.AuditEntry) -> AuditEntry:
        user = row.actor_user_id
        return cls(
            id=str(row.id),
            at=row.at,
            actor=row.actor_label,
            address=row.address,
            entity=row.entity,
            actor_user_id=strawberry.ID(relay.to_base64("User", str(user))) if user else None,
            actor_token_id=strawberry.ID(str(row.actor_token_id)) if row.actor_token_id else None,
            entity_id=row.entity_id,
            action=row.action,
            changes=[AuditChange(field=name, before=c.get("before"), after=c.get("after")) for name, c in sorted(row.changes.items())],
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, domain.visible_entries)


@strawberry.type(description="A page of audit entries.")
class AuditEntryConnection(CountedConnection[AuditEntry]):
    pass


@strawberry.input(description="Which audit entries: every condition given must hold.")
class AuditLogFilter:
    entity: AuditEntity | None = strawberry.field(default=None, description="Of this kind of row.")
    actor: str | None = strawberry.field(
        default=None, description="Made by this user (its global id or e-mail), or `cli` for the command line."
    )
    from_: datetime | None = strawberry.field(name="from", default=None, description="Made at or after this time.")
    to: datetime | None = strawberry.field(default=None, description="Made before this time.")


@strawberry.type(description="The audit log as CSV (one row per changed field) behind a signed link.")
class AuditLogExport:
    url: str = strawberry.field(description="Signed link to the CSV, valid for a few minutes.")
    expires_at: datetime = strawberry.field(description="When the link stops working.")
