"""Syncing a cost source: list its bucket, find the deliveries (`models.cost_sources.discover`),
and import each new one through the import path uploads take (stored, registered, run).

One sync per source at a time: a Redis lock held while it runs, renewed while it lives, so
that a killed worker's lock lapses within LOCK_SECONDS. A manifest already imported under its key and ETag is
skipped without reading anything; one naming a part not there yet is left for the next sync. A
month's files without a manifest (Cloud Storage) are skipped the same way by their names and
ETags together, and left for the next sync while one of them is newer than COST_SOURCE_QUIET_MINUTES."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra import metrics, object_stores, storage
from infra.settings import Settings
from jobs import dispatch
from jobs.effects import runs_effects
from jobs.imports import counted_import
from models.cost_sources import (
    CostSource,
    CostSourceState,
    CostSourceUnreadable,
    Delivery,
    SourceProblem,
    already_taken,
    credentials_of,
    discover,
    due_sources,
    missing_parts,
    newest,
    object_key,
    record_sync,
    still_written,
)
from models.costs import CostOrigin, register_delivery
from models.costs.deliveries import manifest_keys
from models.errors import CostFileRejected

log = logging.getLogger(__name__)

# How long a sync's lock outlives its last renewal (renewed every third of it).
LOCK_SECONDS = 300
MANIFEST_BYTES = 16 << 20
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end"


def lock_key(source_id: Any) -> str:
    return f"cost-source-sync:{source_id}"


@runs_effects
async def sync_cost_source(ctx: dict, source_id: str) -> dict:
    """The job: sync the source unless another sync of it holds the lock."""
    redis, token = ctx["redis"], uuid.uuid4().hex
    if not await redis.set(lock_key(source_id), token, nx=True, ex=LOCK_SECONDS):
        return {"state": "BUSY"}
    renewal = asyncio.create_task(_keep_lock(redis, lock_key(source_id), token))
    try:
        return await sync_source(ctx["settings"], source_id, ctx.get("imports"))
    finally:
        renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewal
        await redis.eval(_RELEASE, 1, lock_key(source_id), token)


async def _keep_lock(redis: Any, key: str, token: str) -> None:
    """Renew the lock while it is ours; a renewal that fails (Redis down) is tried again."""
    while True:
        await asyncio.sleep(LOCK_SECONDS / 3)
        try:
            if not await redis.eval(_RENEW, 1, key, token, LOCK_SECONDS):
                return
        except Exception as exc:  # Redis unreachable: the sync itself will notice
            log.warning("could not renew the lock %s: %r", key, exc)


@runs_effects
async def sync_due_cost_sources(ctx: dict) -> int:
    """Cron: queue the sync of each source due (`models.cost_sources.sync_wait`); how many.
    Each sync is a job of its own: a slow or failing source holds no other up."""
    settings, queued = ctx["settings"], 0
    for source_id in await due_sources(datetime.now(UTC), settings.cost_source_sync_hours, settings.cost_source_retry_minutes):
        queued += await dispatch.enqueue_cost_source_sync(ctx["redis"], source_id)
    return queued


async def sync_source(settings: Settings, source_id: Any, turns: asyncio.Semaphore | None = None) -> dict:
    """Import each new delivery of the source, oldest billing period first, and record what
    the sync found on the source. A source that cannot be read ends FAILING with the reason
    and nothing imported; a delivery still being written leaves it WAITING."""
    source = await CostSource.get_or_none(id=source_id)
    if source is None:
        return {"state": "SKIPPED"}
    imported: list[str] = []
    waiting: list[str] = []
    refused: list[str] = []
    try:
        store = await object_stores.open_store(settings, source, credentials_of(settings, source))
        listing = await object_stores.list_objects(store, source.prefix)
        deliveries = discover(listing)
        for delivery in deliveries:
            if await already_taken(source, delivery):
                continue
            if still_written(delivery, datetime.now(UTC), settings.cost_source_quiet_minutes):
                waiting.append(delivery.manifest.key)
                continue
            outcome = await _take(settings, store, source, delivery, listing, turns)
            {"imported": imported, "waiting": waiting, "refused": refused}[outcome].append(delivery.manifest.key)
    except CostSourceUnreadable as error:
        log.info("cost source %s unreadable: %s", source.id, error.problem.value)
        await record_sync(source.id, state=CostSourceState.FAILING, error=error.message)
        metrics.COST_SOURCE_SYNCS.labels(source.kind.value, CostSourceState.FAILING.value.lower()).inc()
        return {"state": CostSourceState.FAILING.value, "problem": error.problem.value}
    state = CostSourceState.WAITING if waiting else CostSourceState.OK
    await record_sync(source.id, state=state, newest=newest(deliveries))
    metrics.COST_SOURCE_SYNCS.labels(source.kind.value, state.value.lower()).inc()
    return {"state": state.value, "imported": imported, "waiting": waiting, "refused": refused}


async def _room_for(settings: Settings, source: CostSource, parts: list) -> None:
    """Refuse a delivery larger than an upload may be, or than the room left of the
    organization's stored deliveries (synced ones are kept and purged as uploads are)."""
    size = sum(part.size for part in parts)
    used = await asyncio.to_thread(storage.used_bytes, settings, storage.delivery_folder(source.organization_id))
    if size > settings.max_upload_bytes or used + size > settings.max_stored_delivery_bytes:
        raise CostSourceUnreadable(
            f"A delivery of {size:,} bytes is larger than a delivery may be ({settings.max_upload_bytes:,}) or than "
            f"the room left of your organization's stored deliveries ({max(settings.max_stored_delivery_bytes - used, 0):,}).",
            SourceProblem.TOO_LARGE,
        )


