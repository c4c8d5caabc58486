"""Importing a FOCUS cost file into an organization's cost records.

The whole file is parsed and checked before anything is written, and everything is then
written in one transaction: a file is imported entirely or not at all. Rows are identified by
their fingerprint, so importing a file again (or an overlapping export) adds only what is new.

Rows travel to PostgreSQL by COPY into a temporary table, then one INSERT ... SELECT ...
ON CONFLICT DO NOTHING moves them into `cost_records`: row-by-row INSERTs would take minutes
for the 100,000-row files a month of a few dozen accounts produces.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import pathlib
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, BinaryIO

from tortoise.transactions import in_transaction

from models.costs.focus import EXACT, CostFileRejected, CostRow, FocusFile, decode_cost_file, parse_focus
from models.costs.records import CostImport, CostOrigin
from models.errors import NotFound, ValidationFailed
from models.managed_accounts import ManagedAccount, SubAccount, lock_sub_account_mapping
from models.organizations import Organization

_STAGING = "cost_import_staging"
# managed_account_id comes first, resolved from the mapping before the COPY.
_STAGED = ("managed_account_id", *CostRow._fields)
_STAGED_LIST = ", ".join(_STAGED)
# The staging table takes the types of the real columns (NUMERIC(38,16), VARCHAR(n), JSONB)
# but none of their constraints; ON COMMIT DROP cleans up after a failure too.
_CREATE_STAGING = (
    f"CREATE TEMPORARY TABLE {_STAGING} ON COMMIT DROP AS"
    f" SELECT {_STAGED_LIST} FROM cost_records WITH NO DATA"
)
_INSERT = (
    f"INSERT INTO cost_records (organization_id, cost_import_id, origin, {_STAGED_LIST})"
    f" SELECT $1::uuid, $2::uuid, $3, {_STAGED_LIST} FROM {_STAGING}"
    " ON CONFLICT (organization_id, fingerprint) DO NOTHING"
)
_COPY_CHUNK_ROWS = 5_000
_CSV_SPECIAL = re.compile(r'[",\r\n]')


@dataclass(frozen=True, slots=True)
class UnmatchedSubAccount:
    """A sub-account of the file that no managed account claims: its rows are stored
    without an account (and linked once one claims it), and nobody is invoiced for them yet.
    One per sub-account and currency, so that no sum adds two currencies."""

    sub_account_id: str  # "" for rows FOCUS exported without a sub-account
    sub_account_name: str | None
    provider_name: str
    currency: str
    rows: int
    billed_cost: Decimal

    def as_json(self) -> dict[str, Any]:
        return {
            "subAccountId": self.sub_account_id,
            "subAccountName": self.sub_account_name,
            "providerName": self.provider_name,
            "currency": self.currency,
            "rows": self.rows,
            # Fixed-point text, never 8E-7: JSON readers take it for what it says.
            "billedCost": f"{self.billed_cost:f}",
        }


@dataclass(frozen=True, slots=True)
class AccountMonthTotal:
    """The BilledCost of the file's rows for one managed account (None: no account), one
    billing month and one currency, duplicates included: what the file says, not what was new."""

    managed_account_id: uuid.UUID | None
    billing_month: date
    currency: str
    rows: int
    billed_cost: Decimal


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What one import found and did."""

    cost_import_id: uuid.UUID
    origin: CostOrigin
    managed_account_id: uuid.UUID | None  # the account whose own integration it was
    rows: int
    inserted: int
    duplicates: int
    unmatched: tuple[UnmatchedSubAccount, ...]
    totals: tuple[AccountMonthTotal, ...]


