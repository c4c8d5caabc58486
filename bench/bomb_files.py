"""Small cost files that decode to far more than they weigh, for the bounds of the cost
import (bench/bombs.py sends them; the tests import them in a worker process).

Each builder writes its file at `path` and returns the path.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_HEADER = (
    "BilledCost,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargeCategory,ProviderName,"
    "SubAccountId,ChargeDescription\n"
)
_CHUNK = 1 << 20


def parquet_wide_strings(path: Path, *, rows: int = 512, value_bytes: int = 2 << 20) -> Path:
    """A FOCUS Parquet part of a few KiB whose rows each hold a `value_bytes` string in a
    FOCUS column (ChargeDescription) and in a column FOCUS does not know (`Padding`): one
    dictionary value each, so that the file stays tiny while reading it plainly decodes
    rows x value_bytes per column (1 GiB each by default)."""
    wide = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array(["a" * value_bytes]))
    table = pa.table({
        "BilledCost": pa.array([1.25] * rows),
        "BillingCurrency": pa.array(["USD"] * rows),
        "BillingPeriodStart": pa.array([0] * rows, pa.timestamp("ms")),
        "BillingPeriodEnd": pa.array([2_678_400_000] * rows, pa.timestamp("ms")),
        "ChargeCategory": pa.array(["Usage"] * rows),
        "ProviderName": pa.array(["AWS"] * rows),
        "SubAccountId": pa.array(["111111111111"] * rows),
        "ChargeDescription": wide,
        "Padding": wide,
    })
    pq.write_table(table, path, compression="zstd", compression_level=19)
    return path


def gzip_one_line(path: Path, *, line_bytes: int = 768 << 20) -> Path:
    """A gzip CSV of a FOCUS header and one data line of `line_bytes` without a line break
    (768 MiB by default, about 750 KiB compressed)."""
    with gzip.open(path, "wb", compresslevel=9) as file:
        file.write(_HEADER.encode())
        file.write(b"1.25,USD,2024-09-01,2024-10-01,Usage,AWS,111111111111,")
        left = line_bytes
        chunk = b"a" * _CHUNK
        while left > 0:
            file.write(chunk[: min(left, _CHUNK)])
            left -= _CHUNK
        file.write(b"\n")
    return path
