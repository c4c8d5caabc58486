"""Importing a cost delivery: register it (QUEUED), then run it (RUNNING -> DONE or FAILED).

A run streams the delivery's parts through `BatchChecker` in a worker thread (Arrow and pgpq
release the GIL) while PostgreSQL COPYs the previous batch: each checked batch is encoded as
binary COPY data (models/costs/binary_copy.py) and fed to `copy_to_table`, straight into
`cost_records`, and summed into the month's kept figures (models/costs/totals.py). The COPY, the figures, the supersession of
earlier deliveries and the import's record commit in one transaction, so a
refusal at the last row of the last part leaves nothing. Memory stays bounded: a few batches
are in flight at a time, whatever the size of the delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import pathlib
import queue
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tortoise import connections
from tortoise.transactions import in_transaction

from infra.settings import get_settings
from models.costs import totals
from models.costs.binary_copy import COLUMN_NAMES, CopyEncoder
from models.costs.deliveries import DeliveryLimits, delivery_parts
from models.costs.focus import EXACT, BatchChecker, RowProblem, months_of
from models.costs.records import CostImport, CostImportState, CostOrigin
from models.costs.reports import AccountMonthTotal, ImportReport, UnmatchedSubAccount
from models.costs.sources import Part, header_names, line_of_row, read_batches
from models.costs.supersede import scope_totals, supersede
from models.errors import CostFileRejected, InvalidTransition, NotFound
from models.managed_accounts import ManagedAccount, SubAccount, lock_sub_account_mapping
from models.outbox import Entity, Transition, record

_IN_FLIGHT = 3  # checked batches waiting for COPY: bounds memory
_PROGRESS_SECONDS = 1.0
_HASH_CHUNK = 1 << 20

# What an import that stopped on something else than a refusal says: running it again may succeed.
INTERNAL_ERROR = "The import stopped on an internal error; it can be run again."

ProgressCallback = Callable[[int], Any]
# Makes a part kept in storage (its relative path) a local file to read, under the folder given.
Fetch = Callable[[str, pathlib.Path], Awaitable[pathlib.Path]]


async def run_import(
    cost_import_id: uuid.UUID | str, *, progress: ProgressCallback | None = None, fetch: Fetch | None = None,
) -> ImportReport:
    """Import a registered delivery: stream, check and load it, supersede what earlier
    deliveries said about its scopes, and end the import DONE; or FAILED with the reason
    (file, line or row, column) and nothing written. `rows_done` on the import is updated
    about every second while it runs; `progress`, if given, is called on the event loop
    with the rows loaded so far. `fetch` reads the parts kept in storage (`infra.storage.local_copy`).

    Raises `CostFileRejected` when the delivery is refused, `InvalidTransition` when the
    import is already DONE or FAILED, `NotFound` for an unknown import.
    """
    cost_import_id = known_uuid(cost_import_id, "The cost import does not exist.", "id")
    claimed = await CostImport.filter(
        id=cost_import_id, state__in=(CostImportState.QUEUED, CostImportState.RUNNING)
    ).update(state=CostImportState.RUNNING, started_at=datetime.now(UTC), rows_done=0)
    if not claimed:
        if not await CostImport.filter(id=cost_import_id).exists():
            raise NotFound("The cost import does not exist.", field="id")
        raise InvalidTransition("The cost import has already run.", field="id")
    cost_import = await CostImport.get(id=cost_import_id)
    reporter = _Progress(cost_import_id, progress)
    writer = asyncio.create_task(reporter.run())
    try:
        with tempfile.TemporaryDirectory(prefix="cost-import-") as folder:
            report = await _run(cost_import, pathlib.Path(folder), reporter, fetch)
    except CostFileRejected as refused:
        await _finish(writer)
        await CostImport.filter(id=cost_import_id).update(
            state=CostImportState.FAILED, finished_at=datetime.now(UTC), error_message=refused.message,
            error_file=(refused.file or "")[:255] or None, error_line=refused.line, error_row=refused.row,
            error_column=refused.column,
        )
        record(Entity.COST_IMPORT, Transition.FAILED, [cost_import_id])
        raise
    except BaseException:
        await _finish(writer)
        with contextlib.suppress(Exception):
            await CostImport.filter(id=cost_import_id).update(
                state=CostImportState.FAILED, finished_at=datetime.now(UTC),
                error_message=INTERNAL_ERROR,
            )
            record(Entity.COST_IMPORT, Transition.FAILED, [cost_import_id])
        raise
    await _finish(writer)
    record(Entity.COST_IMPORT, Transition.COMPLETED, [cost_import_id])
    return report


async def _finish(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class _Progress:
    """Rows loaded so far: told to the caller's callback at once, and written to the
    import's row at most every `_PROGRESS_SECONDS` from a task started outside the
    import's transaction (a write inside it would stay invisible until the commit)."""

    def __init__(self, cost_import_id: uuid.UUID, callback: ProgressCallback | None):
        self.cost_import_id = cost_import_id
        self.callback = callback
        self.rows = 0
        self.changed = asyncio.Event()

    def add(self, rows: int) -> None:
        self.rows += rows
        if self.callback is not None:
            self.callback(self.rows)
        self.changed.set()

    async def run(self) -> None:
        written = 0
        while True:
            await self.changed.wait()
            self.changed.clear()
            if self.rows != written:
                written = self.rows
                await CostImport.filter(id=self.cost_import_id, state=CostImportState.RUNNING).update(rows_done=written)
            await asyncio.sleep(_PROGRESS_SECONDS)


