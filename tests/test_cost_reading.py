"""Reading cost parts: Parquet as AWS types it (doubles, timestamps, Tags as a map), read by
its FOCUS columns only in batches bounded in bytes; rows and row groups past their caps
refused. The small files that decode to gigabytes are imported by a process of their own, as
the worker imports them, whose peak RSS may not grow by more than BOUND_MB, and end FAILED
with a reason that names the row or line."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from tortoise import connections

from bench import bomb_files
from infra.settings import get_settings
from models.costs import CostImport, CostImportState, CostRecord, import_costs, register_delivery
from models.costs.sources import BATCH_BYTES, Part, read_batches
from models.errors import CostFileRejected
from tests import factories as f
from tests.test_costs_import import database_totals, expected_totals, sample_rows, to_csv

ROOT = Path(__file__).resolve().parent.parent
# Quiet, the one-line gzip takes about 72 MB (mostly Arrow's CSV reader ahead of its 8 MiB
# blocks), more while a second test run shares the cores; before, 840 MB to 3.25 GiB.
BOUND_MB = 128
DOUBLES = (
    "BilledCost", "EffectiveCost", "ListCost", "ListUnitPrice", "ContractedCost", "ContractedUnitPrice",
    "ConsumedQuantity", "PricingQuantity",
)
SUMS = {
    "BilledCost": "billed_cost", "EffectiveCost": "effective_cost", "ListCost": "list_cost",
    "ConsumedQuantity": "consumed_quantity", "PricingQuantity": "pricing_quantity",
}


def aws_typed(rows: list[dict[str, str]], header: list[str]) -> pa.Table:
    """The rows as AWS's FOCUS 1.0 table types them: costs and quantities double, periods
    timestamps in milliseconds (billing without a zone, charge with UTC), Tags a map."""
    text = pa_csv.read_csv(
        io.BytesIO(to_csv(header, rows)),
        read_options=pa_csv.ReadOptions(block_size=16 << 20),
        convert_options=pa_csv.ConvertOptions(
            column_types={n: pa.string() for n in header}, null_values=["", "NULL"], strings_can_be_null=True
        ),
    )
    columns = {}
    for name in text.column_names:
        column = text[name]
        if name in DOUBLES:
            column = column.cast(pa.float64())
        elif name in ("BillingPeriodStart", "BillingPeriodEnd"):
            column = column.cast(pa.timestamp("ms"))
        elif name in ("ChargePeriodStart", "ChargePeriodEnd"):
            column = column.cast(pa.timestamp("ms")).cast(pa.timestamp("ms", tz="UTC"))
        elif name == "Tags":
            column = pa.array(
                [None if tags is None else [(k, str(v)) for k, v in json.loads(tags).items()] for tags in column.to_pylist()],
                pa.map_(pa.string(), pa.string()),
            )
        columns[name] = column
    return pa.table(columns)


async def column_sums(organization_id) -> dict[str, Decimal]:
    sums = ", ".join(f"sum({field}) AS {field}" for field in SUMS.values())
    rows = await connections.get("default").execute_query_dict(
        f"SELECT {sums} FROM cost_records WHERE organization_id = $1", [organization_id]
    )
    return {focus: rows[0][field] or Decimal(0) for focus, field in SUMS.items()}


async def test_parquet_parts_typed_as_aws_types_them_import_to_the_sum_of_their_values_as_text(tmp_path):
    org = await f.organization()
    header, rows = sample_rows()
    table = aws_typed(rows, header)
    paths = []
    for number, start in enumerate((0, 300, 700), start=1):
        paths.append(tmp_path / f"export-0000{number}.snappy.parquet")
        pq.write_table(table.slice(start, {0: 300, 300: 400, 700: 300}[start]), paths[-1])

    report = await import_costs(org.id, paths)

    assert report.rows == 1000
    assert await database_totals(org.id) == expected_totals(rows, {})
    # Each double read back as its shortest decimal text, summed apart from the product.
    assert await column_sums(org.id) == {
        name: sum((Decimal(repr(value)) for value in table[name].to_pylist() if value is not None), Decimal(0))
        for name in SUMS
    }
    tagged = next(index for index, row in enumerate(rows) if row["Tags"] not in ("", "NULL"))
    stored = await CostRecord.filter(organization_id=org.id, resource_id=rows[tagged]["ResourceId"] or None).first()
    assert stored.tags == {key: str(value) for key, value in json.loads(rows[tagged]["Tags"]).items()}
    first = await CostRecord.filter(organization_id=org.id).order_by("id").first()
    assert first.billing_period_start.isoformat() == "2024-09-01T00:00:00+00:00"
    assert first.charge_period_start.isoformat() == rows[0]["ChargePeriodStart"].replace(" ", "T") + "+00:00"


async def test_a_double_with_more_places_than_the_table_holds_is_rounded_to_sixteen(tmp_path):
    org = await f.organization()
    header, rows = sample_rows()
    table = aws_typed(rows[:3], header)
    table = table.set_column(
        header.index("BilledCost"), "BilledCost", pa.array([0.1 + 0.2, 1 / 3600, 2.5e-17])
    )
    pq.write_table(table, path := tmp_path / "part.parquet")

    await import_costs(org.id, path)

    stored = sorted(await CostRecord.filter(organization_id=org.id).values_list("billed_cost", flat=True))
    assert stored == [Decimal("0"), Decimal("0.0002777777777778"), Decimal("0.3")]


async def test_a_parquet_part_is_read_by_its_focus_columns_and_provider_columns_only(tmp_path):
    org = await f.organization()
    header, rows = sample_rows()
    table = aws_typed(rows[:2], header).drop_columns(["Tags"])
    table = table.append_column("x_ServiceCode", pa.array(["AmazonEC2", None]))
    table = table.append_column("CapacityReservationId", pa.array(["cr-1", None]))
    table = table.append_column("Unrelated", pa.array(["never read", "never read"]))
    pq.write_table(table, path := tmp_path / "part.parquet")

    await import_costs(org.id, path)

    extras = [record.extra for record in await CostRecord.filter(organization_id=org.id).order_by("id")]
    assert extras[0]["x_ServiceCode"] == "AmazonEC2" and "x_ServiceCode" not in extras[1]
    assert all("Unrelated" not in extra and "Id" not in extra for extra in extras)
    assert extras[0]["CapacityReservationId"] == "cr-1"


def test_parquet_batches_hold_a_bounded_number_of_bytes(tmp_path):
    header, rows = sample_rows()
    rows = rows[:40]
    for row in rows:
        row["ChargeDescription"] = "d" * (600 << 10)
    pq.write_table(aws_typed(rows, header), path := tmp_path / "part.parquet")

    batches = list(read_batches(Part(path, "part.parquet", "parquet")))

    assert sum(batch.data.num_rows for batch in batches) == 40
    assert len(batches) > 1
    for batch in batches:
        assert batch.data.column(batch.names.index("ChargeDescription")).dictionary_decode().nbytes <= BATCH_BYTES


def test_a_row_group_of_hundreds_of_mib_is_read_in_batches_of_about_batch_bytes(tmp_path):
    """Exports written with large row groups (Spark's are 128 MiB and more) are read, a few
    thousand rows at a time, not refused."""
    header, rows = sample_rows()
    row = rows[0]
    count = 80_000
    table = aws_typed([row], header)
    columns = {name: pa.repeat(table.column(name)[0], count) for name in table.column_names}
    columns["ChargeDescription"] = pa.array([f"{index:08d}" + "d" * 1000 for index in range(count)])
    table = pa.table(columns)
    pq.write_table(table, path := tmp_path / "part.parquet", row_group_size=count, use_dictionary=False)
    assert pq.ParquetFile(path).metadata.row_group(0).total_byte_size > 64 << 20

    batches = list(read_batches(Part(path, "part.parquet", "parquet")))

    assert sum(batch.data.num_rows for batch in batches) == count
    assert max(batch.data.num_rows for batch in batches) < 16_384


async def test_a_row_group_larger_than_the_setting_is_refused_naming_its_first_row(tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "cost_parquet_row_group_max_bytes", 256 << 10)
    org = await f.organization()
    header, rows = sample_rows()
    rows = rows[:20]
    for row in rows[10:]:
        row["ChargeDescription"] = "d" * (100 << 10)
    pq.write_table(aws_typed(rows, header), path := tmp_path / "part.parquet", row_group_size=10, use_dictionary=False)

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, path)

    assert refused.value.message.startswith("row 11: the row group starting at this row holds 1.0 MiB")
    assert refused.value.message.endswith("more than the 0.2 MiB one may hold; export with smaller row groups")
    assert await CostRecord.all().count() == 0


async def test_a_nested_column_of_millions_of_values_in_a_few_bytes_is_refused_before_it_is_read(tmp_path):
    org = await f.organization()
    header, rows = sample_rows()
    table = aws_typed(rows[:1], header).drop_columns(["Tags"])
    values = 10_000_000
    table = table.append_column(
        "x_Blob", pa.ListArray.from_arrays(pa.array([0, values], pa.int32()), pa.nulls(values, pa.int8()))
    )
    pq.write_table(table, path := tmp_path / "part.parquet")
    assert path.stat().st_size < 100_000

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, path)

    assert refused.value.message == "row 1: the row holds 76.3 MiB, more than the 1.0 MiB a row may hold"
    assert await CostRecord.all().count() == 0


@pytest.mark.parametrize("form", ["csv", "parquet"])
async def test_a_row_longer_than_the_setting_is_refused_naming_it(tmp_path, form):
    org = await f.organization()
    header, rows = sample_rows()
    rows = rows[:5]
    rows[2]["ChargeDescription"] = "d" * (2 << 20)
    if form == "csv":
        path = tmp_path / "part.csv"
        path.write_bytes(to_csv(header, rows))
    else:
        pq.write_table(aws_typed(rows, header).drop_columns(["Tags"]), path := tmp_path / "part.parquet")

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, path)

    where = "line 4" if form == "csv" else "row 3"
    assert refused.value.message.startswith(f"{where}: the row holds 2.0 MiB, more than the 1.0 MiB a row may hold")
    assert await CostRecord.all().count() == 0


async def _import_in_a_process(settings, cost_import_id) -> dict:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "DATA_DIR": str(settings.data_dir)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.import_process", str(cost_import_id),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_a_parquet_of_wide_strings_is_refused_with_bounded_memory(settings, tmp_path):
    org = await f.organization()
    bomb = bomb_files.parquet_wide_strings(tmp_path / "export-00001.snappy.parquet")
    delivery = await register_delivery(org.id, [bomb])

    outcome = await _import_in_a_process(settings, delivery.id)

    assert outcome["peak_growth_mb"] < BOUND_MB, outcome
    assert outcome["state"] == "FAILED", outcome
    assert outcome["message"] == "row 1: the row holds 2.0 MiB, more than the 1.0 MiB a row may hold"
    stored = await CostImport.get(id=delivery.id)
    assert (stored.state, stored.error_row, stored.error_line) == (CostImportState.FAILED, 1, None)
    assert await CostRecord.all().count() == 0


async def test_a_gzip_of_one_long_line_is_refused_with_bounded_memory(settings, tmp_path):
    org = await f.organization()
    bomb = await asyncio.to_thread(bomb_files.gzip_one_line, tmp_path / "export.csv.gz", line_bytes=256 << 20)
    delivery = await register_delivery(org.id, [bomb])

    outcome = await _import_in_a_process(settings, delivery.id)

    assert outcome["peak_growth_mb"] < BOUND_MB, outcome
    assert outcome["state"] == "FAILED", outcome
    assert outcome["message"] == "line 2: the line is longer than the 1.0 MiB a row may hold"
    stored = await CostImport.get(id=delivery.id)
    assert (stored.state, stored.error_line) == (CostImportState.FAILED, 2)
    assert await CostRecord.all().count() == 0


@pytest.mark.parametrize("mib, reason", [
    (9, "the row holds 9.0 MiB, more than the 1.0 MiB a row may hold"),  # read by Arrow
    (40, "the row starting on this line is longer than the 1.0 MiB a row may hold"),  # Arrow gives up
])
async def test_a_row_of_many_quoted_lines_is_refused_naming_its_first_line(tmp_path, mib, reason):
    org = await f.organization()
    header, rows = sample_rows()
    rows = rows[:3]
    rows[1]["ChargeDescription"] = ("d" * 1023 + "\n") * (mib << 10)  # in lines of 1 KiB
    (path := tmp_path / "part.csv").write_bytes(to_csv(header, rows))

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, path)

    assert refused.value.message == f"line 3: {reason}"
    assert await CostRecord.all().count() == 0


@pytest.mark.parametrize("form", ["csv", "csv.gz"])
async def test_a_header_line_longer_than_the_sample_read_for_it_is_refused(tmp_path, form):
    org = await f.organization()
    data = (
        "BilledCost,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargeCategory,ProviderName,SubAccountId,"
        f"x_{'n' * 70_000}\n1,USD,2024-09-01,2024-10-01,Usage,AWS,1,v\n"
    ).encode()
    (path := tmp_path / "part").write_bytes(gzip.compress(data) if form == "csv.gz" else data)

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, path)

    assert refused.value.message == (
        "line 1: the header line is longer than 64 KiB; a FOCUS header names a few dozen columns"
    )
    assert await CostRecord.all().count() == 0


def test_extra_texts_become_json_strings_control_characters_included():
    """The `extra` column's values: quotes, backslashes and every control character escaped, a
    null kept null, other text as it is; each reads back as the text it was."""
    import json

    import pyarrow as pa

    from models.costs.json_text import json_strings

    texts = ['plain', 'say "hi" \\ there', None, "bell\x07 tab\t line\n", "zürich €"]
    literals = json_strings(pa.array(texts)).to_pylist()
    assert literals[0] == '"plain"' and literals[2] is None
    assert [None if literal is None else json.loads(literal) for literal in literals] == texts
    assert "\x07" not in literals[3] and "\\u0007" in literals[3]
