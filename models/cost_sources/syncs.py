"""What the syncs of cost sources leave behind: each source's state after its last sync, which
sources are due for the next one (a failing source retried sooner, then less and less often),
and the imports a source made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise.expressions import F

from models.cost_sources.tables import AVAILABLE_KINDS, CostSource, CostSourceState
from models.costs.records import CostImport
from models.outbox import Entity, Transition, record

if TYPE_CHECKING:
    from models.cost_sources.discovery import Delivery


async def record_sync(source_id, *, state: CostSourceState, error: str | None = None,
                      newest: Delivery | None = None) -> None:
    """What a sync found: its state, the error of a failure (None clears it), the newest
    delivery; a failure adds one to the failures in a row, anything else ends them. A source
    that turns FAILING is recorded (`Transition.FAILING`)."""
    columns: dict[str, Any] = {
        "state": state, "last_sync_at": datetime.now(UTC), "last_error": error,
        "failures": F("failures") + 1 if state == CostSourceState.FAILING else 0,
    }
    if newest is not None:
        columns.update(last_delivery_key=newest.manifest.key[:1024], last_delivery_at=newest.manifest.modified)
    turned_failing = state == CostSourceState.FAILING and await CostSource.filter(id=source_id).exclude(
        state=CostSourceState.FAILING).exists()
    await CostSource.filter(id=source_id).update(**columns)
    # A source that was readable and is not: its organization hears of it once, not at every failed sync.
    record(Entity.COST_SOURCE, Transition.FAILING, [source_id] if turned_failing else [])


def imports_of(source: CostSource):
    """The imports a source made, newest first."""
    return CostImport.filter(cost_source_id=source.id).order_by("-created_at")


def sync_wait(state: CostSourceState, failures: int, every_hours: float, retry_minutes: float) -> timedelta:
    """How long after its last sync a source is synced again: `every_hours` when it was read;
    `retry_minutes` when a delivery was still being written; after a failure `retry_minutes`,
    doubling with each failure in a row, never longer than `every_hours`."""
    every = timedelta(hours=every_hours)
    if state == CostSourceState.WAITING:
        return min(timedelta(minutes=retry_minutes), every)
    if state == CostSourceState.FAILING:
        return min(timedelta(minutes=retry_minutes) * 2 ** min(max(failures - 1, 0), 20), every)
    return every


async def due_sources(now: datetime, every_hours: float, retry_minutes: float) -> list[UUID]:
    """The sources due for a sync (`sync_wait` after their last one, or never synced), each
    on its organization's interval (`every_hours` where it set none)."""
    rows = await CostSource.filter(kind__in=AVAILABLE_KINDS).values_list(
        "id", "last_sync_at", "state", "failures", "organization__cost_sync_hours"
    )
    return [
        source_id for source_id, synced, state, failures, own_hours in rows
        if synced is None
        or now - synced >= sync_wait(CostSourceState(state), failures, own_hours or every_hours, retry_minutes)
    ]

