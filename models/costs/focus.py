"""FOCUS (FinOps Open Cost and Usage Specification, 1.0 and later) rows, checked and converted
a batch at a time with Arrow's vectorized kernels.

AWS, Azure, Google Cloud and Oracle all emit FOCUS, each with its own habits: columns in any
order, provider `x_` columns, `NULL` or an empty field for a null, timestamps written three
different ways, and in Parquet native types (decimals, timestamps with or without a zone, maps;
AWS types costs and quantities as doubles and Tags as a map). A batch is refused at its first
value that cannot be stored exactly, naming the row and the column.

Every money and quantity value becomes NUMERIC(38,16) straight from its text (or its Parquet
decimal, or a double's shortest decimal text), never through float arithmetic: an invoice
built on costs that were silently rounded on the way in cannot be reconciled with the
provider's bill. A value that would need rounding is refused; only a double past 16 places
is rounded, its last digits being the binary fraction's, not the provider's. Python looks at
single values only once a vectorized check has failed, to say which
value and why; the common path stays in Arrow's C++ kernels.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, DecimalException, Inexact

import pyarrow as pa
import pyarrow.compute as pc

from models.costs.json_text import json_strings
from models.errors import CostFileRejected

# The widest number a cost column holds: NUMERIC(38,16), 22 digits before the point.
COST_SCALE = 16
COST_INTEGER_DIGITS = 38 - COST_SCALE
COST_TYPE = pa.decimal128(38, COST_SCALE)
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

# Decimal arithmetic outside Arrow (sums in reports) uses this context: wide enough for any
# sum of NUMERIC(38,16) values a delivery can hold, and trapping Inexact so that a sum can
# never be rounded without an error.
EXACT = Context(prec=80, Emax=999_999, Emin=-999_999, traps=[Inexact])
_ROUND_DOUBLE = Context(prec=80, rounding=ROUND_HALF_EVEN)
_COST_QUANTUM = Decimal(1).scaleb(-COST_SCALE)

# FOCUS requires these columns; a file without one of them is not a FOCUS cost export.
REQUIRED_COLUMNS = (
    "BilledCost", "BillingCurrency", "BillingPeriodStart", "BillingPeriodEnd",
    "ChargeCategory", "ProviderName", "SubAccountId",
)
# FOCUS 1.2 renamed ProviderName; a 1.2+ file may carry either name, or both.
PROVIDER_NAME_RENAMED = "ServiceProviderName"
NULL_TEXTS = ("", "NULL")

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_MAX_NUMBER_TEXT = 100
_SHOWN_VALUE = 40
_ZONED = r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)$"
_CURRENCY = "^[A-Za-z]{3}$"


class RowProblem(Exception):
    """A refusal inside a batch: `index` is the row's 0-based position in the batch. The
    reader turns it into a `CostFileRejected` with the file's row and line."""

    def __init__(self, index: int, message: str, column: str | None):
        super().__init__(message)
        self.index = index
        self.message = message
        self.column = column


@dataclass(frozen=True, slots=True)
class Column:
    focus: str
    field: str  # the cost_records column
    kind: str  # "text", "decimal", "timestamp", "currency" or "json"
    required: bool = False  # the value may not be null
    max_length: int | None = None  # the table's VARCHAR length