async def _run(cost_import: CostImport, workdir: pathlib.Path, reporter: _Progress, fetch: Fetch | None) -> ImportReport:
    settings = get_settings()
    limits = DeliveryLimits(
        extracted_bytes=settings.max_extracted_bytes, entries=settings.max_archive_entries,
        ratio=settings.max_compression_ratio,
    )
    sources = await _local_sources(cost_import.parts or [], workdir / "stored", fetch)
    parts = await asyncio.to_thread(delivery_parts, sources, workdir, limits)
    name_files = len(parts) > 1
    digest = asyncio.create_task(asyncio.to_thread(_digest, parts))
    months = await asyncio.to_thread(_first_months, parts)
    for month in sorted(months):
        # In a transaction of its own: creating a partition locks the table briefly, and the
        # import's transaction may last minutes.
        await connections.get("default").execute_query("SELECT ensure_cost_records_partition($1)", [month])
    organization_id = cost_import.organization_id
    origin = CostOrigin(cost_import.origin)
    account_id = cost_import.managed_account_id
    try:
        async with in_transaction() as connection:
            await lock_sub_account_mapping(connection, organization_id)
            mapping = await SubAccount.filter(organization_id=organization_id).using_db(connection).values_list(
                "sub_account_id", "managed_account_id"
            )
            only_account = None
            if account_id is not None:
                account = await ManagedAccount.get(id=account_id, using_db=connection)
                only_account = (str(account.id), account.name)
            keys = pa.array([sub for sub, _ in mapping], pa.string())
            values = pa.array([str(account) for _, account in mapping], pa.string())
            encoder = CopyEncoder(organization_id, cost_import.id, origin.value, values)
            pipeline = _Pipeline(parts, keys, values, only_account, encoder, name_files, settings.max_delivery_rows)
            async with connection.acquire_connection() as pg:
                copied = await pg.copy_to_table(
                    "cost_records", source=pipeline.chunks(reporter), columns=COLUMN_NAMES, format="binary",
                )
                if int(copied.rsplit(" ", 1)[1]) != pipeline.rows:
                    raise RuntimeError(f"COPY stored {copied!r} for {pipeline.rows} rows")
                sums = pipeline.sums.groups()
                await totals.write(pg, sums, (organization_id, cost_import.id, origin.value))
                groups = totals.coarse(sums)
                outcome = await supersede(
                    pg, organization_id=organization_id, cost_import_id=cost_import.id, digest=await digest,
                    origin=origin, integration_account_id=account_id, scopes=scope_totals(groups),
                )
            unmatched = _unmatched(groups)
            report = ImportReport(
                cost_import_id=cost_import.id, origin=origin, managed_account_id=account_id,
                rows=pipeline.rows, inserted=pipeline.rows - outcome.duplicates - outcome.late,
                duplicates=outcome.duplicates, unmatched=unmatched, totals=_totals(groups),
                late=outcome.late, replaced=outcome.replaced, scopes=tuple(outcome.scopes),
                late_costs=tuple(outcome.late_costs), parts=tuple(part.name for part in parts),
            )
            await CostImport.filter(id=cost_import.id).using_db(connection).update(
                state=CostImportState.DONE, finished_at=datetime.now(UTC), file_sha256=await digest,
                rows_done=report.rows, row_count=report.rows, inserted_count=report.inserted,
                duplicate_count=report.duplicates, late_count=report.late, replaced_count=report.replaced,
                unmatched_sub_accounts=[entry.as_json() for entry in unmatched], report=report.as_json(),
            )
    finally:
        if not digest.done():
            digest.cancel()
    return report


