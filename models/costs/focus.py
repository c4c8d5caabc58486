"""Reading FOCUS cost exports (FinOps Open Cost and Usage Specification, 1.0 and later).

AWS, Azure, Google Cloud and Oracle all emit FOCUS as CSV, each with its own habits: a
UTF-8 BOM (Azure), CRLF line ends, columns in any order, provider `x_` columns, `NULL` or an
empty field for a null, and timestamps written three different ways. This module reads such
a file into a `FocusFile` of rows ready for the `cost_records` table, or refuses it, saying
the line, the column and why, at the first value it cannot store exactly.

Every money and quantity value becomes a `Decimal` straight from its text, never a float, and
a value that `NUMERIC(38,16)` could only hold rounded is refused: an invoice built on costs
that were silently rounded on the way in cannot be reconciled with the provider's bill.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Context, Decimal, DecimalException, Inexact
from operator import itemgetter
from typing import Any, NamedTuple

from models.errors import ErrorCode, ValidationFailed

# The widest number a cost column holds: NUMERIC(38,16), 22 digits before the point.
COST_SCALE = 16
COST_INTEGER_DIGITS = 38 - COST_SCALE

# Decimal arithmetic outside the parser (sums in reports) uses this context: wide enough for
# any sum of NUMERIC(38,16) values a file can hold, and trapping Inexact so that a sum can
# never be rounded without an error.
EXACT = Context(prec=80, Emax=999_999, Emin=-999_999, traps=[Inexact])

# FOCUS requires these columns; a file without one of them is not a FOCUS cost export.
REQUIRED_COLUMNS = (
    "BilledCost", "BillingCurrency", "BillingPeriodStart", "BillingPeriodEnd",
    "ChargeCategory", "ProviderName", "SubAccountId",
)
# FOCUS 1.2 renamed ProviderName; a 1.2+ file may carry either name, or both.
PROVIDER_NAME_RENAMED = "ServiceProviderName"

# Characters the fingerprint's canonical form uses as separators; no cost export contains
# them, and refusing them keeps two different rows from ever sharing a canonical form.
_SEPARATORS = ("\x00", "\x1d", "\x1f")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_MAX_NUMBER_TEXT = 100
_SHOWN_VALUE = 40
PROGRESS_EVERY = 10_000


class CostFileRejected(ValidationFailed):
    """The cost file cannot be imported as it is; nothing was written.

    `line` is the 1-based CSV line (the header is line 1) where the problem starts, or None
    when the problem is the file as a whole; `column` names the FOCUS column concerned.
    """

    code = ErrorCode.INVALID_COST_FILE

    def __init__(self, message: str, *, line: int | None = None, column: str | None = None):
        if line is not None:
            message = f"line {line}: {message}"
        super().__init__(message, field="file")
        self.line = line
        self.column = column


class CostRow(NamedTuple):
    """One FOCUS row as the `cost_records` table stores it: the field names are its columns."""

    fingerprint: str
    billing_month: date
    billing_period_start: datetime
    billing_period_end: datetime
    charge_period_start: datetime | None
    charge_period_end: datetime | None
    provider_name: str
    publisher_name: str | None
    invoice_issuer_name: str | None
    billing_account_id: str | None
    billing_account_name: str | None
    sub_account_id: str
    sub_account_name: str | None
    billed_cost: Decimal
    billing_currency: str
    effective_cost: Decimal | None
    list_cost: Decimal | None
    list_unit_price: Decimal | None
    contracted_cost: Decimal | None
    contracted_unit_price: Decimal | None
    consumed_quantity: Decimal | None
    consumed_unit: str | None
    pricing_quantity: Decimal | None
    pricing_unit: str | None
    pricing_category: str | None
    service_name: str | None
    service_category: str | None
    charge_category: str
    charge_class: str | None
    charge_description: str | None
    charge_frequency: str | None
    region_id: str | None
    region_name: str | None
    availability_zone: str | None
    resource_id: str | None
    resource_name: str | None
    resource_type: str | None
    sku_id: str | None
    sku_price_id: str | None
    # JSON text (jsonb takes it as it is); canonical: sorted keys, no spaces.
    tags: str | None
    # JSON text of every other non-null column of the row, keyed by its FOCUS name.
    extra: str


@dataclass(frozen=True, slots=True)
class _Column:
    focus: str
    kind: str  # "text", "decimal", "timestamp", "currency" or "json"
    required: bool = False  # the value may not be null
    max_length: int | None = None  # the table's VARCHAR length
    null: Any = None  # what a null becomes


# The FOCUS columns the table has a column for, in `CostRow` order (after fingerprint and
# billing_month). Lengths mirror models/costs/records.py, so that a value the table would
# refuse is reported with its line instead of failing the whole COPY.
_COLUMNS = (
    _Column("BillingPeriodStart", "timestamp", required=True),
    _Column("BillingPeriodEnd", "timestamp", required=True),
    _Column("ChargePeriodStart", "timestamp"),
    _Column("ChargePeriodEnd", "timestamp"),
    _Column("ProviderName", "text", required=True, max_length=128),
    _Column("PublisherName", "text", max_length=255),
    _Column("InvoiceIssuerName", "text", max_length=255),
    _Column("BillingAccountId", "text", max_length=512),
    _Column("BillingAccountName", "text", max_length=512),
    # FOCUS lets SubAccountId be null for charges outside any sub-account: they are kept
    # under "" (the column is NOT NULL) so that the file's totals stay whole, and reported
    # as unmatched since no managed account can claim them.
    _Column("SubAccountId", "text", max_length=512, null=""),
    _Column("SubAccountName", "text", max_length=512),
    _Column("BilledCost", "decimal", required=True),
    _Column("BillingCurrency", "currency", required=True),
    _Column("EffectiveCost", "decimal"),
    _Column("ListCost", "decimal"),
    _Column("ListUnitPrice", "decimal"),
    _Column("ContractedCost", "decimal"),
    _Column("ContractedUnitPrice", "decimal"),
    _Column("ConsumedQuantity", "decimal"),
    _Column("ConsumedUnit", "text", max_length=128),
    _Column("PricingQuantity", "decimal"),
    _Column("PricingUnit", "text", max_length=128),
    _Column("PricingCategory", "text", max_length=64),
    _Column("ServiceName", "text", max_length=255),
    _Column("ServiceCategory", "text", max_length=128),
    _Column("ChargeCategory", "text", required=True, max_length=64),
    _Column("ChargeClass", "text", max_length=64),
    _Column("ChargeDescription", "text"),
    _Column("ChargeFrequency", "text", max_length=64),
    _Column("RegionId", "text", max_length=128),
    _Column("RegionName", "text", max_length=255),
    _Column("AvailabilityZone", "text", max_length=128),
    _Column("ResourceId", "text"),
    _Column("ResourceName", "text"),
    _Column("ResourceType", "text", max_length=255),
    _Column("SkuId", "text", max_length=255),
    _Column("SkuPriceId", "text", max_length=512),
    _Column("Tags", "json"),
)
_START, _END = 0, 1
_FIELDS = CostRow._fields[2:-1]  # the fields that come from `_COLUMNS`, in order
assert len(_COLUMNS) + 3 == len(CostRow._fields), "every CostRow field has a column"


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= _SHOWN_VALUE else raw[:_SHOWN_VALUE] + "…")


def parse_cost_decimal(raw: str) -> tuple[Decimal, str]:
    """The exact Decimal of a FOCUS number and its canonical text (equal numbers, however
    written, share it). Raises ValueError with the reason when the text is not a plain
    decimal number (no NaN, no infinity, no `1_000`) or NUMERIC(38,16) cannot hold it exactly."""
    if len(raw) > _MAX_NUMBER_TEXT or not _NUMBER.fullmatch(raw):
        raise ValueError("is not a number")
    value = Decimal(raw)
    if not value:
        return value, "0"
    try:
        normal = value.normalize(EXACT)
    except DecimalException:
        raise ValueError("has too many digits") from None
    _, digits, exponent = normal.as_tuple()
    if -exponent > COST_SCALE:
        raise ValueError(f"has more than {COST_SCALE} decimal places")
    if len(digits) + exponent > COST_INTEGER_DIGITS:
        raise ValueError(f"has more than {COST_INTEGER_DIGITS} digits before the decimal point")
    return value, str(normal)


def parse_focus_timestamp(raw: str) -> datetime:
    """A FOCUS date/time: `2024-09-01 00:00:00`, `2024-09-01T00:00:00Z`,
    `2024-09-01T00:00:00.000+00:00` and the other ISO 8601 forms. FOCUS times are UTC, so a
    time without an offset is taken as UTC. Raises ValueError when the text is not one."""
    value = datetime.fromisoformat(raw)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _text(column: _Column, raw: str) -> tuple[str, str]:
    if column.max_length and len(raw) > column.max_length:
        raise ValueError(f"is longer than {column.max_length} characters")
    return raw, raw


def _decimal(column: _Column, raw: str) -> tuple[Decimal, str]:
    return parse_cost_decimal(raw)


def _timestamp(column: _Column, raw: str) -> tuple[datetime, str]:
    try:
        value = parse_focus_timestamp(raw)
    except ValueError:
        raise ValueError("is not a date and time") from None
    # The canonical form is the instant, so that one provider's `Z` and another's `+00:00`
    # or space-separated form fingerprint alike.
    return value, value.astimezone(UTC).isoformat()


def _currency(column: _Column, raw: str) -> tuple[str, str]:
    if not _CURRENCY.fullmatch(raw):
        raise ValueError("is not a 3-letter currency code")
    return raw.upper(), raw.upper()


def _json_object(column: _Column, raw: str) -> tuple[str, str]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError("is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError("is not a JSON object")
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text, text


_PARSERS: dict[str, Callable[[_Column, str], tuple[Any, str]]] = {
    "text": _text,
    "decimal": _decimal,
    "timestamp": _timestamp,
    "currency": _currency,
    "json": _json_object,
}


@dataclass(order=True, slots=True)
class _Problem:
    """A refusal found while checking a column; the file is refused for the earliest."""

    line: int
    order: int  # within a line, the first column in `_COLUMNS` order
    message: str
    column: str | None


def _convert(
    column: _Column, order: int, raw_values: list[str], lines: list[int], problems: list[_Problem]
) -> tuple[list[str], dict[str, Any]]:
    """The canonical texts of one column of every row, and the value of each canonical text.

    Each distinct text is checked and converted once: cost exports repeat values (zero above
    all, and names, units and periods), so this is what keeps 100,000 rows fast. A bad value
    adds a problem at its first row and reads as null, so that the rest can still be checked.
    """
    parse = _PARSERS[column.kind]
    canonical_of: dict[str, str] = {}
    value_of: dict[str, Any] = {"": column.null}
    bad: dict[str, str] = {}
    for raw in set(raw_values):
        if raw == "" or raw == "NULL":
            if column.required:
                bad[raw] = f"{column.focus} is empty; FOCUS requires a value"
            canonical_of[raw] = ""
            continue
        try:
            value, canonical = parse(column, raw)
        except ValueError as error:
            bad[raw] = f"{column.focus} {_shown(raw)} {error}"
            canonical_of[raw] = ""
            continue
        canonical_of[raw] = canonical
        value_of[canonical] = value
    if bad:
        row = next(index for index, raw in enumerate(raw_values) if raw in bad)
        problems.append(_Problem(lines[row], order, bad[raw_values[row]], column.focus))
    if column.kind == "text" and "NULL" not in canonical_of:
        # Text is its own canonical form, and "" already is a null's.
        return raw_values, value_of
    return list(map(canonical_of.__getitem__, raw_values)), value_of


def decode_cost_file(data: bytes) -> str:
    """The text of a cost file: UTF-8 with or without a BOM (UTF-16 if it starts with a
    UTF-16 BOM, as some spreadsheet exports do)."""
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise CostFileRejected(
            f"the file is not UTF-8 text (byte 0x{data[error.start]:02x})", line=line
        ) from None


class FocusFile:
    """A parsed FOCUS file, held column by column (the shape the checks and the totals
    want), each column as canonical texts: the form the fingerprint is taken of, which is
    also text PostgreSQL reads as the column's type ("" is a null, but for sub_account_id).
    `lines` holds the CSV line each row starts on, for refusals found after parsing."""

    def __init__(
        self, texts: dict[str, list[str]], values: dict[str, dict[str, Any]], rows: int, lines: list[int]
    ):
        self._texts = texts
        self._values = values
        self.rows = rows
        self.lines = lines

    def texts(self, name: str) -> list[str]:
        """The canonical texts of a `CostRow` field, row by row."""
        return self._texts[name]

    def values(self, name: str) -> list[Any]:
        """The values (Decimal, datetime, str, None...) of a `CostRow` field, row by row."""
        texts = self._texts[name]
        value_of = self._values.get(name)
        return texts if value_of is None else list(map(value_of.__getitem__, texts))

    def __iter__(self) -> Iterator[CostRow]:
        return map(CostRow._make, zip(*(self.values(name) for name in CostRow._fields)))

    def __len__(self) -> int:
        return self.rows


def parse_focus(text: str, progress: Callable[[int], None] | None = None) -> FocusFile:
    """The rows of a FOCUS CSV text, in file order.

    Raises `CostFileRejected` for the header, or for the earliest row that cannot be stored
    as it is. `progress`, if given, is called with the number of rows read so far, every
    `PROGRESS_EVERY` rows and once at the end of reading.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    for separator in _SEPARATORS:
        position = text.find(separator)
        if position >= 0:
            raise CostFileRejected(
                f"the file contains the control character U+{ord(separator):04X}",
                line=text.count("\n", 0, position) + 1,
            )
    reader = csv.reader(_lines(text), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise CostFileRejected(f"the header is not valid CSV ({error})", line=1) from None
    if not header or not any(name.strip() for name in header):
        raise CostFileRejected("the file is empty; a FOCUS file starts with a header line", line=1)
    mapped, extra_columns = _header(header)

    records, lines, problems = _read(reader, len(header), progress)
    count = len(records)
    texts: dict[str, list[str]] = {}
    values: dict[str, dict[str, Any]] = {}
    for order, (name, column) in enumerate(zip(_FIELDS, _COLUMNS)):
        index = mapped.get(column.focus)
        if index is None:
            texts[name], values[name] = [""] * count, {"": column.null}
        else:
            texts[name], values[name] = _convert(
                column, order, list(map(itemgetter(index), records)), lines, problems
            )
    texts["extra"] = _extras(records, extra_columns)
    del records

    starts, start_of = texts["billing_period_start"], values["billing_period_start"]
    end_of = values["billing_period_end"]
    for row, (start, end) in enumerate(zip(starts, texts["billing_period_end"])):
        if start and end and end_of[end] <= start_of[start]:
            problems.append(_Problem(
                lines[row], _END, f"BillingPeriodEnd {end} is not after BillingPeriodStart {start}",
                "BillingPeriodEnd",
            ))
            break
    if problems:
        problem = min(problems)
        raise CostFileRejected(problem.message, line=problem.line, column=problem.column)

    # FOCUS times are UTC, and so is the month: the one the billing period starts in.
    month_of: dict[str, str] = {}
    values["billing_month"] = {}
    for start in set(starts):
        moment = start_of[start].astimezone(UTC)
        month = date(moment.year, moment.month, 1)
        month_of[start] = month.isoformat()
        values["billing_month"][month_of[start]] = month
    texts["billing_month"] = list(map(month_of.__getitem__, starts))
    texts["fingerprint"] = _fingerprints([texts[name] for name in _FIELDS], texts["extra"])
    return FocusFile(texts, values, count, lines)


def _lines(text: str) -> Iterator[str]:
    """The lines of the text, each with its line end. Not io.StringIO, which holds a copy of
    the text at four bytes a character; not str.splitlines, which also breaks at form feeds
    and Unicode line separators a value may hold."""
    start, find = 0, text.find
    while end := find("\n", start) + 1:
        yield text[start:end]
        start = end
    if start < len(text):
        yield text[start:]


def _header(header: list[str]) -> tuple[dict[str, int], list[tuple[str, int]]]:
    """Where each mapped FOCUS column is, and the other named columns sorted by name (so
    that the same data with its columns in another order fingerprints alike)."""
    positions: dict[str, int] = {}
    for index, name in enumerate(name.strip().lstrip("\ufeff") for name in header):
        if not name:
            # A column without a name (a trailing comma) carries nothing to keep.
            continue
        if name in positions:
            raise CostFileRejected(f"column {name} appears twice", line=1, column=name)
        positions[name] = index
    mapped = {
        column.focus: positions.pop(column.focus) for column in _COLUMNS if column.focus in positions
    }
    if PROVIDER_NAME_RENAMED in positions:
        # The current name wins; a deprecated ProviderName beside it stays in `extra`.
        if "ProviderName" in mapped:
            positions["ProviderName"] = mapped["ProviderName"]
        mapped["ProviderName"] = positions.pop(PROVIDER_NAME_RENAMED)
    missing = [name for name in REQUIRED_COLUMNS if name not in mapped]
    if missing:
        raise CostFileRejected(
            f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            line=1,
            column=", ".join(missing),
        )
    return mapped, sorted(positions.items())


def _read(reader, width: int, progress: Callable[[int], None] | None):
    """Every non-blank row (as its list of fields) and the line it starts on.

    The line is the reader's `line_num` after the previous row plus one, which stays right
    when a quoted field spans lines. A row with the wrong number of fields is a problem.
    """
    records: list[list[str]] = []
    lines: list[int] = []
    problems: list[_Problem] = []
    line = 1
    try:
        for fields in reader:
            start, line = line + 1, reader.line_num
            if len(fields) == width:
                records.append(fields)
                lines.append(start)
                if progress is not None and len(records) % PROGRESS_EVERY == 0:
                    progress(len(records))
            elif fields and not problems:
                problems.append(_Problem(
                    start, -1, f"the row has {len(fields)} fields but the header has {width}", None
                ))
    except csv.Error as error:
        raise CostFileRejected(f"not valid CSV ({error})", line=line + 1) from None
    if progress is not None:
        progress(len(records))
    return records, lines, problems


def _extras(records: list[list[str]], extra_columns: list[tuple[str, int]]) -> list[str]:
    """The `extra` JSON of every row: its other non-null columns, in name order. Each
    distinct `"name":"value"` pair is encoded once."""
    if not extra_columns:
        return ["{}"] * len(records)
    pair_columns = []
    for name, index in extra_columns:
        raw_values = list(map(itemgetter(index), records))
        key = json.dumps(name, ensure_ascii=False) + ":"
        pair_of = {
            raw: "" if raw == "" or raw == "NULL" else key + json.dumps(raw, ensure_ascii=False)
            for raw in set(raw_values)
        }
        pair_columns.append(map(pair_of.__getitem__, raw_values))
    return ["{" + ",".join(filter(None, pairs)) + "}" for pairs in zip(*pair_columns)]


def _fingerprints(canonical: list[list[str]], extras: list[str]) -> list[str]:
    """SHA-256 of each row's canonical values and of its occurrence number among identical
    rows of this file: both copies of a genuinely repeated row are kept, and importing the
    same file again (even re-exported with its columns in another order, or its timestamps
    or numbers written another way) matches every row."""
    seen: dict[bytes, int] = {}
    fingerprints: list[str] = []
    sha256 = hashlib.sha256
    for values in zip(*canonical, extras):
        digest = sha256("\x1f".join(values).encode())
        occurrence = seen.get(key := digest.digest(), 0)
        seen[key] = occurrence + 1
        digest.update(b"\x1d%d" % occurrence)
        fingerprints.append(digest.hexdigest())
    return fingerprints