# The FOCUS columns the table has a column for. Lengths mirror models/costs/records.py, so
# that a value the table would refuse is reported with its row instead of failing the COPY.
COLUMNS = (
    Column("BillingPeriodStart", "billing_period_start", "timestamp", required=True),
    Column("BillingPeriodEnd", "billing_period_end", "timestamp", required=True),
    Column("ChargePeriodStart", "charge_period_start", "timestamp"),
    Column("ChargePeriodEnd", "charge_period_end", "timestamp"),
    Column("ProviderName", "provider_name", "text", required=True, max_length=128),
    Column("PublisherName", "publisher_name", "text", max_length=255),
    Column("InvoiceIssuerName", "invoice_issuer_name", "text", max_length=255),
    Column("BillingAccountId", "billing_account_id", "text", max_length=512),
    Column("BillingAccountName", "billing_account_name", "text", max_length=512),
    # FOCUS lets SubAccountId be null for charges outside any sub-account: they are kept
    # under "" (the column is NOT NULL) so that the delivery's totals stay whole, and
    # reported as unmatched since no managed account can claim them.
    Column("SubAccountId", "sub_account_id", "text", max_length=512),
    Column("SubAccountName", "sub_account_name", "text", max_length=512),
    Column("BilledCost", "billed_cost", "decimal", required=True),
    Column("BillingCurrency", "billing_currency", "currency", required=True),
    Column("EffectiveCost", "effective_cost", "decimal"),
    Column("ListCost", "list_cost", "decimal"),
    Column("ListUnitPrice", "list_unit_price", "decimal"),
    Column("ContractedCost", "contracted_cost", "decimal"),
    Column("ContractedUnitPrice", "contracted_unit_price", "decimal"),
    Column("ConsumedQuantity", "consumed_quantity", "decimal"),
    Column("ConsumedUnit", "consumed_unit", "text", max_length=128),
    Column("PricingQuantity", "pricing_quantity", "decimal"),
    Column("PricingUnit", "pricing_unit", "text", max_length=128),
    Column("PricingCategory", "pricing_category", "text", max_length=64),
    Column("ServiceName", "service_name", "text", max_length=255),
    Column("ServiceCategory", "service_category", "text", max_length=128),
    Column("ChargeCategory", "charge_category", "text", required=True, max_length=64),
    Column("ChargeClass", "charge_class", "text", max_length=64),
    Column("ChargeDescription", "charge_description", "text"),
    Column("ChargeFrequency", "charge_frequency", "text", max_length=64),
    Column("RegionId", "region_id", "text", max_length=128),
    Column("RegionName", "region_name", "text", max_length=255),
    Column("AvailabilityZone", "availability_zone", "text", max_length=128),
    Column("ResourceId", "resource_id", "text"),
    Column("ResourceName", "resource_name", "text"),
    Column("ResourceType", "resource_type", "text", max_length=255),
    Column("SkuId", "sku_id", "text", max_length=255),
    Column("SkuPriceId", "sku_price_id", "text", max_length=512),
    Column("Tags", "tags", "json"),
)
_BY_FOCUS = {column.focus: column for column in COLUMNS}
# The columns of the FOCUS specification (1.0 to 1.3) that the table has no column for, kept
# in `extra` with the providers' `x_` columns. A Parquet part is read for these and COLUMNS
# only: a column no one defined is never decoded.
OTHER_FOCUS_COLUMNS = frozenset({
    "AllocatedMethodDetails", "AllocatedMethodId", "AllocatedResourceId", "AllocatedResourceName",
    "AllocatedTags", "BillingAccountType", "CapacityReservationId", "CapacityReservationStatus",
    "CommitmentDiscountCategory", "CommitmentDiscountId", "CommitmentDiscountName",
    "CommitmentDiscountQuantity", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "CommitmentDiscountUnit", "ContractApplied", "HostProviderName", "InvoiceId", "PricingCurrency",
    "PricingCurrencyContractedUnitPrice", "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice",
    "ServiceSubcategory", "SkuMeter", "SkuPriceDetails", "SubAccountType",
})

# The columns of a checked batch, in the order COPY receives them.
ROW_FIELDS = (
    "managed_account_id", "billing_month", *(column.field for column in COLUMNS), "extra",
)


def shown(raw: str) -> str:
    """A value as a refusal quotes it: repr, cut to a readable length."""
    return repr(raw if len(raw) <= _SHOWN_VALUE else raw[:_SHOWN_VALUE] + "…")


def parse_cost_decimal(raw: str) -> Decimal:
    """The exact Decimal of a FOCUS number. Raises ValueError with the reason when the text
    is not a plain decimal number (no NaN, no infinity, no `1_000`) or NUMERIC(38,16) cannot
    hold it exactly."""
    if len(raw) > _MAX_NUMBER_TEXT or not _NUMBER.fullmatch(raw):
        raise ValueError("is not a number")
    value = Decimal(raw)
    if not value:
        return value
    try:
        normal = value.normalize(EXACT)
    except DecimalException:
        raise ValueError("has too many digits") from None
    _, digits, exponent = normal.as_tuple()
    if not isinstance(exponent, int):  # NaN and infinity, which the pattern already refused
        raise ValueError("is not a number")
    if -exponent > COST_SCALE:
        raise ValueError(f"has more than {COST_SCALE} decimal places")
    if len(digits) + exponent > COST_INTEGER_DIGITS:
        raise ValueError(f"has more than {COST_INTEGER_DIGITS} digits before the decimal point")
    return value


