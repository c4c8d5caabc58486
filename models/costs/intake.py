"""Taking a cost delivery in: its parts stored, a chunk at a time, in a folder of its own (one
folder per part keeps the part's name), and the delivery registered as a QUEUED import. An
upload and one handed to `import_costs` are stored so; every delivery is registered so."""

from __future__ import annotations

import asyncio
import inspect
import pathlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, BinaryIO

from models.costs.importer import ProgressCallback, known_uuid, run_import
from models.costs.records import CostImport, CostImportState, CostOrigin
from models.costs.reports import ImportReport
from models.errors import CostFileRejected, NotFound, ValidationFailed
from models.managed_accounts import ManagedAccount
from models.organizations import Organization
from models.outbox import Entity, Transition, record

# A delivery's file: its path, or its path and the name (a relative path) it was sent under. A
# local file is a `Path` (or an absolute `str`); a `str` without a leading `/` is a path in storage.
Source = pathlib.Path | str | tuple[pathlib.Path | str, str]
# Parts are read and written a chunk at a time: a delivery is never held whole in memory.
CHUNK_BYTES = 1 << 20


class PartTooLarge(Exception):
    """The delivery passed the bytes it may have at its part `number` (1-based)."""

    def __init__(self, number: int):
        super().__init__(f"part {number} passes the delivery's limit")
        self.number = number


# Stores a part's chunks under its relative name (`<number>/<file name>`), answering what refers to it.
PartSink = Callable[[str, AsyncIterator[bytes]], Awaitable[Any]]


async def store_parts(folder: pathlib.Path | PartSink, parts: Sequence[tuple[str, Any]], limit: int | None = None) -> list:
    """Each part, (file name, content), written to `folder/<number>/<file name>` (its path
    answered), or handed to a sink function as a stream (what it answers answered): the content
    is bytes, text, a binary file or an upload (`async read(n)`). Past `limit` bytes in all,
    `PartTooLarge`; the caller removes the folder. The disk writes run off the event loop."""
    stored, written = [], 0

    async def limited(number: int, content: Any) -> AsyncIterator[bytes]:
        nonlocal written
        async for chunk in _chunks(content):
            written += len(chunk)
            if limit is not None and written > limit:
                raise PartTooLarge(number)
            yield chunk

    for number, (name, content) in enumerate(parts, start=1):
        if not isinstance(folder, pathlib.Path):
            stored.append(await folder(f"{number}/{name}", limited(number, content)))
            continue
        target = folder / str(number) / name
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        with target.open("wb") as handle:
            async for chunk in limited(number, content):
                await asyncio.to_thread(handle.write, chunk)
        stored.append(target)
    return stored


async def _chunks(content: Any) -> AsyncIterator[bytes]:
    if isinstance(content, str):
        try:
            encoded = content.encode()
        except UnicodeEncodeError as error:
            raise CostFileRejected(f"the text holds an invalid character at position {error.start}") from None
        yield encoded
    elif isinstance(content, (bytes, bytearray, memoryview)):
        yield bytes(content)
    else:
        while True:
            chunk = content.read(CHUNK_BYTES)
            if inspect.isawaitable(chunk):
                chunk = await chunk
            if not chunk:
                return
            yield chunk.encode() if isinstance(chunk, str) else chunk