async def import_costs(
    organization_id: uuid.UUID | str,
    data: bytes | str | pathlib.Path | BinaryIO,
    *,
    filename: str = "",
    imported_by_id: uuid.UUID | str | None = None,
    origin: CostOrigin = CostOrigin.MSP_DELEGATED,
    account_id: uuid.UUID | str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a FOCUS CSV (bytes, text, a path, or a binary file) into the organization's
    cost records and return what it held and changed.

    `origin` says whose integration exported the file: the MSP's (delegated), or one that
    the managed account `account_id` added itself, whose file may hold only rows of that
    account's sub-accounts.

    Raises `CostFileRejected` (nothing written) when the file or any row of it cannot be
    imported exactly, `ValidationFailed` when `account_id` is missing for an account
    integration or given for a delegated file, and `NotFound` for an unknown organization or
    account. `progress` is called on the event loop with the number of rows read so far
    while the file is parsed.
    """
    organization_id = _uuid(organization_id, "The organization does not exist.", "organizationId")
    if (origin == CostOrigin.ACCOUNT_INTEGRATION) != (account_id is not None):
        raise ValidationFailed(
            "Name the managed account of an account integration's file, and only of one.",
            field="accountId",
        )
    if account_id is not None:
        account_id = _uuid(account_id, "The managed account does not exist.", "accountId")
    raw = _read_bytes(data)
    file_sha256 = hashlib.sha256(raw).hexdigest()
    parsed = await _parse_off_loop(raw, progress)
    groups = _group(parsed)

    async with in_transaction() as connection:
        if not await Organization.filter(id=organization_id).using_db(connection).exists():
            raise NotFound("The organization does not exist.", field="organizationId")
        await lock_sub_account_mapping(connection, organization_id)
        sub_account_ids = sorted({sub_account_id for sub_account_id, *_ in groups})
        account_of = dict(
            await SubAccount.filter(organization_id=organization_id, sub_account_id__in=sub_account_ids)
            .using_db(connection)
            .values_list("sub_account_id", "managed_account_id")
        )
        if account_id is not None:
            account = await (
                ManagedAccount.filter(id=account_id, organization_id=organization_id).using_db(connection).first()
            )
            if account is None:
                raise NotFound("The managed account does not exist.", field="accountId")
            _refuse_foreign_rows(parsed, account_of, account)
        cost_import = await CostImport.create(
            organization_id=organization_id,
            origin=origin,
            managed_account_id=account_id,
            filename=filename[:255],
            file_sha256=file_sha256,
            row_count=len(parsed),
            inserted_count=0,
            duplicate_count=len(parsed),
            imported_by_id=imported_by_id,
            using_db=connection,
        )
        async with connection.acquire_connection() as pg:
            # The asyncpg connection of this transaction, for what the ORM cannot do: COPY.
            await pg.execute(_CREATE_STAGING)
            copied = await pg.copy_to_table(
                _STAGING,
                source=_csv_chunks(parsed, account_of),
                columns=_STAGED,
                format="csv",
                # A row without a sub-account is stored under "", which CSV would read as null.
                force_not_null=["sub_account_id"],
            )
            if _count(copied) != len(parsed):
                raise RuntimeError(f"COPY stored {copied!r} for {len(parsed)} rows")
            inserted = _count(await pg.execute(_INSERT, organization_id, cost_import.id, origin.value))
            await pg.execute(f"DROP TABLE {_STAGING}")
        unmatched = _unmatched(groups, account_of)
        cost_import.inserted_count = inserted
        cost_import.duplicate_count = len(parsed) - inserted
        cost_import.unmatched_sub_accounts = [entry.as_json() for entry in unmatched]
        await cost_import.save(
            using_db=connection,
            update_fields=["inserted_count", "duplicate_count", "unmatched_sub_accounts"],
        )

    return ImportReport(
        cost_import_id=cost_import.id,
        origin=origin,
        managed_account_id=account_id,
        rows=len(parsed),
        inserted=inserted,
        duplicates=len(parsed) - inserted,
        unmatched=unmatched,
        totals=_totals(groups, account_of),
    )


def _uuid(value: uuid.UUID | str, missing: str, field: str) -> uuid.UUID:
    """The id as a UUID; one that cannot be is of nothing that exists."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(missing, field=field) from None


def _refuse_foreign_rows(parsed: FocusFile, account_of: dict[str, uuid.UUID], account: ManagedAccount) -> None:
    """An account integration reports that account's costs only: its first row of a
    sub-account the account does not have (another's, or nobody's) refuses the file."""
    for line, sub_account_id in zip(parsed.lines, parsed.texts("sub_account_id")):
        if account_of.get(sub_account_id) != account.id:
            raise CostFileRejected(
                f"sub-account {sub_account_id or '(none)'} is not one of {account.name}'s; "
                "a file of its own integration holds only its costs",
                line=line, column="SubAccountId",
            )


def _read_bytes(data: bytes | str | pathlib.Path | BinaryIO) -> bytes:
    """The file's bytes, which its SHA-256 is taken of (text is taken as UTF-8)."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        try:
            return data.encode()
        except UnicodeEncodeError as error:
            raise CostFileRejected(
                f"the text holds an invalid character at position {error.start}"
            ) from None
    if isinstance(data, pathlib.Path):
        return data.read_bytes()
    content = data.read()
    return content.encode() if isinstance(content, str) else bytes(content)


async def _parse_off_loop(data: bytes, progress: Callable[[int], None] | None) -> FocusFile:
    """Parse in a worker thread: a large file takes seconds of CPU, during which the event
    loop would otherwise serve nobody else. Progress is handed back to the loop's thread,
    so that the callback never has to be thread-safe."""
    loop = asyncio.get_running_loop()
    report = None
    if progress is not None:
        def report(rows: int) -> None:
            loop.call_soon_threadsafe(progress, rows)

    # The thread's progress calls are queued before its result, so they all run first.
    return await asyncio.to_thread(lambda: parse_focus(decode_cost_file(data), report))


async def _csv_chunks(parsed: FocusFile, account_of: dict[str, uuid.UUID]) -> AsyncIterator[bytes]:
    """The rows as CSV for COPY, `_COPY_CHUNK_ROWS` at a time, from the canonical texts.

    CSV text rather than `copy_records_to_table`'s binary records: PostgreSQL parses the text
    in C, while the driver encodes each Decimal and datetime in Python (for 100,000 rows,
    2.5 s against 5 s). Each distinct value is quoted once, not once per row as csv.writer
    would.
    """
    account_text = {sub_account_id: str(account) for sub_account_id, account in account_of.items()}
    accounts = [account_text.get(sub_account_id, "") for sub_account_id in parsed.texts("sub_account_id")]
    columns = [accounts, *(_csv_column(parsed.texts(name)) for name in CostRow._fields)]
    rows = map(",".join, zip(*columns))
    while chunk := list(itertools.islice(rows, _COPY_CHUNK_ROWS)):
        chunk.append("")
        yield "\n".join(chunk).encode()


def _csv_column(texts: list[str]) -> list[str]:
    """A column's texts as CSV fields: quoted when they hold a quote, a comma or a line end.
    An empty field stays unquoted, which COPY reads as null."""
    quoted = {
        text: '"' + text.replace('"', '""') + '"' for text in set(texts) if _CSV_SPECIAL.search(text)
    }
    return [quoted.get(text, text) for text in texts] if quoted else texts


def _count(status: str) -> int:
    """The row count of a command status such as `INSERT 0 12` or `COPY 12`."""
    return int(status.rsplit(" ", 1)[1])


# (sub-account id, billing month, currency) -> [rows, billed cost, sub-account name, provider]
_Groups = dict[tuple[str, date, str], list[Any]]


def _group(parsed: FocusFile) -> _Groups:
    """Row counts and BilledCost sums per sub-account, month and currency, with the first
    name and provider seen for the sub-account; summed exactly (see `EXACT`)."""
    groups: _Groups = {}
    add = EXACT.add
    for key, cost, name, provider in zip(
        zip(parsed.texts("sub_account_id"), parsed.values("billing_month"), parsed.texts("billing_currency")),
        parsed.values("billed_cost"),
        parsed.values("sub_account_name"),
        parsed.texts("provider_name"),
    ):
        group = groups.get(key)
        if group is None:
            groups[key] = [1, cost, name, provider]
        else:
            group[0] += 1
            group[1] = add(group[1], cost)
            if group[2] is None:
                group[2] = name
    return groups


def _unmatched(groups: _Groups, account_of: dict[str, uuid.UUID]) -> tuple[UnmatchedSubAccount, ...]:
    """The groups of sub-accounts outside `account_of`, per sub-account and currency."""
    merged: dict[tuple[str, str], list[Any]] = {}
    for (sub_account_id, _, currency), (rows, cost, name, provider) in groups.items():
        if sub_account_id in account_of:
            continue
        entry = merged.setdefault((sub_account_id, currency), [0, Decimal(0), name, provider])
        entry[0] += rows
        entry[1] = EXACT.add(entry[1], cost)
        entry[2] = entry[2] or name
    return tuple(
        UnmatchedSubAccount(sub_account_id, name, provider, currency, rows, cost)
        for (sub_account_id, currency), (rows, cost, name, provider) in sorted(merged.items())
    )


def _totals(groups: _Groups, account_of: dict[str, uuid.UUID]) -> tuple[AccountMonthTotal, ...]:
    """The groups summed per managed account (None for the unclaimed), month and currency."""
    merged: dict[tuple[uuid.UUID | None, date, str], list[Any]] = {}
    for (sub_account_id, month, currency), (rows, cost, _, _) in groups.items():
        entry = merged.setdefault((account_of.get(sub_account_id), month, currency), [0, Decimal(0)])
        entry[0] += rows
        entry[1] = EXACT.add(entry[1], cost)
    return tuple(
        AccountMonthTotal(account_id, month, currency, rows, cost)
        for (account_id, month, currency), (rows, cost) in sorted(
            merged.items(), key=lambda item: (str(item[0][0] or ""), item[0][1], item[0][2])
        )
    )


__all__ = [
    "AccountMonthTotal",
    "CostFileRejected",
    "ImportReport",
    "UnmatchedSubAccount",
    "import_costs",
]