def parse_focus_timestamp(raw: str) -> datetime:
    """A FOCUS date/time: `2024-09-01 00:00:00`, `2024-09-01T00:00:00Z`,
    `2024-09-01T00:00:00.000+00:00` and the other ISO 8601 forms. FOCUS times are UTC, so a
    time without an offset is taken as UTC. Raises ValueError when the text is not one."""
    value = datetime.fromisoformat(raw)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def header_of(names: list[str]) -> tuple[dict[str, int], list[tuple[str, int]]]:
    """Where each mapped FOCUS column is in a part's columns, and the other named columns
    sorted by name. Raises `RowProblem`-free `CostFileRejected` (line 1) for a duplicate or
    a missing required column; the caller adds the file."""
    positions: dict[str, int] = {}
    for index, name in enumerate(name.strip().lstrip("\ufeff") for name in names):
        if not name:
            # A column without a name (a trailing comma) carries nothing to keep.
            continue
        if name in positions:
            raise CostFileRejected(f"column {name} appears twice", line=1, column=name)
        positions[name] = index
    mapped = {focus: positions.pop(focus) for focus in _BY_FOCUS if focus in positions}
    if PROVIDER_NAME_RENAMED in positions:
        # The current name wins; a deprecated ProviderName beside it stays in `extra`.
        if "ProviderName" in mapped:
            positions["ProviderName"] = mapped["ProviderName"]
        mapped["ProviderName"] = positions.pop(PROVIDER_NAME_RENAMED)
    missing = [name for name in REQUIRED_COLUMNS if name not in mapped]
    if missing:
        raise CostFileRejected(
            f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            line=1, column=", ".join(missing),
        )
    return mapped, sorted(positions.items())


def is_focus_column(name: str) -> bool:
    """Whether a column is one FOCUS defines, or a provider's `x_` column."""
    name = name.strip().lstrip("\ufeff")
    return (
        name in _BY_FOCUS or name == PROVIDER_NAME_RENAMED or name in OTHER_FOCUS_COLUMNS or name.startswith("x_")
    )


def _first(mask: pa.Array) -> int | None:
    """The index of the first true value of a boolean array (nulls are false), or None."""
    if not pc.any(mask).as_py():
        return None
    return pc.index(pc.fill_null(mask, False), True).as_py()


def _as_text(array: pa.Array, nulls_read: bool = False) -> pa.Array:
    """Any column as UTF-8 text with FOCUS nulls ("" and NULL) as nulls. `nulls_read`: the
    reader made them nulls already (Arrow's CSV reader, told NULL_TEXTS), so a text column
    is taken as it is."""
    if nulls_read and pa.types.is_string(array.type):
        return array
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if not pa.types.is_string(array.type):
        if pa.types.is_large_string(array.type):
            array = array.cast(pa.string())
        elif pa.types.is_nested(array.type):
            # A map (AWS types Tags so) is the JSON object it stands for, not a list of pairs.
            plain = dict if pa.types.is_map(array.type) else (lambda value: value)
            array = pa.array(
                [None if value is None else json.dumps(plain(value), default=str) for value in array.to_pylist()],
                pa.string(),
            )
        else:
            array = array.cast(pa.string())
    null = pc.or_(pc.equal(array, ""), pc.equal(array, "NULL"))
    if pc.any(null).as_py():
        array = pc.if_else(null, pa.scalar(None, pa.string()), array)
    return array


def _decimal(column: Column, array: pa.Array, nulls_read: bool = False) -> pa.Array:
    """The column as NUMERIC(38,16) decimals (COST_TYPE) once each value is known to fit
    exactly: binary COPY sends them as PostgreSQL's own NUMERIC, which it reads without
    parsing text."""
    if pa.types.is_decimal(array.type) or pa.types.is_integer(array.type):
        try:
            return array.cast(COST_TYPE)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            array = array.cast(pa.string())
    elif pa.types.is_floating(array.type):
        return _double(column, array)
    text = _as_text(array, nulls_read)
    try:
        return text.cast(COST_TYPE)
    except pa.ArrowInvalid:
        pass
    # Forms Arrow's cast does not read (a long exponent) but the exact parser does; or the
    # first value that is not a number that fits.
    values: list[Decimal | None] = []
    for index, raw in enumerate(text.to_pylist()):
        if raw is None:
            values.append(None)
            continue
        try:
            values.append(parse_cost_decimal(raw))
        except ValueError as error:
            raise RowProblem(index, f"{column.focus} {shown(raw)} {error}", column.focus) from None
    return pa.array(values, COST_TYPE)


