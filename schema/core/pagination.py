"""Relay connections over scoped querysets: `totalCount`, capped pages, stable order.

Cursors are opaque positions in the ordered list (every order ends with the primary key, so
the order is total and a cursor means the same thing on the next request)."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, Generic, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry import relay
from strawberry.relay.utils import from_base64, to_base64
from strawberry.types.nodes import SelectedField, Selection
from tortoise.expressions import Subquery

from models.base import fetch
from models.errors import RequestErrorCode
from schema.core.permissions import requires

NodeType = TypeVar("NodeType", bound=relay.Node)
CURSOR_PREFIX = "cursor"
DEFAULT_PAGE_SIZE = 20


@strawberry.enum(description="Sort direction.")
class Direction(Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.type(description="A page of a list, with the size of the whole list.")
class CountedConnection(relay.Connection[NodeType], Generic[NodeType]):
    total_count: int = strawberry.field(description="How many items the whole list holds.")


# A list's own connection type (`InvoiceConnection`...), which the helpers below return.
ConnectionType = TypeVar("ConnectionType", bound=CountedConnection)


def selected_node_fields(info: Any) -> set[str]:
    """Names of the fields asked of each node of the connection `info` resolves (through
    fragments and aliases), so that a list can load their relations for the whole page."""
    level = [child for connection in _fields(info.selected_fields) for child in connection.selections]
    for name in ("edges", "node"):
        level = [child for field in _fields(level) if field.name == name for child in field.selections]
    return {field.name for field in _fields(level)}


def _fields(selections: list[Selection]):
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        else:
            yield from _fields(selection.selections)


def _bad_input(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": RequestErrorCode.BAD_USER_INPUT.value})


def _offset(cursor: str, name: str) -> int:
    try:
        prefix, value = from_base64(cursor)
        if prefix != CURSOR_PREFIX:
            raise ValueError(prefix)
        return int(value)
    except ValueError:
        raise _bad_input(f"`{name}` is not a cursor of this list.") from None


def _check_size(value: int | None, name: str, cap: int) -> None:
    if value is not None and not 0 <= value <= cap:
        raise _bad_input(f"`{name}` must be between 0 and {cap}.")


def order_fields(field: str, direction: Direction, tiebreak: str = "id") -> list[str]:
    sign = "-" if direction == Direction.DESC else ""
    return [f"{sign}{field}", f"{sign}{tiebreak}"]


async def paginate(
    info: Any,
    connection: type[ConnectionType],
    query: Any,
    to_node: Callable[[Any], Any],
    order: Any,
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> ConnectionType:
    """A page of `query` sorted by `order` (an input with `field` and `direction`), whatever
    the page size. A page by `first`/`after` starts where the cursor says: its rows and the
    size of the list come in one statement (the COUNT as a subquery of the page's, which
    PostgreSQL runs once), and a COUNT of its own follows only when the page is empty past
    the list's start. A page counted from the end (`last`, `before`) needs the count first."""
    max_page_size = info.context.settings.max_page_size
    order_by = order_fields(order.field.value, order.direction)
    _check_size(first, "first", max_page_size)
    _check_size(last, "last", max_page_size)
    if last is None and before is None:
        start, _ = _bounds(_UNBOUNDED, first, after, None, None, max_page_size)
        size = first if first is not None else min(DEFAULT_PAGE_SIZE, max_page_size)
        rows: list = []
        if size:
            counted = query.annotate(**{_LIST_SIZE: Subquery(query.count())})
            rows = await fetch(counted.order_by(*order_by).offset(start).limit(size))
        # The size rides on every row; the rows go on as the query alone makes them.
        total = [row.__dict__.pop(_LIST_SIZE) for row in rows][0] if rows else None
        if total is None:
            total = await query.count() if start or not size else 0
        start, end = _bounds(total, first, after, None, None, max_page_size)
        return _page(connection, rows[:max(end - start, 0)], to_node, start, end, total)
    total = await query.count()
    start, end = _bounds(total, first, after, last, before, max_page_size)
    rows = await fetch(query.order_by(*order_by).offset(start).limit(end - start)) if end > start else []
    return _page(connection, rows, to_node, start, end, total)


