"""Per-request dataloaders: every relation is fetched with one query per request level,
never one per item. A fresh `Loaders` is made for every request, so nothing cached can leak
between viewers or organizations."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

from pypika_tortoise import Order
from pypika_tortoise.analytics import RowNumber
from strawberry.dataloader import DataLoader
from tortoise import connections
from tortoise.expressions import Subquery
from tortoise.fields import DecimalField
from tortoise.functions import Count
from tortoise.models import Model
from tortoise.queryset import QuerySet

from models.base import fetch
from models.einvoicing.files import ready_revisions


class Loaders:
    def __init__(self) -> None:
        self._loaders: dict[tuple, DataLoader] = {}

    def clear(self) -> None:
        """Forget every row loaded. At the end of an operation (`ReleaseLoaded`): graphql-core's
        execution state holds reference cycles that reach the context, so what the loaders
        keep (thousands of rows for a list page) would otherwise wait for the cyclic garbage
        collector instead of being freed at once, and make its collections the longer."""
        for loader in self._loaders.values():
            loader.clear_all()
        self._loaders.clear()

    def by_id(self, model: type[Model], only: Sequence[str] = ()) -> DataLoader:
        """Rows of `model` by primary key (None for a missing one or a None key). Use only
        for objects reached from an object the viewer may already see. `only` limits the
        columns fetched (besides the key), for tables with heavy ones."""
        key = ("id", model, tuple(only))
        if key not in self._loaders:

            async def load(ids: list[Any]) -> list[Any]:
                wanted = [i for i in ids if i is not None]
                query = model.filter(pk__in=wanted)
                if only:
                    query = query.only(model._meta.pk_attr, *only)
                rows = {row.pk: row for row in await fetch(query)} if wanted else {}
                return [rows.get(i) for i in ids]

            self._loaders[key] = DataLoader(load_fn=load)
        return self._loaders[key]

    def keyed(self, name: str, load_fn: Callable[[list[Any]], Awaitable[list[Any]]]) -> DataLoader:
        """A loader of this request for a domain's own batched lookup (`name` tells it apart)."""
        key = ("keyed", name)
        if key not in self._loaders:
            self._loaders[key] = DataLoader(load_fn=load_fn)
        return self._loaders[key]

    def children(
        self, model: type[Model], parent_field: str, order: Sequence[str] = ("id",), *, raw: bool = False
    ) -> DataLoader:
        """Lists of `model` rows per parent id (`parent_field` is the FK column, e.g.
        `revision_id`), in `order`. Rows come as dicts: lists can be long (an invoice's
        lines), and building ORM objects for read-only rows costs more than the query.
        `raw`: the driver's own read-only records instead (same keys, read by name), with the
        database's values as they come (an enum column's text, not the enum; a decimal's
        text, not a Decimal), ordered by field names (ascending): for the longest lists,
        where making a dict of each row and converting each value cost more than fetching
        them."""
        key = ("children", model, parent_field, tuple(order), raw)
        if key not in self._loaders:

            async def load(parent_ids: list[Any]) -> list[list[Any]]:
                grouped: dict[Any, list[Any]] = defaultdict(list)
                if raw:
                    rows = await _records(model, parent_field, parent_ids, order)
                else:
                    rows = await model.filter(**{f"{parent_field}__in": parent_ids}).order_by(*order).values()
                # A record is read fastest by position.
                key: Any = list(rows[0].keys()).index(parent_field) if raw and rows else parent_field
                for row in rows:
                    grouped[row[key]].append(row)
                return [grouped.get(i, []) for i in parent_ids]

            self._loaders[key] = DataLoader(load_fn=load)
        return self._loaders[key]

    def einvoice_ready(self) -> DataLoader:
        """Whether each revision (by id) can be delivered as an e-invoice, in one query."""
        key = ("einvoice_ready",)
        if key not in self._loaders:

            async def load(revision_ids: list[Any]) -> list[bool]:
                ready = await ready_revisions(revision_ids)
                return [revision_id in ready for revision_id in revision_ids]

            self._loaders[key] = DataLoader(load_fn=load)
        return self._loaders[key]

    def counts(self, model: type[Model], parent_field: str) -> DataLoader:
        """How many `model` rows each parent id has (`parent_field` is the FK column), in
        one grouped COUNT."""
        key = ("counts", model, parent_field)
        if key not in self._loaders:

            async def load(parent_ids: list[Any]) -> list[int]:
                found = await _counts(model.filter(**{f"{parent_field}__in": parent_ids}), parent_field)
                return [found.get(i, 0) for i in parent_ids]

            self._loaders[key] = DataLoader(load_fn=load)
        return self._loaders[key]

    def pages(self, query: QuerySet, parent_field: str, order: Sequence[str], offset: int, limit: int) -> DataLoader:
        """Per parent id, how many rows of `query` it has and its rows `offset` to
        `offset + limit` in `order` (Tortoise ordering, ending with the primary key): one
        grouped COUNT and one windowed query for all the parents, however many. `query` is
        the same scoped query for every parent; its SQL tells the loaders apart."""
        key = ("pages", query.sql(params_inline=True), parent_field, tuple(order), offset, limit)
        if key not in self._loaders:

            async def load(parent_ids: list[Any]) -> list[tuple[int, list[Any]]]:
                theirs = query.filter(**{f"{parent_field}__in": parent_ids})
                totals = await _counts(theirs, parent_field)
                grouped: dict[Any, list[Any]] = defaultdict(list)
                if limit:
                    for row in await _ranked(theirs, parent_field, order, offset, limit):
                        grouped[getattr(row, parent_field)].append(row)
                return [(totals.get(i, 0), grouped.get(i, [])) for i in parent_ids]

            self._loaders[key] = DataLoader(load_fn=load)
        return self._loaders[key]