def _double(column: Column, array: pa.Array) -> pa.Array:
    """A double column (AWS types costs and quantities so) as NUMERIC(38,16) decimals: each
    value's shortest decimal that reads back as the same double (Python's repr, Arrow's
    cast), which is what the provider meant and what its CSV export writes; rounded half-even
    to 16 places when it has more (a double carries 17 significant digits at most)."""
    text = array.cast(pa.string())
    try:
        return text.cast(COST_TYPE)
    except pa.ArrowInvalid:
        pass
    values: list[Decimal | None] = []
    for index, raw in enumerate(text.to_pylist()):
        if raw is None:
            values.append(None)
            continue
        try:
            exact = Decimal(raw)
            if not exact.is_finite():
                raise ValueError("is not a number")
            if exact.as_tuple().exponent < -COST_SCALE:  # type: ignore[operator]
                exact = exact.quantize(_COST_QUANTUM, context=_ROUND_DOUBLE)
            values.append(parse_cost_decimal(format(exact, "f")))
        except ValueError as error:
            raise RowProblem(index, f"{column.focus} {shown(raw)} {error}", column.focus) from None
    return pa.array(values, COST_TYPE)


def _timestamp(column: Column, array: pa.Array, nulls_read: bool = False) -> pa.Array:
    if pa.types.is_timestamp(array.type):
        # A timestamp without a zone is UTC's wall clock, as FOCUS says.
        return array.cast(pa.timestamp("us", tz=array.type.tz or "UTC")).cast(TIMESTAMP_TYPE)
    if pa.types.is_date(array.type):
        return array.cast(pa.timestamp("us")).cast(TIMESTAMP_TYPE)
    text = _as_text(array, nulls_read)
    try:
        # Most exports write every time with its offset (`Z`): then Arrow reads them as they are.
        return text.cast(TIMESTAMP_TYPE)
    except pa.ArrowInvalid:
        pass
    zoned = pc.match_substring_regex(text, _ZONED)
    utc = pc.if_else(zoned, text, pc.binary_join_element_wise(text, "Z", ""))
    try:
        return utc.cast(TIMESTAMP_TYPE)
    except pa.ArrowInvalid:
        pass
    values: list[datetime | None] = []
    for index, raw in enumerate(text.to_pylist()):
        if raw is None:
            values.append(None)
            continue
        try:
            values.append(parse_focus_timestamp(raw))
        except ValueError:
            raise RowProblem(index, f"{column.focus} {shown(raw)} is not a date and time", column.focus) from None
    return pa.array(values, TIMESTAMP_TYPE)


def _text(column: Column, array: pa.Array, nulls_read: bool = False) -> pa.Array:
    text = _as_text(array, nulls_read)
    # A text has at most as many characters as bytes: its characters are counted only when
    # its bytes could be too many.
    if column.max_length is not None and (pc.max(pc.binary_length(text)).as_py() or 0) > column.max_length:
        bad = _first(pc.greater(pc.utf8_length(text), column.max_length))
        if bad is not None:
            raise RowProblem(
                bad, f"{column.focus} {shown(text[bad].as_py())} is longer than {column.max_length} characters",
                column.focus,
            )
    return text


def _currency(column: Column, array: pa.Array, nulls_read: bool = False) -> pa.Array:
    text = _as_text(array, nulls_read)
    bad = _first(pc.invert(pc.match_substring_regex(text, _CURRENCY)))
    if bad is not None:
        raise RowProblem(bad, f"{column.focus} {shown(text[bad].as_py())} is not a 3-letter currency code", column.focus)
    return pc.utf8_upper(text)


def _json_object(column: Column, array: pa.Array, nulls_read: bool = False) -> pa.Array:
    text = _as_text(array, nulls_read)
    # Tags repeat from row to row (per resource): each distinct text is checked once.
    for raw in pc.unique(text).to_pylist():
        if raw is None:
            continue
        try:
            value = json.loads(raw)
            reason = None if isinstance(value, dict) else "is not a JSON object"
        except ValueError:
            reason = "is not valid JSON"
        if reason:
            index = pc.index(text, raw).as_py()
            raise RowProblem(index, f"{column.focus} {shown(raw)} {reason}", column.focus)
    return text


_CONVERT = {
    "text": _text, "decimal": _decimal, "timestamp": _timestamp,
    "currency": _currency, "json": _json_object,
}


def _extra(columns: list[tuple[str, pa.Array]], rows: int, nulls_read: bool = False) -> pa.Array:
    """The `extra` JSON object of every row: its other non-null columns, in name order."""
    if not columns:
        return pa.repeat(pa.scalar("{}"), rows)
    # Each pair with its comma in front, "" when null; the first comma is cut at the end.
    # (Not null_handling="skip": it drops the rows whose values are all null.)
    pairs = [
        pc.fill_null(
            pc.binary_join_element_wise("," + json.dumps(name, ensure_ascii=False) + ":", json_strings(_as_text(array, nulls_read)), ""),
            "",
        )
        for name, array in columns
    ]
    body = pc.utf8_ltrim(pc.binary_join_element_wise(*pairs, ""), ",") if len(pairs) > 1 else pc.utf8_ltrim(pairs[0], ",")
    return pc.binary_join_element_wise("{", body, "}", "")


