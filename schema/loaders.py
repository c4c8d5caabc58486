"""Per-request dataloaders: every relation is fetched with one query per request level,
never one per item. A fresh `Loaders` is made for every request, so nothing cached can leak
between viewers or organizations."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from strawberry.dataloader import DataLoader
from tortoise.functions import Count
from tortoise.models import Model


class Loaders:
    def __init__(self) -> None:
        self._loaders: dict[tuple, DataLoader] = {}

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
                rows = {row.pk: row for row in await query} if wanted else {}
                return [rows.get(i) for i in ids]

            self._loaders[key] = DataLoader(load_fn=load)
        return self._loaders[key]

    def children(self, model: type[Model], parent_field: str, order: Sequence[str] = ("id",)) -> DataLoader:
        """Lists of `model` rows per parent id (`parent_field` is the FK column, e.g.
        `revision_id`), in `order`. Rows come as dicts: lists can be long (an invoice's
        lines), and building ORM objects for read-only rows costs more than the query."""
        key = ("children", model, parent_field, tuple(order))
        if key not in self._loaders:

            async def load(parent_ids: list[Any]) -> list[list[Any]]:
                grouped: dict[Any, list[Any]] = defaultdict(list)
                rows = await model.filter(**{f"{parent_field}__in": parent_ids}).order_by(*order).values()
                for row in rows:
                    grouped[row[parent_field]].append(row)
                return [grouped.get(i, []) for i in parent_ids]

            self._loaders[key] = DataLoader(load_fn=load)
        return self._loaders[key]

    def counts(self, model: type[Model], parent_field: str) -> DataLoader:
        """How many `model` rows each parent id has (`parent_field` is the FK column), in
        one grouped COUNT."""
        key = ("counts", model, parent_field)
        if key not in self._loaders:

            async def load(parent_ids: list[Any]) -> list[int]:
                rows = (
                    await model.filter(**{f"{parent_field}__in": parent_ids})
                    .annotate(n=Count("id"))
                    .group_by(parent_field)
                    .values(parent_field, "n")
                )
                found = {row[parent_field]: row["n"] for row in rows}
                return [found.get(i, 0) for i in parent_ids]

            self._loaders[key] = DataLoader(load_fn=load)
        return self._loaders[key]
