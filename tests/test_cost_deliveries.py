"""Cost deliveries: every format recognised by content, multi-part deliveries as one unit,
supersession per scope (restated, dropped, identical, approved months), refusals that write
nothing, background runs with state and progress. Expected values come from the CSV."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from datetime import date
from decimal import Decimal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from models import CostImport, CostRecord, LateCost
from models.costs import CostImportState, import_costs, register_delivery, run_import
from models.costs.records import CostDeliveryScope
from models.errors import CostFileRejected
from models.invoices.tables import InvoiceStatus
from tests import factories as f
from tests.test_costs_import import AWS_BIG, SAMPLE, database_totals, expected_totals, sample_rows, to_csv

SEPT = date(2024, 9, 1)


def parquet_of(data: bytes) -> bytes:
    """The CSV as Parquet with every column text, as BigQuery exports strings."""
    table = pa_csv.read_csv(
        io.BytesIO(data), convert_options=pa_csv.ConvertOptions(column_types={n: pa.string() for n in sample_rows()[0]})
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def total_of(rows) -> Decimal:
    return sum((Decimal(row["BilledCost"]) for row in rows), Decimal(0))


async def counts() -> tuple[int, int]:
    return await CostImport.all().count(), await CostRecord.all().count()


@pytest.mark.parametrize("form", ["csv", "csv.gz", "parquet", "zip"])
async def test_each_format_is_recognised_by_content_and_imports_exactly(tmp_path, form):
    org = await f.organization()
    account = await f.managed_account(org, sub_accounts=[AWS_BIG])
    header, rows = sample_rows()
    data = to_csv(header, rows)
    path = tmp_path / "export.bin"  # the name says nothing
    if form == "csv.gz":
        data = gzip.compress(data)
    elif form == "parquet":
        data = parquet_of(data)
    elif form == "zip":
        with zipfile.ZipFile(buffer := io.BytesIO(), "w") as archive:
            archive.writestr("part-1.csv", to_csv(header, rows[:500]))
            archive.writestr("part-2.csv.gz", gzip.compress(to_csv(header, rows[500:])))
        data = buffer.getvalue()
    path.write_bytes(data)

    report = await import_costs(org.id, path)

    assert (report.rows, report.inserted) == (1000, 1000)
    assert await database_totals(org.id) == expected_totals(rows, {AWS_BIG: account.id})
    assert await CostRecord.filter(managed_account_id=account.id).count() == 225
    cost_import = await CostImport.get(id=report.cost_import_id)
    assert (cost_import.state, cost_import.rows_done) == (CostImportState.DONE, 1000)


async def test_an_aws_folder_imports_the_parts_its_manifest_names(tmp_path):
    org = await f.organization()
    header, rows = sample_rows()
    folder = tmp_path / "focus" / "BILLING_PERIOD=2024-09"
    folder.mkdir(parents=True)
    (folder / "export-00001.csv.gz").write_bytes(gzip.compress(to_csv(header, rows[:300])))
    (folder / "export-00002.csv.gz").write_bytes(gzip.compress(to_csv(header, rows[300:])))
    (folder / "stale-00009.csv.gz").write_bytes(gzip.compress(to_csv(header, rows[:10])))
    (folder / "export-Manifest.json").write_text(json.dumps({"dataFiles": [
        "s3://bucket/focus/BILLING_PERIOD=2024-09/export-00001.csv.gz",
        "s3://bucket/focus/BILLING_PERIOD=2024-09/export-00002.csv.gz",
    ]}))

    report = await import_costs(org.id, folder)

    assert report.rows == 1000  # the stale part the manifest does not name is not read
    assert await database_totals(org.id) == expected_totals(rows, {})
    assert len(report.parts) == 2


async def test_a_manifest_naming_a_missing_part_refuses_the_delivery(tmp_path):
    org = await f.organization()
    header, rows = sample_rows()
    (tmp_path / "export-00001.csv.gz").write_bytes(gzip.compress(to_csv(header, rows)))
    (tmp_path / "Manifest.json").write_text(json.dumps({"dataFiles": ["s3://b/export-00001.csv.gz", "s3://b/export-00002.csv.gz"]}))

    with pytest.raises(CostFileRejected, match="the manifest names export-00002.csv.gz, which is not in the delivery"):
        await import_costs(org.id, tmp_path)
    assert await counts() == (0, 0)


async def test_several_parts_are_one_delivery_and_a_bad_row_in_the_last_refuses_all(tmp_path):
    org = await f.organization()
    header, rows = sample_rows()
    first, second = tmp_path / "a.csv", tmp_path / "b.parquet"
    first.write_bytes(to_csv(header, rows[:700]))
    rows[710]["BilledCost"] = "ten"
    second.write_bytes(parquet_of(to_csv(header, rows[700:])))

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, [first, second])

    assert (refused.value.file, refused.value.row, refused.value.line, refused.value.column) == (
        "b.parquet", 11, None, "BilledCost"
    )
    assert refused.value.message == "b.parquet, row 11: BilledCost 'ten' is not a number"
    assert await counts() == (0, 0)


@pytest.mark.parametrize("damage", ["truncated gzip", "corrupt parquet", "wrong shape", "png"])
async def test_a_damaged_file_refuses_the_delivery_in_our_words(tmp_path, damage):
    org = await f.organization()
    header, rows = sample_rows()
    data = to_csv(header, rows)
    if damage == "truncated gzip":
        data = gzip.compress(data)[:-2000]
    elif damage == "corrupt parquet":
        data = parquet_of(data)
        data = data[:100] + b"\x00" * 400 + data[500:]
    elif damage == "wrong shape":
        data = b'{"BilledCost": 1}\n'
    else:
        data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    (path := tmp_path / "costs").write_bytes(data)

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, path)

    message = refused.value.message
    assert "Arrow" not in message and "CSV parse error" not in message and "Parquet magic" not in message
    expected = {
        "truncated gzip": "the gzip file is damaged or truncated",
        "corrupt parquet": "the Parquet file is damaged or incomplete",
        "wrong shape": "missing required columns",
        "png": "not UTF-8 text",
    }[damage]
    assert expected in message
    assert await counts() == (0, 0)


@pytest.mark.parametrize("damage", ["cut short", "cut in its trailer", "trailing garbage", "bad checksum", "bad block",
                                    "cut past the first block"])
async def test_a_damaged_gzip_refuses_the_delivery_in_our_words_and_leaves_nothing(tmp_path, damage):
    org = await f.organization()
    header, rows = sample_rows()
    # Past the first block (8 MiB of text): the damage is met while the rows stream, not
    # while the header is read.
    data = to_csv(header, rows * (40 if damage == "cut past the first block" else 1))
    packed = gzip.compress(data)
    packed = {
        "cut short": packed[: len(packed) // 2],
        "cut in its trailer": packed[:-3],
        "trailing garbage": packed + b"these bytes are not gzip",
        "bad checksum": packed[:-8] + bytes([packed[-8] ^ 0xFF]) + packed[-7:],
        "bad block": packed[:12] + bytes(b ^ 0x5A for b in packed[12:40]) + packed[40:],
        "cut past the first block": packed[: len(packed) * 3 // 4],
    }[damage]
    (path := tmp_path / "export.csv.gz").write_bytes(packed)

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, path)

    assert (refused.value.message, refused.value.file) == ("the gzip file is damaged or truncated", "export.csv.gz")
    assert await counts() == (0, 0)


@pytest.mark.parametrize("layout", ["members", "zero padding"])
async def test_a_gzip_of_several_members_or_padded_with_zeros_imports_whole(tmp_path, layout):
    """As Python's gzip reads them: `cat a.gz b.gz` is one file, and zeros after the last member are padding."""
    org = await f.organization()
    account = await f.managed_account(org, sub_accounts=[AWS_BIG])
    header, rows = sample_rows()
    data = to_csv(header, rows)
    if layout == "members":
        cut = data.index(b"\n", len(data) // 2) + 1
        packed = gzip.compress(data[:cut]) + gzip.compress(data[cut:])
    else:
        packed = gzip.compress(data) + bytes(512)
    (path := tmp_path / "export.csv.gz").write_bytes(packed)

    report = await import_costs(org.id, path)

    assert (report.rows, report.inserted) == (1000, 1000)
    assert await database_totals(org.id) == expected_totals(rows, {AWS_BIG: account.id})


# ---------------------------------------------------------------- supersession


async def test_a_restated_row_is_billed_once_at_its_new_value_and_a_dropped_row_is_gone():
    org = await f.organization()
    account = await f.managed_account(org, sub_accounts=[AWS_BIG])
    header, rows = sample_rows()
    await import_costs(org.id, to_csv(header, rows))
    mine = [index for index, row in enumerate(rows) if row["SubAccountId"] == AWS_BIG]
    restated, dropped = mine[0], mine[1]
    rows[restated]["BilledCost"] = str(Decimal(rows[restated]["BilledCost"]) + 2)
    later = [row for index, row in enumerate(rows) if index != dropped]

    report = await import_costs(org.id, to_csv(header, later))

    assert await CostRecord.filter(organization_id=org.id).count() == 999
    assert await CostRecord.filter(managed_account_id=account.id).count() == 224
    assert await database_totals(org.id) == expected_totals(later, {AWS_BIG: account.id})
    mine_now = [row for row in later if row["SubAccountId"] == AWS_BIG]
    stored = await CostRecord.filter(managed_account_id=account.id, billing_month=SEPT).values_list("billed_cost", flat=True)
    assert sum(stored, Decimal(0)) == total_of(row for row in mine_now if row["BillingPeriodStart"].startswith("2024-09"))
    assert report.replaced == 1000 and report.inserted == 999
    # History: the first delivery is no longer current for any scope, and was superseded.
    current = await CostDeliveryScope.filter(organization_id=org.id, is_current=True)
    assert {scope.cost_import_id for scope in current} == {report.cost_import_id}
    assert all(scope.supersedes_id is not None for scope in current)
    assert await CostDeliveryScope.filter(organization_id=org.id, is_current=False).count() == len(current)


async def test_a_byte_identical_reimport_changes_nothing():
    org = await f.organization()
    await f.managed_account(org, sub_accounts=[AWS_BIG])
    first = await import_costs(org.id, SAMPLE.read_bytes())
    ids = sorted(await CostRecord.filter(organization_id=org.id).values_list("id", flat=True))

    again = await import_costs(org.id, SAMPLE)

    assert (again.inserted, again.duplicates, again.replaced) == (0, 1000, 0)
    assert sorted(await CostRecord.filter(organization_id=org.id).values_list("id", flat=True)) == ids
    assert {scope.outcome for scope in again.scopes} == {"UNCHANGED"}
    current = await CostDeliveryScope.filter(organization_id=org.id, is_current=True).values_list("cost_import_id", flat=True)
    assert set(current) == {first.cost_import_id}


async def test_an_approved_month_is_never_changed_and_its_difference_is_stored():
    org = await f.organization()
    account = await f.managed_account(org, sub_accounts=[AWS_BIG])
    header, rows = sample_rows()
    await import_costs(org.id, to_csv(header, rows))
    period = await f.billing_period(org, SEPT)
    invoice = await f.generated_invoice(account, period, status=InvoiceStatus.APPROVED, number="INV-2024-0001")
    invoiced = await database_totals(org.id)
    restated = next(i for i, row in enumerate(rows) if row["SubAccountId"] == AWS_BIG and row["BillingPeriodStart"].startswith("2024-09"))
    other = next(i for i, row in enumerate(rows) if row["SubAccountId"] != AWS_BIG and row["BillingPeriodStart"].startswith("2024-09"))
    rows[restated]["BilledCost"] = str(Decimal(rows[restated]["BilledCost"]) + Decimal("1.25"))
    rows[other]["BilledCost"] = str(Decimal(rows[other]["BilledCost"]) + 3)

    report = await import_costs(org.id, to_csv(header, rows))

    totals = await database_totals(org.id)
    assert totals[(account.id, SEPT, "USD")] == invoiced[(account.id, SEPT, "USD")]
    assert totals[(None, SEPT, "USD")] == invoiced[(None, SEPT, "USD")] + 3
    (late,) = await LateCost.filter(organization_id=org.id)
    assert (late.managed_account_id, late.invoice_id, late.billing_month, late.currency) == (account.id, invoice.id, SEPT, "USD")
    assert late.difference == Decimal("1.25")
    assert late.delivered_cost - late.invoiced_cost == Decimal("1.25")
    (entry,) = report.late_costs
    assert (entry.managed_account_id, entry.difference) == (account.id, Decimal("1.25"))
    assert report.late == late.delivered_rows


# ---------------------------------------------------------------- background runs


async def test_a_registered_delivery_runs_later_and_ends_done_or_failed_with_the_reason(tmp_path):
    org = await f.organization()
    header, rows = sample_rows()
    (good := tmp_path / "good.csv").write_bytes(to_csv(header, rows))
    rows[40]["BillingCurrency"] = "dollars"
    (bad := tmp_path / "bad.csv").write_bytes(to_csv(header, rows))

    queued = await register_delivery(org.id, [good])
    assert queued.state == CostImportState.QUEUED
    seen: list[int] = []
    report = await run_import(queued.id, progress=seen.append)
    assert (await CostImport.get(id=queued.id)).state == CostImportState.DONE
    assert seen[-1] == report.rows == 1000

    failing = await register_delivery(org.id, [bad])
    with pytest.raises(CostFileRejected):
        await run_import(failing.id)
    failed = await CostImport.get(id=failing.id)
    assert (failed.state, failed.error_line, failed.error_column) == (CostImportState.FAILED, 42, "BillingCurrency")
    assert "'dollars' is not a 3-letter currency code" in failed.error_message
    assert await CostRecord.filter(cost_import_id=failing.id).count() == 0
    assert await CostRecord.all().count() == 1000


async def test_the_worker_job_runs_a_queued_import_and_records_a_refusal(tmp_path, settings):
    from jobs.imports import run_cost_import

    org = await f.organization()
    header, rows = sample_rows()
    (good := tmp_path / "good.csv").write_bytes(to_csv(header, rows[:20]))
    (bad := tmp_path / "bad.csv").write_bytes(b"not,focus\n1,2\n")
    queued, refused = await register_delivery(org.id, [good]), await register_delivery(org.id, [bad])

    assert await run_cost_import({"settings": settings}, str(queued.id)) == {"state": "DONE", "rows": 20}
    assert (await run_cost_import({"settings": settings}, str(refused.id)))["state"] == "FAILED"
    # Run again, a finished import is left as it is.
    assert (await run_cost_import({"settings": settings}, str(queued.id)))["state"] == "SKIPPED"
    states = dict(await CostImport.all().values_list("id", "state"))
    assert states == {queued.id: CostImportState.DONE, refused.id: CostImportState.FAILED}
    assert await CostRecord.all().count() == 20


async def test_a_worker_runs_two_imports_at_once_and_the_others_wait_their_turn(tmp_path, monkeypatch, settings):
    import asyncio

    import jobs.imports
    from jobs.imports import IMPORTS_AT_ONCE, run_cost_import

    org = await f.organization()
    header, rows = sample_rows()
    deliveries = []
    for n in range(5):
        (path := tmp_path / f"part-{n}.csv").write_bytes(to_csv(header, rows[n * 10:(n + 1) * 10]))
        deliveries.append(await register_delivery(org.id, [path]))
    running, most = 0, 0
    real_import = jobs.imports.run_import

    async def watched(cost_import_id, **options):
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.05)  # long enough for every job to have asked for its turn
            return await real_import(cost_import_id, **options)
        finally:
            running -= 1

    monkeypatch.setattr(jobs.imports, "run_import", watched)
    ctx = {"settings": settings, "imports": asyncio.Semaphore(IMPORTS_AT_ONCE)}  # as the worker's start-up makes it
    results = await asyncio.gather(*(run_cost_import(ctx, str(delivery.id)) for delivery in deliveries))
    assert results == [{"state": "DONE", "rows": 10}] * 5
    assert most == IMPORTS_AT_ONCE == 2
    # Deliveries of one month's scope: each replaced the one before (and the first two made
    # the month's partition at the same moment).
    assert await CostRecord.all().count() == 10


async def test_parquet_with_native_types_imports_exactly(tmp_path):
    """As AWS writes Parquet: decimals and zoned timestamps, not text."""
    org = await f.organization()
    header, rows = sample_rows()
    table = pa_csv.read_csv(
        io.BytesIO(to_csv(header, rows)),
        convert_options=pa_csv.ConvertOptions(
            column_types={n: pa.string() for n in header}, null_values=["", "NULL"], strings_can_be_null=True
        ),
    )
    typed = {}
    for name in table.column_names:
        column = table[name]
        if name in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
            column = column.cast(pa.decimal128(38, 12))
        elif name in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"):
            column = column.cast(pa.timestamp("ms"))
        typed[name] = column
    pq.write_table(pa.table(typed), path := tmp_path / "part-00000.snappy.parquet")

    report = await import_costs(org.id, path)

    assert report.rows == 1000
    assert await database_totals(org.id) == expected_totals(rows, {})
    first = await CostRecord.filter(organization_id=org.id).order_by("id").first()
    assert first.billing_period_start.isoformat() == "2024-09-01T00:00:00+00:00"
    assert first.billed_cost == Decimal(rows[0]["BilledCost"])