async def _take(settings: Settings, store: Any, source: CostSource, delivery: Delivery, listing: list,
                turns: asyncio.Semaphore | None) -> str:
    """Store the delivery's manifest and parts (or its files, when it has no manifest), then
    import them; "waiting" when a part the manifest names is not there yet (nothing is kept),
    "refused" when the import refused it."""
    folder = f"{storage.delivery_folder(source.organization_id)}/{uuid.uuid4()}"
    if delivery.parts:
        return await _import(settings, source, delivery, await _files(settings, store, source, delivery, folder), turns)
    manifest_name = storage.safe_relative(delivery.manifest.key)
    manifest = await object_stores.read_bytes(store, delivery.manifest.key, MANIFEST_BYTES)
    keys = await asyncio.to_thread(_keys_of, manifest, manifest_name, source)
    missing = missing_parts(keys, listing)
    if missing:
        log.info("cost source %s: %s waits for %d part(s)", source.id, delivery.manifest.key, len(missing))
        return "waiting"
    await _room_for(settings, source, [stored for stored in listing if stored.key in set(keys)])
    try:
        manifest_path = f"{folder}/0/{storage.safe_name(delivery.manifest.key)}"
        await asyncio.to_thread(storage.save, settings, manifest_path, manifest)
        stored: list = [(manifest_path, manifest_name)]
        # None of them is None: missing_parts counts a part of another bucket as missing.
        for number, key in enumerate(filter(None, keys), start=1):
            stored.append((await _copy(settings, store, key, f"{folder}/{number}"), storage.safe_relative(key)))
    except BaseException:
        await asyncio.to_thread(storage.remove, settings, folder)
        raise
    return await _import(settings, source, delivery, stored, turns)


def _keys_of(manifest: bytes, name: str, source: CostSource) -> list:
    """The object keys a manifest names (none when it is no manifest: the import refuses it)."""
    with tempfile.TemporaryDirectory(prefix="cost-manifest-") as folder:
        path = Path(folder) / storage.safe_name(name)
        path.write_bytes(manifest)
        try:
            return [object_key(key, source.bucket) for key in manifest_keys(path, name)]
        except CostFileRejected:
            return []


async def _copy(settings: Settings, store: Any, key: str, folder: str) -> str:
    """An object of the source's bucket into storage, streamed (in parts when large)."""
    relative = f"{folder}/{storage.safe_name(key)}"
    await storage.save_stream(settings, relative, object_stores.stream(store, key))
    return relative


async def _files(settings: Settings, store: Any, source: CostSource, delivery: Delivery, folder: str) -> list:
    """A manifest-less delivery's files, stored under `folder` (removed if one fails)."""
    await _room_for(settings, source, list(delivery.parts))
    try:
        return [
            (await _copy(settings, store, part.key, f"{folder}/{number}"), storage.safe_relative(part.key))
            for number, part in enumerate(delivery.parts, start=1)
        ]
    except BaseException:
        await asyncio.to_thread(storage.remove, settings, folder)
        raise


async def _import(settings: Settings, source: CostSource, delivery: Delivery, stored: list,
                  turns: asyncio.Semaphore | None) -> str:
    """Register the stored delivery as an import of the source and run it."""
    # A source of an account's own integration imports as that account's: a row of another
    # account's sub-account refuses the whole delivery, as an upload of its integration.
    origin = CostOrigin.ACCOUNT_INTEGRATION if source.managed_account_id else CostOrigin.MSP_DELEGATED
    cost_import = await register_delivery(
        source.organization_id, stored, filename=delivery.manifest.key,
        found_by=(source.id, delivery.manifest.key, delivery.manifest.etag), written_at=delivery.manifest.modified,
        origin=origin, account_id=source.managed_account_id,
    )
    try:
        async with turns or contextlib.nullcontext():
            await counted_import(cost_import.id, settings)
    except CostFileRejected as rejected:
        log.info("cost source %s: delivery %s refused: %s", source.id, cost_import.id, rejected.message)
        return "refused"
    return "imported"
