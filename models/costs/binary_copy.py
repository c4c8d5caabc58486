"""Checked batches as PostgreSQL's binary COPY stream, encoded by pgpq (Rust, from Arrow's
buffers, no Python per row).

PostgreSQL reads binary COPY with much less work than CSV: a timestamp is eight bytes rather
than text to parse in a time zone, a NUMERIC its base-10000 digits rather than a string, a
UUID sixteen bytes. The values are exactly the checked batch's (timestamps in UTC, decimals
of NUMERIC(38,16)); `tags` and `extra` go as jsonb, which PostgreSQL still parses.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.compute as pc
from pgpq import ArrowToPostgresBinaryEncoder
from pgpq import encoders as pgpq_encoders
from pgpq import schema as pgpq_schema

from models.costs.focus import COLUMNS, COST_TYPE, TIMESTAMP_TYPE

_UUID = pa.binary(16)
_JSONB = ("tags", "extra")
_KIND_TYPES = {"timestamp": TIMESTAMP_TYPE, "decimal": COST_TYPE}

# The COPY's columns and their Arrow types: the import's constants, then a checked batch's
# columns (ROW_FIELDS), the account's id as a UUID's 16 bytes.
SCHEMA = pa.schema(
    [
        ("organization_id", _UUID),
        ("cost_import_id", _UUID),
        ("origin", pa.string()),
        ("managed_account_id", _UUID),
        ("billing_month", pa.date32()),
        *((column.field, _KIND_TYPES.get(column.kind, pa.string())) for column in COLUMNS),
        ("extra", pa.string()),
    ]
)
COLUMN_NAMES = tuple(SCHEMA.names)


class CopyEncoder:
    """Encodes one import's checked batches: `header()` first, `batch()` for each, `trailer()`
    last (a COPY without rows still sends both)."""

    def __init__(self, organization_id: uuid.UUID, cost_import_id: uuid.UUID, origin: str, account_ids: pa.Array):
        """`account_ids`: the managed accounts' ids as text, as a checked batch names them."""
        self._constants = (
            pa.scalar(organization_id.bytes, _UUID),
            pa.scalar(cost_import_id.bytes, _UUID),
            pa.scalar(origin, pa.string()),
        )
        self._account_text = account_ids
        self._account_bytes = pa.array([uuid.UUID(text).bytes for text in account_ids.to_pylist()], _UUID)
        builders = {field.name: ArrowToPostgresBinaryEncoder.infer_encoder(field) for field in SCHEMA}
        for name in _JSONB:
            builders[name] = pgpq_encoders.StringEncoderBuilder.new_with_output(SCHEMA.field(name), pgpq_schema.Jsonb())
        self._encoder = ArrowToPostgresBinaryEncoder.new_with_encoders(SCHEMA, builders)

    def header(self) -> bytes:
        return self._encoder.write_header()

    def batch(self, table: pa.Table) -> bytes:
        """A checked batch's rows (columns ROW_FIELDS) as COPY data."""
        rows = table.num_rows
        accounts = pc.take(self._account_bytes, pc.index_in(table["managed_account_id"], value_set=self._account_text))
        columns = [pa.repeat(value, rows) for value in self._constants]
        columns += [accounts, *table.columns[1:]]
        encoded = pa.Table.from_arrays(columns, schema=SCHEMA).combine_chunks()
        return b"".join(self._encoder.write_batch(batch) for batch in encoded.to_batches())

    def trailer(self) -> bytes:
        return self._encoder.finish()


__all__ = ["COLUMN_NAMES", "SCHEMA", "CopyEncoder"]
