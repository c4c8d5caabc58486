"""Relay `Node` plumbing: every `node`/`nodes` lookup goes through a scoped query."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from graphql import GraphQLError
from strawberry.relay import GlobalID

from models.auth import Principal
from models.errors import NotFound


async def scoped_nodes(
    node_type: Any,
    info,
    node_ids: Iterable[str],
    required: bool,
    visible: Callable[[Principal], Any],
    is_key: Callable[[str], bool] | None = None,
) -> list[Any]:
    """Objects of `visible(principal)` in the order of `node_ids`. An id the viewer may not
    see answers None (or NOT_FOUND when required), exactly like an id that does not exist.
    `is_key` tells which ids can be primary keys of the table (default: UUIDs)."""
    ids = list(node_ids)
    principal = info.context.principal
    rows: dict[str, Any] = {}
    if principal is not None and ids:
        valid = [i for i in ids if (is_key or _is_uuid)(i)]
        rows = {str(row.id): row for row in await visible(principal).filter(id__in=valid)}
    if required and any(i not in rows for i in ids):
        raise GraphQLError("Not found.", extensions={"code": "NOT_FOUND"})
    return [node_type.from_model(rows[i]) if i in rows else None for i in ids]


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def node_uuid(global_id: str | None, type_name: str) -> UUID | None:
    """The database id inside a global id of `type_name`. A malformed id or one of another
    type reads as not found, like an id that does not exist."""
    if global_id is None:
        return None
    try:
        gid = GlobalID.from_id(global_id)
        if gid.type_name != type_name:
            raise ValueError(gid.type_name)
        return UUID(gid.node_id)
    except ValueError:
        raise NotFound(f"No {type_name} with id {global_id}.", field="id") from None
