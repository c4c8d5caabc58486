"""The audit log: a page of its entries, and the same entries as CSV behind a signed link."""

from __future__ import annotations

from enum import Enum

import strawberry

from infra import links
from models import audit
from schema.audit import AuditEntry, AuditEntryConnection, AuditLogExport, AuditLogFilter
from schema.core.context import Info
from schema.core.nodes import node_uuid_or_none
from schema.core.pagination import Direction, paginate
from schema.core.permissions import OWNERS, requires


class _Newest(Enum):
    AT = "at"


class _Order:
    """Newest first: the one order of the log."""

    field = _Newest.AT
    direction = Direction.DESC


def _where(filter: AuditLogFilter | None) -> audit.AuditFilter:
    if filter is None:
        return audit.AuditFilter()
    actor = filter.actor.strip() if filter.actor is not None else None
    user_id = node_uuid_or_none(actor, "User") if actor else None
    return audit.AuditFilter(
        entity=filter.entity,
        actor_user_id=user_id,
        actor_label=actor.lower() if actor and user_id is None else None,
        since=filter.from_,
        until=filter.to,
    )


@strawberry.type
class Query:
    @strawberry.field(
        description="Who changed the organization's settings, billing profiles, rules, rates, accounts, users, "
        "invitations, API tokens and connections, when, from where, and each field before and after; newest first.",
        extensions=requires(*OWNERS),
    )
    async def audit_log(
        self,
        info: Info,
        filter: AuditLogFilter | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> AuditEntryConnection:
        query = audit.visible_entries(info.context.authenticated(), _where(filter))
        return await paginate(
            info,
            AuditEntryConnection,
            query,
            AuditEntry.from_model,
            _Order,
            first=first,
            after=after,
            last=last,
            before=before,
        )

    @strawberry.field(
        description="The entries `auditLog` lists with this filter, oldest first, as CSV (one row per changed "
        "field) behind a signed link valid for a few minutes; made when the link is opened.",
        extensions=requires(*OWNERS),
    )
    def audit_log_export(self, info: Info, filter: AuditLogFilter | None = None) -> AuditLogExport:
        where = audit.filter_text(_where(filter))
        link = links.sign(info.context.settings, info.context.authenticated(), "audit", where, "audit-log.csv")
        return AuditLogExport(url=link.url, expires_at=link.expires_at)