async def load_all(loader: DataLoader, keys: Iterable[Any]) -> list[Any]:
    """`loader.load_many(keys)` without gathering: the relation of a page asks a hundred keys,
    and `asyncio.gather` adds a callback and a step per key. The keys join the batch at once;
    once it is loaded, every future is done and is read without waiting again."""
    futures = [loader.load(key) for key in keys]
    return [await future for future in futures]


async def _records(model: type[Model], parent_field: str, parent_ids: list[Any], order: Sequence[str]) -> list[Any]:
    """`model`'s rows of these parents in `order` (ascending field names), as the driver
    returns them, keyed by field name, decimals as their exact text (the driver's Decimal
    for every numeric column of thousands of rows cost more than the rest of the fetch)."""
    meta = model._meta
    columns = []
    for name, column in meta.fields_db_projection.items():
        suffix = "::text" if isinstance(meta.fields_map[name], DecimalField) else ""
        columns.append(f'"{column}"{suffix} AS "{name}"')
    parent = meta.fields_db_projection[parent_field]
    ordering = ", ".join(f'"{meta.fields_db_projection[name]}"' for name in order)
    sql = f'SELECT {", ".join(columns)} FROM "{meta.db_table}" WHERE "{parent}" = ANY($1) ORDER BY {ordering}'
    _, rows = await connections.get(meta.default_connection).execute_query(sql, [list(parent_ids)])
    return cast(list, rows)


async def _counts(query: QuerySet, parent_field: str) -> dict[Any, int]:
    rows = await query.annotate(n=Count("id")).group_by(parent_field).values(parent_field, "n")
    return {row[parent_field]: row["n"] for row in rows}


async def _ranked(query: QuerySet, parent_field: str, order: Sequence[str], offset: int, limit: int) -> list[Any]:
    """Rows `offset` to `offset + limit` of each parent's rows of `query` in `order`, in one
    statement: SELECT * FROM (query with ROW_NUMBER() OVER (PARTITION BY parent ORDER BY
    order)) WHERE the number is in range. Tortoise has no window functions nor selects from
    a subquery, so the statement is composed in PyPika (whose parameters stay parameters)
    and run by the model's own executor, which builds the rows as `Model.raw` does."""
    model = query.model
    table = model._meta.basetable

    def column(name: str):
        return table[model._meta.fields_map[name].source_field or name]

    rank = RowNumber().over(column(parent_field))
    for name in order:
        rank = rank.orderby(column(name.lstrip("-")), order=Order.desc if name.startswith("-") else Order.asc)
    ranked = Subquery(query.annotate(page_rank=rank)).as_("ranked")
    db = model._meta.db
    sql, params = (
        db.query_class.from_(ranked).select("*")
        .where((ranked.page_rank > offset) & (ranked.page_rank <= offset + limit))
        .orderby(ranked.page_rank)
        .get_parameterized_sql()
    )
    return await db.executor_class(model=model, db=db).execute_select(sql, params)