def connection_field(
    connection: type[ConnectionType],
    default_order: Any,
    query: Callable[[Any], Any],
    to_node: Callable[[Any], Any],
    *,
    description: str,
    scopes: tuple[Any, ...],
) -> Any:
    """A list field for the viewers of `scopes`, taking what every list of the API takes:
    `first`, `after`, `last`, `before` and `orderBy` (of the type of `default_order`, which
    applies when none is given). It pages `query(principal)`, the viewer's scoped rows, each
    answered as `to_node(row)`."""

    async def resolve(
        info: Any,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        order_by: Any = None,
    ) -> Any:
        rows = query(info.context.authenticated())
        order = order_by or default_order
        return await paginate(info, connection, rows, to_node, order, first=first, after=after, last=last, before=before)

    # Strawberry reads the arguments' types from the annotations: this list's own types.
    resolve.__annotations__ = {
        "info": strawberry.Info,
        "first": int | None,
        "after": str | None,
        "last": int | None,
        "before": str | None,
        "order_by": type(default_order) | None,
        "return": connection,
    }
    return strawberry.field(resolve, description=description, extensions=requires(*scopes))


# A list size no list reaches: where a page starts, before the list's size is known.
_UNBOUNDED = 2**62
# The column of a page's rows that holds the size of the whole list.
_LIST_SIZE = "list_size"


def _after(after: str | None) -> int:
    """The position of the first item after the cursor `after`."""
    return (_offset(after, "after") + 1) if after is not None else 0


def _bounds(
    total: int, first: int | None, after: str | None, last: int | None, before: str | None, max_page_size: int
) -> tuple[int, int]:
    """The positions [start, end) of the page in a list of `total` items."""
    start = _after(after)
    end = _offset(before, "before") if before is not None else total
    start, end = max(start, 0), min(max(end, start), total)
    if first is None and last is None:
        first = min(DEFAULT_PAGE_SIZE, max_page_size)
    if first is not None:
        end = min(end, start + first)
    if last is not None:
        start = max(start, end - last)
    return start, end


def _page(
    connection: type[ConnectionType], rows: list, to_node: Callable[[Any], Any], start: int, end: int, total: int
) -> ConnectionType:
    edges = [
        relay.Edge(cursor=to_base64(CURSOR_PREFIX, start + i), node=to_node(row))
        for i, row in enumerate(rows)
    ]
    return connection(
        edges=edges,
        total_count=total,
        page_info=relay.PageInfo(
            has_previous_page=start > 0,
            has_next_page=end < total,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


def sibling_page(
    info: Any, first: int | None, after: str | None, last: int | None, before: str | None
) -> tuple[int, int] | None:
    """The rows (offset, limit) of a page that can be loaded together with the same page of
    sibling lists (the invoices of each account of a list), before their sizes are known:
    pages by `first` and `after` only. None for pages by `last` or `before`, which count
    from the end of each list; those are `paginate`d one list at a time."""
    if last is not None or before is not None:
        return None
    max_page_size = info.context.settings.max_page_size
    _check_size(first, "first", max_page_size)
    return max(_after(after), 0), first if first is not None else min(DEFAULT_PAGE_SIZE, max_page_size)


def page_of(
    info: Any, connection: type[ConnectionType], total: int, rows: list, to_node: Callable[[Any], Any],
    first: int | None, after: str | None,
) -> ConnectionType:
    """The page `sibling_page` asked for, from its list's size and its rows: the same edges,
    cursors and page info as `paginate` answers for it."""
    start, end = _bounds(total, first, after, None, None, info.context.settings.max_page_size)
    return _page(connection, rows, to_node, start, end, total)
