"""The part files of a cost delivery and their rows in batches (how a delivery is laid out
and unpacked is `deliveries`).

Each part is CSV, gzip CSV or Parquet whatever its name says. Batches stream with bounded memory,
whatever a small file decodes to: Arrow reads CSV a block at a time; Parquet is read by its
FOCUS columns only, a row group at a time once its size in the footer is within the setting,
strings as dictionaries, in batches cut to BATCH_BYTES of decoded values. A row longer than
the `cost_row_max_bytes` setting is refused, naming it.

When Arrow refuses a file, its message never reaches a client: the part is read again with
Python's csv, gzip or the Parquet footer, a chunk at a time, to say, in our words, where and
why (an error path only, so its speed does not matter)."""

from __future__ import annotations

import bisect
import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from isal import igzip, isal_zlib

from infra.settings import get_settings
from models.costs.focus import NULL_TEXTS, header_of, is_focus_column
from models.errors import CostFileRejected

CSV_BLOCK_BYTES = 8 << 20
PARQUET_BATCH_ROWS = 32_768
# Values a Parquet batch may hold once decoded; CSV's are bounded by CSV_BLOCK_BYTES.
BATCH_BYTES = 8 << 20
_TEXT_CHUNK = 1 << 20
_SNIFF_BYTES = 1 << 16

# A CSV row Arrow read fits in one of its blocks: Python's csv may read fields that long
# when it finds a row's line again (its default, 128 KiB, is shorter than many).
csv.field_size_limit(CSV_BLOCK_BYTES)


@dataclass(frozen=True, slots=True)
class Part:
    """One file of a delivery: where it is, the name refusals give it, and its format."""

    path: Path
    name: str
    kind: str  # "csv", "csv.gz" or "parquet"


@dataclass(slots=True)
class Batch:
    """Rows of a part: `first_row` is the 0-based data row of the part the batch starts at."""

    part: Part
    names: list[str]
    data: pa.RecordBatch
    first_row: int


# --------------------------------------------------------------------------- reading