async def _local_sources(
    parts: list, folder: pathlib.Path, fetch: Fetch | None,
) -> list[pathlib.Path | tuple[pathlib.Path, str]]:
    """The delivery's files as local paths, with the names they were sent under: a part kept in
    storage (a relative path) is fetched, all of them at once."""

    async def local(path: str) -> pathlib.Path:
        if path.startswith("/"):
            return pathlib.Path(path)
        if fetch is None:
            raise RuntimeError("a delivery kept in storage is imported with a fetch")
        return await fetch(path, folder)

    paths = await asyncio.gather(*(local(stored[0] if isinstance(stored, list) else stored) for stored in parts))
    return [(path, stored[1]) if isinstance(stored, list) else path for path, stored in zip(paths, parts, strict=True)]


def _digest(parts: list[Part]) -> str:
    """SHA-256 of the delivery's bytes, its parts in order (hashlib releases the GIL)."""
    digest = hashlib.sha256()
    for part in parts:
        with part.path.open("rb") as file:
            while chunk := file.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _first_months(parts: list[Part]) -> set[date]:
    """The billing months of each part's first batch: a month's export names one month,
    whose partition is then made before the COPY. Rows of a month not seen here still load,
    into the default partition."""
    months: set[date] = set()
    for part in parts:
        try:
            batch = next(read_batches(part), None)
        except CostFileRejected:
            continue
        if batch is not None:
            months |= months_of(batch.data, batch.names)
    return months


