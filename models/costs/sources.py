"""The part files of a cost delivery and their rows in batches (how a delivery is laid out
and unpacked is `deliveries`).

Each part is CSV, gzip CSV or Parquet whatever its name says. Batches stream with bounded memory:
Arrow reads CSV a block at a time and Parquet a batch at a time.

When Arrow refuses a file, its message never reaches a client: the part is read again with
Python's csv, gzip or the Parquet footer to say, in our words, where and why (an error path
only, so its speed does not matter).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from models.costs.focus import NULL_TEXTS, CostFileRejected

CSV_BLOCK_BYTES = 8 << 20
PARQUET_BATCH_ROWS = 32_768
_SNIFF_BYTES = 1 << 16


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
    """The part's rows, a batch at a time, every column as Arrow read it (CSV: text).
    Raises `CostFileRejected` (naming the part) when the file cannot be read."""
    if part.kind == "parquet":
        yield from _parquet_batches(part)
    else:
        yield from _csv_batches(part)


def _parquet_batches(part: Part) -> Iterator[Batch]:
    try:
        parquet = pq.ParquetFile(part.path)
        names = parquet.schema_arrow.names
        batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS)
    except (pa.ArrowException, OSError):
        raise CostFileRejected("the Parquet file is damaged or incomplete", file=part.name) from None
    row = 0
    while True:
        try:
            data = next(batches, None)
        except (pa.ArrowException, OSError):
            raise CostFileRejected(
                "the Parquet file is damaged or incomplete", row=row + 1, file=part.name
            ) from None
        if data is None:
            return
        yield Batch(part, names, data, row)
        row += data.num_rows


def _open_text(part: Part) -> io.BufferedReader | gzip.GzipFile:
    raw = part.path.open("rb")
    return gzip.open(raw) if part.kind == "csv.gz" else raw


def header_names(part: Part) -> tuple[list[str], str]:
    """The header's column names and the text encoding, read with Python's csv (Arrow is
    told every column is text, so that it never guesses a type and fails a later block)."""
    try:
        with _open_text(part) as stream:
            head = stream.read(_SNIFF_BYTES)
    except (OSError, EOFError, zlib.error):
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
    try:
        stream = pa.input_stream(str(part.path), compression="gzip" if part.kind == "csv.gz" else None)
        reader = pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, encoding=encoding, use_threads=True),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                null_values=list(NULL_TEXTS), strings_can_be_null=True, quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, OSError):
        raise explain_csv_failure(part, 0) from None
    row = 0
    with stream:
        while True:
            try:
                data = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowException, OSError):
                raise explain_csv_failure(part, row) from None
            yield Batch(part, names, data, row)
            row += data.num_rows


def explain_csv_failure(part: Part, from_row: int) -> CostFileRejected:
    """Why Arrow could not read a CSV part, found again with Python: the gzip stream, the
    UTF-8 text, then each row's number of fields, with the line."""
    try:
        with _open_text(part) as stream:
            while stream.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error):
        return CostFileRejected("the gzip file is damaged or truncated", file=part.name)
    with _open_text(part) as stream:
        line = 0
        for raw in stream:
            line += 1
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                return CostFileRejected(
                    f"the file is not UTF-8 text (byte 0x{raw[error.start]:02x})", line=line, file=part.name
                )
    with _open_text(part) as stream:
        reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""), strict=True)
        line = 1
        width = None
        try:
            for fields in reader:
                start, line = line, reader.line_num + 1
                if width is None:
                    width = len(fields)
                elif fields and len(fields) != width:
                    return CostFileRejected(
                        f"the row has {len(fields)} fields but the header has {width}", line=start, file=part.name
                    )
        except csv.Error as error:
            return CostFileRejected(f"not valid CSV ({error})", line=line, file=part.name)
    return CostFileRejected("the file is not CSV that can be read", row=from_row + 1, file=part.name)


def line_of_row(part: Part, row: int) -> int | None:
    """The CSV line (1-based, the header is line 1) data row `row` (0-based) starts on,
    counting the lines of quoted values that span several; None for Parquet."""
    if part.kind == "parquet":
        return None
    with _open_text(part) as stream:
        reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))
        next(reader, None)
        line, seen = reader.line_num, 0
        for fields in reader:
            if fields:
                if seen == row:
                    return line + 1
                seen += 1
            line = reader.line_num
    return None