def read_batches(part: Part) -> Iterator[Batch]:
    """The part's rows, a batch at a time, every column as Arrow read it (CSV: text; Parquet:
    its FOCUS columns only, strings as dictionaries). A batch holds at most about
    BATCH_BYTES of values, and no row more than the `cost_row_max_bytes` setting.
    Raises `CostFileRejected` (naming the part) when the file cannot be read."""
    if part.kind == "parquet":
        yield from _parquet_batches(part)
    else:
        yield from _csv_batches(part)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def _row_bytes(array: pa.Array) -> pa.Array:
    """The bytes of each value of the array (int64) as it is once decoded: a dictionary's
    values counted for every row that refers to them, lists and maps as their items' sum."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return pc.fill_null(pc.take(_row_bytes(array.dictionary), array.indices), 0)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        return pc.fill_null(pc.binary_length(array), 0).cast(pa.int64())
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        items = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(_row_bytes(array.values))])
        offsets = array.offsets
        return pc.subtract(pc.take(items, offsets.slice(1)), pc.take(items, offsets.slice(0, len(array))))
    if pa.types.is_struct(kind):
        total = pa.repeat(pa.scalar(0, pa.int64()), len(array))
        for field in array.flatten():
            total = pc.add(total, _row_bytes(field))
        return total
    width = max(kind.bit_width // 8, 1) if pa.types.is_primitive(kind) else 8
    return pa.repeat(pa.scalar(width, pa.int64()), len(array))


def _batch_row_bytes(data: pa.RecordBatch) -> pa.Array:
    total = pa.repeat(pa.scalar(0, pa.int64()), data.num_rows)
    for column in data.columns:
        total = pc.add(total, _row_bytes(column))
    return total


def _longest_row(sizes: pa.Array) -> tuple[int, int] | None:
    """The first row longer than the setting allows, with its size; None when none is."""
    over = pc.greater(sizes, get_settings().cost_row_max_bytes)
    if not pc.any(over).as_py():
        return None
    index = pc.index(over, True).as_py()
    return index, sizes[index].as_py()


def _too_long(size: int) -> str:
    return f"the row holds {_mib(size)}, more than the {_mib(get_settings().cost_row_max_bytes)} a row may hold"


def _byte_slices(sizes: pa.Array, limit: int) -> Iterator[tuple[int, int]]:
    """Consecutive (start, end) row ranges each holding at most `limit` bytes (or one row)."""
    ends = pc.cumulative_sum(sizes).to_pylist()
    start = 0
    while start < len(ends):
        base = ends[start - 1] if start else 0
        end = max(bisect.bisect_right(ends, base + limit), start + 1)
        yield start, end
        start = end


def _parquet_batches(part: Part) -> Iterator[Batch]:
    """A row group at a time, once its size says reading it stays within the setting; its
    FOCUS columns only, strings as dictionaries (a value repeated on every row is decoded
    once), in batches cut to BATCH_BYTES of values once decoded."""
    try:
        probe = pq.ParquetFile(part.path)
        names = probe.schema_arrow.names
    except (pa.ArrowException, OSError):
        raise CostFileRejected("the Parquet file is damaged or incomplete", file=part.name) from None
    try:
        header_of(names)
    except CostFileRejected as refused:
        raise refused.placed(file=part.name) from None
    read = [name for name in names if is_focus_column(name)]
    try:
        strings = [
            column.path for column in probe.schema
            if column.physical_type == "BYTE_ARRAY" and column.path.split(".", 1)[0] in read
        ]
        parquet = pq.ParquetFile(part.path, read_dictionary=strings, buffer_size=1 << 20, pre_buffer=False)
        metadata = parquet.metadata
    except (pa.ArrowException, OSError):
        raise CostFileRejected("the Parquet file is damaged or incomplete", file=part.name) from None
    limit, row_limit = get_settings().cost_parquet_row_group_max_bytes, get_settings().cost_row_max_bytes
    wanted = set(read)
    row = 0
    for group in range(metadata.num_row_groups):
        chunks = metadata.row_group(group)
        size = 0
        for index in range(chunks.num_columns):
            chunk = chunks.column(index)
            top, _, inner = chunk.path_in_schema.partition(".")
            if top in wanted:
                # A nested column's values take 8 bytes or more each once decoded (offsets,
                # levels), however few its run-length encoded levels weigh in the file; and
                # one row may hold them all.
                size += chunk.total_uncompressed_size + (8 * chunk.num_values if inner else 0)
        if size > limit:
            raise CostFileRejected(
                f"the row group starting at this row holds {_mib(size)} of FOCUS columns, more than the "
                f"{_mib(limit)} one may hold; export with smaller row groups", row=row + 1, file=part.name,
            )
        rows = max(chunks.num_rows, 1)
        if size // rows > row_limit:
            raise CostFileRejected(_too_long(size // rows), row=row + 1, file=part.name)
        # Rows per batch such that a batch decodes to about BATCH_BYTES, however large the
        # row group: real exports write row groups of hundreds of MiB.
        batch_rows = max(1, min(PARQUET_BATCH_ROWS, BATCH_BYTES * rows // max(size, 1)))
        batches = parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=read)
        while True:
            try:
                data = next(batches, None)
            except (pa.ArrowException, OSError):
                raise CostFileRejected(
                    "the Parquet file is damaged or incomplete", row=row + 1, file=part.name
                ) from None
            if data is None:
                break
            sizes = _batch_row_bytes(data)
            longest = _longest_row(sizes)
            if longest is not None:
                raise CostFileRejected(_too_long(longest[1]), row=row + longest[0] + 1, file=part.name)
            for start, end in _byte_slices(sizes, BATCH_BYTES):
                yield Batch(part, data.schema.names, data.slice(start, end - start), row + start)
            row += data.num_rows


# What reading a damaged gzip stream raises: cut short (EOFError), not gzip or trailing bytes
# that are not (BadGzipFile, an OSError), a bad deflate block or checksum (IsalError).
# (isal's stubs declare its error as an instance: the class is cast.)
GZIP_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, cast(type[Exception], isal_zlib.error))


def _open_text(part: Part) -> io.BufferedReader | igzip.IGzipFile:
    """The part's bytes, inflated when it is gzip: by ISA-L's igzip, which reads what Python's
    gzip reads (members one after the other, zero padding after the last) about six times as
    fast, with the GIL released while it inflates."""
    return igzip.open(part.path, "rb") if part.kind == "csv.gz" else part.path.open("rb")


def header_names(part: Part) -> tuple[list[str], str]:
    """The header's column names and the text encoding, read with Python's csv (Arrow is
    told every column is text, so that it never guesses a type and fails a later block)."""
    try:
        with _open_text(part) as stream:
            head = stream.read(_SNIFF_BYTES)
    except GZIP_ERRORS:
        raise CostFileRejected("the gzip file is damaged or truncated", file=part.name) from None
    encoding = "utf-8"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    try:
        text = head.decode(encoding if encoding == "utf-16" else "utf-8-sig", errors="strict")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not just a character cut at the end of the sample
            raise _not_utf8(head, error.start, part) from None
        text = head[: error.start].decode("utf-8-sig")
    if len(head) == _SNIFF_BYTES and "\n" not in text and "\r" not in text:
        raise CostFileRejected(
            f"the header line is longer than {_SNIFF_BYTES >> 10} KiB; a FOCUS header names a few dozen columns",
            line=1, file=part.name,
        )
    first = next(csv.reader(io.StringIO(text)), None)
    if not first or not any(name.strip() for name in first):
        raise CostFileRejected(
            "the file is empty; a FOCUS file starts with a header line", line=1, file=part.name
        )
    return first, encoding


def _not_utf8(data: bytes, position: int, part: Part) -> CostFileRejected:
    return CostFileRejected(
        f"the file is not UTF-8 text (byte 0x{data[position]:02x})",
        line=data.count(b"\n", 0, position) + 1, file=part.name,
    )


def _csv_batches(part: Part) -> Iterator[Batch]:
    names, encoding = header_names(part)
    # Arrow's own gzip stream inflates with zlib: igzip, as a Python file, does it in a
    # fraction of the time, on Arrow's reading thread, ahead of the parsing.
    stream = pa.PythonFile(_open_text(part), mode="r") if part.kind == "csv.gz" else pa.input_stream(str(part.path))
    try:
        reader = pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, encoding=encoding, use_threads=True),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                null_values=list(NULL_TEXTS), strings_can_be_null=True, quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, *GZIP_ERRORS):
        stream.close()
        raise explain_csv_failure(part, 0) from None
    row = 0
    with stream:
        while True:
            try:
                data = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowException, *GZIP_ERRORS):
                raise explain_csv_failure(part, row) from None
            longest = _longest_row(_batch_row_bytes(data))
            if longest is not None:
                at = row + longest[0]
                raise CostFileRejected(_too_long(longest[1]), line=line_of_row(part, at), row=at + 1, file=part.name)
            yield Batch(part, names, data, row)
            row += data.num_rows


def explain_csv_failure(part: Part, from_row: int) -> CostFileRejected:
    """Why Arrow could not read a CSV part, found again with Python a chunk at a time: the
    gzip stream, then the UTF-8 text and each line's length, then each row's number of
    fields and size, with the line."""
    try:
        with _open_text(part) as stream:
            while stream.read(_TEXT_CHUNK):
                pass
    except GZIP_ERRORS:
        return CostFileRejected("the gzip file is damaged or truncated", file=part.name)
    limit = get_settings().cost_row_max_bytes
    refused = _check_lines(part, limit)
    if refused is not None:
        return refused
    with _open_text(part) as stream:
        record = _RecordBytes(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""), limit)
        reader = csv.reader(record, strict=True)
        line = 1
        width = None
        try:
            for fields in reader:
                record.size = 0
                start, line = line, reader.line_num + 1
                if width is None:
                    width = len(fields)
                elif fields and len(fields) != width:
                    return CostFileRejected(
                        f"the row has {len(fields)} fields but the header has {width}", line=start, file=part.name
                    )
        except _RowTooLong:
            return CostFileRejected(
                f"the row starting on this line is longer than the {_mib(limit)} a row may hold",
                line=line, file=part.name,
            )
        except csv.Error as error:
            return CostFileRejected(f"not valid CSV ({error})", line=line, file=part.name)
    return CostFileRejected("the file is not CSV that can be read", row=from_row + 1, file=part.name)


class _RowTooLong(Exception):
    pass


class _RecordBytes:
    """The lines of a text stream for csv.reader, which asks for one more only while its row
    goes on: `size` (set to 0 at each row) counts the row's bytes so far, so that a row of
    many quoted lines is refused once past `limit` instead of being held whole."""

    def __init__(self, lines: Iterator[str], limit: int):
        self.lines = lines
        self.limit = limit
        self.size = 0

    def __iter__(self) -> _RecordBytes:
        return self

    def __next__(self) -> str:
        text = next(self.lines)
        self.size += len(text.encode())
        if self.size > self.limit:
            raise _RowTooLong
        return text


def _check_lines(part: Part, limit: int) -> CostFileRejected | None:
    """The first line that is not UTF-8 or is longer than `limit` bytes, read a chunk at a
    time (a character may straddle two chunks); None when every line is fine."""
    line, length, carry = 1, 0, b""
    with _open_text(part) as stream:
        while True:
            chunk = stream.read(_TEXT_CHUNK)
            data = carry + chunk
            try:
                data.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as error:
                if chunk and error.reason == "unexpected end of data":
                    data, carry = data[: error.start], data[error.start:]
                else:
                    return CostFileRejected(
                        f"the file is not UTF-8 text (byte 0x{data[error.start]:02x})",
                        line=line + data.count(b"\n", 0, error.start), file=part.name,
                    )
            pieces = data.split(b"\n")
            for index, piece in enumerate(pieces):
                length = length + len(piece) if index == 0 else len(piece)
                if length > limit:
                    return CostFileRejected(
                        f"the line is longer than the {_mib(limit)} a row may hold", line=line + index, file=part.name
                    )
            line += len(pieces) - 1
            if not chunk:
                return None


def line_of_row(part: Part, row: int) -> int | None:
    """The CSV line (1-based, the header is line 1) data row `row` (0-based) starts on,
    counting the lines of quoted values that span several; None for Parquet."""
    if part.kind == "parquet":
        return None
    with _open_text(part) as stream:
        reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))
        try:
            next(reader, None)
            line, seen = reader.line_num, 0
            for fields in reader:
                if fields:
                    if seen == row:
                        return line + 1
                    seen += 1
                line = reader.line_num
        except csv.Error:
            # Python's csv holds a value of at most CSV_BLOCK_BYTES; only the row refused for
            # its size may be longer, and its first line is known by then.
            return line + 1 if seen == row else None
    return None