@dataclass(slots=True)
class CheckedBatch:
    """A batch ready for COPY, with the keys the report and supersession group by."""

    table: pa.Table  # columns ROW_FIELDS
    rows: int


class BatchChecker:
    """Checks and converts the batches of one part, whose column names it is given.

    `account_keys`/`account_ids` map sub-account ids to managed account ids (text);
    `only_account` (with its name) makes every row's sub-account have to be that account's.
    `nulls_read`: the part's reader made FOCUS's null texts nulls already (CSV).
    """

    def __init__(
        self, names: list[str], account_keys: pa.Array, account_ids: pa.Array,
        only_account: tuple[str, str] | None = None, nulls_read: bool = False,
    ):
        self.mapped, self.extra_columns = header_of(names)
        self.account_keys = account_keys
        self.account_ids = account_ids
        self.only_account = only_account
        self.nulls_read = nulls_read

    def check(self, batch: pa.RecordBatch) -> CheckedBatch:
        """The batch converted for COPY; raises `RowProblem` for its earliest bad row (the
        first problem of each column is found, and the earliest row among them wins)."""
        rows = batch.num_rows
        converted: dict[str, pa.Array] = {}
        problems: list[tuple[int, int, RowProblem]] = []
        for order, column in enumerate(COLUMNS):
            index = self.mapped.get(column.focus)
            if index is None:
                converted[column.field] = pa.nulls(rows, _type_of(column))
                continue
            array = batch.column(index)
            try:
                value = _CONVERT[column.kind](column, array, self.nulls_read)
                if column.required:
                    bad = _first(pc.is_null(value))
                    if bad is not None:
                        raise RowProblem(bad, f"{column.focus} is empty; FOCUS requires a value", column.focus)
            except RowProblem as problem:
                problems.append((problem.index, order, problem))
                value = pa.nulls(rows, _type_of(column))
            converted[column.field] = value
        start, end = converted["billing_period_start"], converted["billing_period_end"]
        bad = _first(pc.less_equal(end, start))
        if bad is not None:
            problems.append((bad, 1, RowProblem(
                bad, f"BillingPeriodEnd {_iso(end[bad])} is not after BillingPeriodStart {_iso(start[bad])}",
                "BillingPeriodEnd",
            )))
        sub_accounts = pc.fill_null(converted["sub_account_id"], "")
        converted["sub_account_id"] = sub_accounts
        accounts = pc.take(self.account_ids, pc.index_in(sub_accounts, value_set=self.account_keys))
        if self.only_account is not None:
            account_id, account_name = self.only_account
            bad = _first(pc.invert(pc.fill_null(pc.equal(accounts, account_id), False)))
            if bad is not None:
                sub_account = sub_accounts[bad].as_py()
                problems.append((bad, -1, RowProblem(
                    bad, f"sub-account {sub_account or '(none)'} is not one of {account_name}'s; "
                    "a file of its own integration holds only its costs", "SubAccountId",
                )))
        if problems:
            raise min(problems, key=lambda problem: problem[:2])[2]
        # FOCUS times are UTC, and so is the month: the one the billing period starts in.
        month = pc.floor_temporal(start, unit="month").cast(pa.timestamp("us")).cast(pa.date32())
        extra = _extra([(name, batch.column(index)) for name, index in self.extra_columns], rows, self.nulls_read)
        arrays = [accounts, month, *(converted[column.field] for column in COLUMNS), extra]
        return CheckedBatch(pa.Table.from_arrays(arrays, names=list(ROW_FIELDS)), rows)


def _iso(value: pa.Scalar) -> str:
    return value.as_py().astimezone(UTC).isoformat()


def _type_of(column: Column) -> pa.DataType:
    return {"timestamp": TIMESTAMP_TYPE, "decimal": COST_TYPE}.get(column.kind, pa.string())


def months_of(batch: pa.RecordBatch, names: list[str]) -> set[date]:
    """The billing months a batch's rows name, or none when they cannot be read yet (the
    import proper reports why)."""
    try:
        mapped, _ = header_of(names)
        start = _timestamp(_BY_FOCUS["BillingPeriodStart"], batch.column(mapped["BillingPeriodStart"]))
    except (CostFileRejected, RowProblem, pa.ArrowException):
        return set()
    months = pc.unique(pc.floor_temporal(pc.drop_null(start), unit="month").cast(pa.timestamp("us")).cast(pa.date32()))
    return set(months.to_pylist())