class _Pipeline:
    """Checks the parts' batches in a worker thread and hands them, encoded, to COPY."""

    def __init__(self, parts, keys, values, only_account, encoder: CopyEncoder, name_files, max_rows):
        self.parts = parts
        self.max_rows = max_rows
        self.checked_rows = 0
        self.keys, self.values, self.only_account = keys, values, only_account
        self.encoder = encoder
        self.name_files = name_files
        self.rows = 0
        self.sums = totals.Sums()
        self._queue: queue.Queue = queue.Queue(maxsize=_IN_FLIGHT)
        self._stop = threading.Event()

    async def chunks(self, reporter: _Progress) -> AsyncIterator[bytes]:
        """The COPY data, a batch at a time; raises the worker's refusal, which aborts the COPY."""
        worker = threading.Thread(target=self._produce, name="cost-import", daemon=True)
        worker.start()
        try:
            while True:
                item = await asyncio.to_thread(self._queue.get)
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                data, rows = item
                yield data
                self.rows += rows
                reporter.add(rows)
        finally:
            self._stop.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
            await asyncio.to_thread(worker.join)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            if not self._put((self.encoder.header(), 0)):
                return
            for part in self.parts:
                checker = None
                for batch in read_batches(part):
                    if checker is None:
                        try:
                            checker = BatchChecker(
                                batch.names, self.keys, self.values, self.only_account, nulls_read=part.kind != "parquet",
                            )
                        except CostFileRejected as refused:
                            raise refused.placed(
                                line=1 if part.kind != "parquet" else None, file=part.name, name_file=self.name_files,
                            ) from None
                    try:
                        checked = checker.check(batch.data)
                    except RowProblem as problem:
                        row = batch.first_row + problem.index
                        raise CostFileRejected(
                            problem.message, line=line_of_row(part, row), row=row + 1, column=problem.column,
                            file=part.name, name_file=self.name_files,
                        ) from None
                    self.checked_rows += checked.rows
                    if self.checked_rows > self.max_rows:
                        raise CostFileRejected(
                            f"the delivery holds more than {self.max_rows:,} rows; send it in smaller deliveries "
                            "(one billing account or month each)"
                        )
                    self.sums.add(checked.table)
                    if not self._put((self.encoder.batch(checked.table), checked.rows)):
                        return
                if checker is None:
                    # A part without rows still has to have FOCUS columns.
                    self._check_header_only(part)
        except CostFileRejected as refused:
            if refused.file and self.name_files and refused.file not in refused.message:
                refused.placed(line=refused.line, row=refused.row, file=refused.file, name_file=True)
            self._put(refused)
        except BaseException as error:  # handed to the event loop, which aborts the COPY
            self._put(error)
        else:
            if self._put((self.encoder.trailer(), 0)):
                self._put(None)

    def _check_header_only(self, part: Part) -> None:
        names = pq.ParquetFile(part.path).schema_arrow.names if part.kind == "parquet" else header_names(part)[0]
        try:
            BatchChecker(names, self.keys, self.values, self.only_account)
        except CostFileRejected as refused:
            raise refused.placed(line=1 if part.kind != "parquet" else None, file=part.name, name_file=self.name_files) from None


def known_uuid(value: uuid.UUID | str, missing: str, field: str) -> uuid.UUID:
    """The id as a UUID; one that cannot be is of nothing that exists."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(missing, field=field) from None


def _unmatched(groups: dict[tuple, list[Any]]) -> tuple[UnmatchedSubAccount, ...]:
    """The groups of sub-accounts no account claims, per sub-account and currency."""
    merged: dict[tuple[str, str], list[Any]] = {}
    for (provider, _, _, currency, account, sub_account), (rows, cost, name) in groups.items():
        if account is not None:
            continue
        entry = merged.setdefault((sub_account, currency), [0, Decimal(0), name, provider])
        entry[0] += rows
        entry[1] = EXACT.add(entry[1], cost)
        entry[2] = entry[2] or name
    return tuple(
        UnmatchedSubAccount(sub_account, name, provider, currency, rows, cost)
        for (sub_account, currency), (rows, cost, name, provider) in sorted(merged.items())
    )


def _totals(groups: dict[tuple, list[Any]]) -> tuple[AccountMonthTotal, ...]:
    """The groups summed per managed account (None for the unclaimed), month and currency."""
    merged: dict[tuple[str | None, date, str], list[Any]] = {}
    for (_, _, month, currency, account, _), (rows, cost, _) in groups.items():
        entry = merged.setdefault((account, month, currency), [0, Decimal(0)])
        entry[0] += rows
        entry[1] = EXACT.add(entry[1], cost)
    return tuple(
        AccountMonthTotal(None if account is None else uuid.UUID(account), month, currency, rows, cost)
        for (account, month, currency), (rows, cost) in sorted(
            merged.items(), key=lambda item: (item[0][0] or "", item[0][1], item[0][2])
        )
    )


__all__ = ["INTERNAL_ERROR", "ProgressCallback", "known_uuid", "run_import"]
