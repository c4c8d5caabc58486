"""Relay `Node` plumbing: every `node`/`nodes` lookup goes through a scoped query."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

from graphql import GraphQLError
from strawberry.relay import GlobalID, GlobalIDValueError, Node
from strawberry.types.base import StrawberryObjectDefinition, get_object_definition
from strawberry.utils.await_maybe import await_maybe

from models.auth import Principal
from models.errors import NotFound, RequestErrorCode


async def scoped_nodes(
    node_type: Any,
    info,
    node_ids: Iterable[str],
    required: bool,
    visible: Callable[[Principal], Any],
    is_key: Callable[[str], object] | None = None,
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
        raise GraphQLError("Not found.", extensions={"code": RequestErrorCode.NOT_FOUND.value})
    return [node_type.from_model(rows[i]) if i in rows else None for i in ids]


async def resolve_global_ids(info, global_ids: Sequence[str]) -> list[Any]:
    """`nodes(ids:)`: one answer per id, in order. An id that is malformed, names no Node
    type, does not exist or may not be seen answers None, all alike. Ids are grouped by type,
    and each type resolves its group with one scoped query (`resolve_nodes`)."""
    cap = info.context.settings.max_page_size
    if len(global_ids) > cap:
        raise GraphQLError(f"At most {cap} ids at once.", extensions={"code": RequestErrorCode.BAD_USER_INPUT.value})
    wanted: dict[type[Node], list[str]] = {}
    parsed = [_parse(info, global_id) for global_id in global_ids]
    for found in parsed:
        if found is not None:
            wanted.setdefault(found[0], []).append(found[1])
    answers = await asyncio.gather(*(
        await_maybe(node_type.resolve_nodes(info=info, node_ids=node_ids, required=False))
        for node_type, node_ids in wanted.items()
    ))
    nodes = {
        (node_type, node_id): node
        for (node_type, node_ids), found in zip(wanted.items(), answers)
        for node_id, node in zip(node_ids, found)
    }
    return [nodes.get(found) if found is not None else None for found in parsed]


def _parse(info, global_id: str) -> tuple[type[Node], str] | None:
    """The concrete Node type and database id a global id names; None when it names none."""
    try:
        gid = GlobalID.from_id(global_id)
        node_type = gid.resolve_type(info)
    except GlobalIDValueError:
        return None
    # The `Node` interface itself resolves too, but has no rows of its own.
    if get_object_definition(node_type, strict=True).is_interface:
        return None
    return node_type, gid.node_id


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def node_uuid(global_id: str | None, type_name: str, field: str = "id") -> UUID | None:
    """The database id inside a global id of `type_name` (None for None). A malformed id, or
    one of another type, reads as not found, like an id that does not exist, and names the
    input `field` that held it."""
    if global_id is None:
        return None
    try:
        gid = GlobalID.from_id(global_id)
        if gid.type_name != type_name:
            raise ValueError(gid.type_name)
        return UUID(gid.node_id)
    except ValueError:
        raise NotFound(f"No {type_name} with id {global_id}.", field=field) from None


def node_uuid_or_none(global_id: str, type_name: str) -> UUID | None:
    """As `node_uuid`, but None for an id that cannot name a `type_name`."""
    try:
        return node_uuid(global_id, type_name)
    except NotFound:
        return None


def filter_uuids(global_ids: Iterable[str] | None, type_name: str) -> list[UUID] | None:
    """The database ids of a filter's global ids (None: no such filter). An id that cannot
    name a `type_name` matches nothing, so it is left out."""
    if global_ids is None:
        return None
    return [uuid for uuid in (node_uuid_or_none(gid, type_name) for gid in global_ids) if uuid]


def schema_type(info, name: str) -> Any:
    """The class of the object type `name` in the schema answering the request. A type that
    refers back to one above it (an account's invoices, an invoice's credit notes) names it,
    as its field's `strawberry.lazy` annotation does, instead of importing its module, which
    imports this type's."""
    definition = info.schema.get_type_by_name(name)
    assert isinstance(definition, StrawberryObjectDefinition), name
    return definition.origin