async def register_delivery(
    organization_id: uuid.UUID | str,
    sources: Sequence[Source],
    *,
    filename: str = "",
    imported_by_id: uuid.UUID | str | None = None,
    origin: CostOrigin = CostOrigin.MSP_DELEGATED,
    account_id: uuid.UUID | str | None = None,
    found_by: tuple[uuid.UUID, str, str] | None = None,
    written_at: datetime | None = None,
    in_background: bool = False,
) -> CostImport:
    """Record a delivery of stored files (part files, a folder with its manifest, a zip) as
    a QUEUED import; a source may be a (path, name) pair: a file sent under a name, whose
    folders match a manifest's keys (an upload's relative path); `run_import` (or the `run_cost_import` job) imports it. The files must
    stay where they are until it ran.

    `found_by` is the cost source whose sync found it, with its manifest's key and ETag;
    `written_at` when the store says the manifest was written.
    `in_background`: its import job is queued once this committed (else the caller runs it).

    Raises `ValidationFailed` when `account_id` is missing for an account integration or
    given for a delegated delivery, `NotFound` for an unknown organization or account.
    """
    organization_id = known_uuid(organization_id, "The organization does not exist.", "organizationId")
    if (origin == CostOrigin.ACCOUNT_INTEGRATION) != (account_id is not None):
        raise ValidationFailed(
            "Name the managed account of an account integration's file, and only of one.",
            field="accountId",
        )
    if not await Organization.filter(id=organization_id).exists():
        raise NotFound("The organization does not exist.", field="organizationId")
    if account_id is not None:
        account_id = known_uuid(account_id, "The managed account does not exist.", "accountId")
        if not await ManagedAccount.filter(id=account_id, organization_id=organization_id).exists():
            raise NotFound("The managed account does not exist.", field="accountId")
    paths = await asyncio.to_thread(_resolved, sources)
    registered = await CostImport.create(
        organization_id=organization_id,
        origin=origin,
        managed_account_id=account_id,
        filename=(filename or ", ".join(pathlib.Path(_path_of(path)).name for path in paths))[:255],
        parts=paths,
        imported_by_id=imported_by_id,
        state=CostImportState.QUEUED,
        cost_source_id=found_by[0] if found_by else None,
        source_key=found_by[1][:1024] if found_by else None,
        source_etag=found_by[2][:255] if found_by else None,
        source_written_at=written_at,
    )
    if in_background:
        record(Entity.COST_IMPORT, Transition.QUEUED, [registered.id])
    return registered


def _resolved(sources: Sequence[Source]) -> list[str | list[str]]:
    """The sources' absolute paths, with their names when sent under one (resolving them
    reads the file system: run in a thread); paths in storage as they are."""
    return [
        [_absolute(source[0]), source[1]] if isinstance(source, tuple) else _absolute(source)
        for source in sources
    ]


def _absolute(source: pathlib.Path | str) -> str:
    return source if isinstance(source, str) and not source.startswith("/") else str(pathlib.Path(source).resolve())


def _path_of(stored: str | list[str]) -> str:
    return stored[0] if isinstance(stored, list) else stored


async def import_costs(
    organization_id: uuid.UUID | str,
    data: bytes | str | pathlib.Path | BinaryIO | Sequence[pathlib.Path],
    *,
    filename: str = "",
    imported_by_id: uuid.UUID | str | None = None,
    origin: CostOrigin = CostOrigin.MSP_DELEGATED,
    account_id: uuid.UUID | str | None = None,
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import a FOCUS delivery now and return what it held and changed: bytes, text, a
    binary file, a path (a file, a folder, a zip) or a list of part paths.

    `origin` says whose integration exported it: the MSP's (delegated), or one that the
    managed account `account_id` added itself, whose rows may only be of that account's
    sub-accounts. On any error nothing is written, not even the import's record.
    Raises `CostFileRejected`, `ValidationFailed` and `NotFound` as `register_delivery` and
    `run_import` do. `progress` is called on the event loop with the rows loaded so far.
    """
    with tempfile.TemporaryDirectory(prefix="cost-delivery-") as folder:
        sources: Sequence[Source]
        if isinstance(data, pathlib.Path):
            sources = [data]
        elif isinstance(data, (list, tuple)):
            sources = list(data)
        else:
            # Content rather than files: stored as an upload is, under the name it came with.
            sources = await store_parts(pathlib.Path(folder), [(pathlib.Path(filename).name or "delivery", data)])
        cost_import = await register_delivery(
            organization_id,
            sources,
            filename=filename,
            imported_by_id=imported_by_id,
            origin=origin,
            account_id=account_id,
        )
        try:
            return await run_import(cost_import.id, progress=progress)
        except BaseException:
            # The caller is told now, so no failed record is kept for it to read later.
            await CostImport.filter(id=cost_import.id).delete()
            raise
