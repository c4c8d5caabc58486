"""Cost deliveries laid out as the clouds write them, from every entry point: AWS Data Exports
(two billing periods of three Parquet parts, "overwrite" and "create new" modes) and Azure Cost
Management (runs side by side, each with its manifest.json), imported by a manifest's path, the
export's folder, a zip of it (the command line) and a manifest with its parts (the API); each
compared with a sum of the rows made here. Then every refusal, each shown to write nothing: a
manifest naming a missing part or one part twice, a part no manifest names, several runs
without a manifest, zips past their bounds, too many rows, a NUL in a file name, an
organization's stored deliveries past their quota; and the purge of old deliveries."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infra import storage
from invoicing.cli import data as cli
from jobs import worker as worker_jobs
from models import CostImport, CostRecord
from models.costs import CostOrigin, import_costs
from models.errors import CostFileRejected
from tests import factories as f
from tests.graphql import error_codes
from tests.test_cost_reading import aws_typed
from tests.test_costs_import import database_totals, expected_totals, sample_rows, to_csv

BUCKET = "s3://msp-billing/cur"
EXPORT = "focus"
PERIODS = ("2024-09", "2024-10")
RUN_OLD, RUN_NEW = "7f6c0b3e-0000-4000-8000-000000000001", "7f6c0b3e-0000-4000-8000-000000000002"


def write_part(path: Path, rows: list[dict[str, str]]) -> None:
    """A Parquet part typed as AWS's FOCUS table types it (costs double, periods timestamps,
    Tags a map)."""
    header, _ = sample_rows()
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(aws_typed(rows, header), path)


def period_rows(period: str, scale: int = 1) -> list[dict[str, str]]:
    """The sample's AWS rows moved into `period` (its costs times `scale`, so that a run
    taken by mistake shows in the totals)."""
    _, rows = sample_rows()
    moved = []
    for row in rows:
        if row["ProviderName"] != "AWS" or not row["BillingPeriodStart"].startswith("2024-09"):
            continue
        row = dict(row)
        if period == "2024-10":
            row["BillingPeriodStart"], row["BillingPeriodEnd"] = "2024-10-01 00:00:00", "2024-11-01 00:00:00"
            for column in ("ChargePeriodStart", "ChargePeriodEnd"):
                row[column] = row[column].replace("2024-10-01", "2024-11-01").replace("2024-09", "2024-10")
        if scale != 1:
            row["BilledCost"] = str(Decimal(row["BilledCost"]) * scale)
        moved.append(row)
    return moved


def thirds(rows):
    size = len(rows) // 3 + 1
    return [rows[i * size:(i + 1) * size] for i in range(3)]


def aws_export(root: Path, *, create_new: bool = False) -> tuple[Path, list[dict[str, str]]]:
    """`<prefix>/<export>/data|metadata/BILLING_PERIOD=...` as AWS writes it; in "create new"
    mode two runs per period sit side by side, the older one's manifest older and its costs
    doubled. Returns the export's folder and the rows of what is current."""
    export = root / "cur" / EXPORT
    current: list[dict[str, str]] = []
    for period in PERIODS:
        runs = [(RUN_OLD, 2), (RUN_NEW, 1)] if create_new else [(None, 1)]
        for age, (run, scale) in enumerate(runs):
            rows = period_rows(period, scale)
            folder = export / "data" / f"BILLING_PERIOD={period}"
            meta = export / "metadata" / f"BILLING_PERIOD={period}"
            if run:
                folder, meta = folder / run, meta / run
            keys = []
            for number, chunk in enumerate(thirds(rows), start=1):
                name = f"{EXPORT}-{number:05d}.snappy.parquet"
                write_part(folder / name, chunk)
                keys.append(f"{BUCKET}/{EXPORT}/data/BILLING_PERIOD={period}/" + (f"{run}/" if run else "") + name)
            manifest = meta / f"{EXPORT}-Manifest.json"
            meta.mkdir(parents=True, exist_ok=True)
            manifest.write_text(json.dumps({
                "executionId": run or "4d5b8a57-0000-4000-8000-00000000000a",
                "exportArn": "arn:aws:bcm-data-exports:us-east-1:123456789012:export/focus-1a2b",
                "columns": [{"name": "BilledCost", "type": "decimal"}], "dataFiles": keys,
            }))
            stamp = time.time() - 3600 * (len(runs) - age)
            os.utime(manifest, (stamp, stamp))
            if age == len(runs) - 1:
                current.extend(rows)
    return export, current


def azure_export(root: Path) -> tuple[Path, list[dict[str, str]]]:
    """`<root>/<export>/<from>-<to>/<run id>/part_0_000N.csv.gz` with each run's manifest.json
    beside its parts (Cost Management creates a new run each time by default)."""
    _, rows = sample_rows()
    microsoft = [row for row in rows if row["ProviderName"] == "Microsoft"]
    export = root / "exports" / EXPORT
    header, _ = sample_rows()
    import gzip

    for run, scale, submitted in ((RUN_OLD, 3, "2024-10-02T06:00:00Z"), (RUN_NEW, 1, "2024-10-05T06:00:00Z")):
        folder = export / "20240901-20240930" / run
        folder.mkdir(parents=True)
        scaled = [dict(row, BilledCost=str(Decimal(row["BilledCost"]) * scale)) for row in microsoft]
        names = []
        for number, chunk in enumerate((scaled[:20], scaled[20:]), start=1):
            name = f"part_0_{number:04d}.csv.gz"
            (folder / name).write_bytes(gzip.compress(to_csv(header, chunk)))
            names.append(name)
        (folder / "manifest.json").write_text(json.dumps({
            "manifestVersion": "2024-04-01", "byteCount": 0, "blobCount": len(names), "dataRowCount": len(scaled),
            "exportConfig": {"exportName": EXPORT, "resourceId": "/providers/Microsoft.Billing/billingAccounts/1",
                             "dataVersion": "1.0", "type": "FocusCost", "timeFrame": "MonthToDate"},
            "deliveryConfig": {"partitionData": True, "dataOverwriteBehavior": "CreateNewReport",
                               "fileFormat": "Csv", "compressionMode": "gzip"},
            "runInfo": {"executionType": "Scheduled", "submittedTime": submitted, "runId": run,
                        "startDate": "2024-09-01T00:00:00", "endDate": "2024-09-30T00:00:00"},
            "blobs": [{"blobName": f"exports/{EXPORT}/20240901-20240930/{run}/{name}", "byteCount": 0}
                      for name in names],
        }))
    return export, microsoft


def zipped(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, str(path.relative_to(folder.parent)))
    return target


async def command_line(organization, *paths: Path):
    report, _ = await cli._import_costs(list(paths), organization.name, CostOrigin.MSP_DELEGATED, None)
    return report


async def counts() -> tuple[int, int]:
    return await CostImport.all().count(), await CostRecord.all().count()


def totals_of(rows) -> dict:
    return expected_totals(rows, {})


# ---------------------------------------------------------------- accepted, from the command line


@pytest.mark.parametrize("mode", ["overwrite", "create new"])
@pytest.mark.parametrize("entry", ["manifest path", "export folder", "zip"])
async def test_an_aws_export_imports_as_aws_writes_it(tmp_path, mode, entry):
    org = await f.organization()
    export, rows = aws_export(tmp_path, create_new=mode == "create new")
    if entry == "manifest path":
        manifests = sorted((export / "metadata").rglob("*-Manifest.json"))
        for period in PERIODS:
            # The latest manifest of the period (create new: the second run's).
            await command_line(org, [m for m in manifests if f"={period}" in str(m)][-1])
    elif entry == "export folder":
        await command_line(org, export)
    else:
        await command_line(org, zipped(export, tmp_path / "export.zip"))

    assert await database_totals(org.id) == totals_of(rows)
    assert await CostRecord.filter(organization_id=org.id).count() == len(rows)


@pytest.mark.parametrize("entry", ["manifest path", "export folder", "zip"])
async def test_an_azure_export_imports_its_latest_run(tmp_path, entry):
    org = await f.organization()
    export, rows = azure_export(tmp_path)
    if entry == "manifest path":
        await command_line(org, export / "20240901-20240930" / RUN_NEW / "manifest.json")
    elif entry == "export folder":
        await command_line(org, export)
    else:
        await command_line(org, zipped(export, tmp_path / "azure.zip"))

    assert await database_totals(org.id) == totals_of(rows)


# ---------------------------------------------------------------- accepted, from the API

IMPORT = """mutation($file: Upload, $files: [Upload!]) {
  importCosts(file: $file, files: $files, wait: true) { __typename
  ... on CostsImported { rows }
  ... on UserError { code field message } } }"""
ROLES = ("owner", "viewer", "customer", "foreign_owner")


async def send(client, token, parts: list[tuple[str, bytes]]):
    """`importCosts` as a GraphQL multipart request, written out by hand so that a file name
    reaches the server byte for byte (httpx would percent-encode a control character)."""
    mapping = {"0": ["variables.file"], **{str(i): [f"variables.files.{i - 1}"] for i in range(1, len(parts))}}
    variables = {"file": None, "files": [None] * (len(parts) - 1) or None}
    boundary = "delivery-boundary-7d1c"
    body = io.BytesIO()
    fields = [("operations", json.dumps({"query": IMPORT, "variables": variables})), ("map", json.dumps(mapping))]
    for name, value in fields:
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for number, (filename, data) in enumerate(parts):
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{number}"; filename="'.encode())
        body.write(filename.encode() + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    response = await client.post(
        "/graphql", content=body.getvalue(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def manifest_and_parts(manifest: Path, folder: Path) -> list[tuple[str, bytes]]:
    parts = [(manifest.name, manifest.read_bytes())]
    parts += [(path.name, path.read_bytes()) for path in sorted(folder.iterdir()) if path.name != manifest.name]
    return parts


def stored_deliveries(settings, organization_id) -> list[Path]:
    return list((settings.storage_path / storage.DELIVERIES_FOLDER).glob(f"{organization_id}/*"))


@pytest.mark.parametrize("role", ROLES)
async def test_the_api_imports_an_aws_manifest_with_its_parts_for_each_scope(tmp_path, client, world, role, settings):
    export, _ = aws_export(tmp_path, create_new=True)
    period = "2024-10"
    manifest = export / "metadata" / f"BILLING_PERIOD={period}" / RUN_NEW / f"{EXPORT}-Manifest.json"
    result = await send(client, world.tokens[role], manifest_and_parts(
        manifest, export / "data" / f"BILLING_PERIOD={period}" / RUN_NEW,
    ))
    if role in ("viewer", "customer"):
        assert error_codes(result) == ["FORBIDDEN"]
        assert await counts() == (0, 0)
        assert not stored_deliveries(settings, world.users[role].organization_id)
        return
    rows = period_rows(period)
    assert result["data"]["importCosts"] == {"__typename": "CostsImported", "rows": len(rows)}
    organization_id = world.users[role].organization_id
    assert await database_totals(organization_id) == totals_of(rows)
    assert await CostRecord.all().count() == len(rows)  # the other organization got nothing


async def test_the_api_matches_parts_sent_with_their_folders_to_the_manifests_keys(tmp_path, client, world):
    """Both periods' latest manifests and every run's parts in one request: the part names
    repeat across periods and runs, their folders tell them apart."""
    export, rows = aws_export(tmp_path, create_new=True)
    sent = []
    for period in PERIODS:
        manifest = export / "metadata" / f"BILLING_PERIOD={period}" / RUN_NEW / f"{EXPORT}-Manifest.json"
        sent.append((f"metadata/BILLING_PERIOD={period}/{EXPORT}-Manifest.json", manifest.read_bytes()))
    for path in sorted((export / "data").rglob("*.parquet")):
        sent.append((str(path.relative_to(export)), path.read_bytes()))
    assert len(sent) == 2 + 2 * 2 * 3
    result = await send(client, world.tokens["owner"], sent)
    assert result["data"]["importCosts"] == {"__typename": "CostsImported", "rows": len(rows)}
    assert await database_totals(world.org.id) == totals_of(rows)


async def test_the_api_imports_an_azure_manifest_with_its_parts(tmp_path, client, world):
    export, rows = azure_export(tmp_path)
    folder = export / "20240901-20240930" / RUN_NEW
    result = await send(client, world.tokens["owner"], manifest_and_parts(folder / "manifest.json", folder))
    assert result["data"]["importCosts"] == {"__typename": "CostsImported", "rows": len(rows)}
    assert await database_totals(world.org.id) == totals_of(rows)


# ---------------------------------------------------------------- refused, nothing written


async def test_a_manifest_naming_a_missing_part_is_refused_from_the_api_and_the_command_line(
    tmp_path, client, world, settings,
):
    export, _ = aws_export(tmp_path)
    manifest = export / "metadata" / "BILLING_PERIOD=2024-09" / f"{EXPORT}-Manifest.json"
    missing = export / "data" / "BILLING_PERIOD=2024-09" / f"{EXPORT}-00003.snappy.parquet"
    parts = [part for part in manifest_and_parts(manifest, missing.parent) if part[0] != missing.name]
    result = await send(client, world.tokens["owner"], parts)
    payload = result["data"]["importCosts"]
    assert payload["code"] == "INVALID_COST_FILE"
    assert f"the manifest names {missing.name}, which is not in the delivery" in payload["message"]
    assert (await CostRecord.all().count(), (await CostImport.get()).state) == (0, "FAILED")
    await CostImport.all().delete()
    missing.unlink()
    with pytest.raises(CostFileRejected, match=f"the manifest names {missing.name}, which is not in the delivery"):
        await command_line(world.org, manifest)
    assert await counts() == (0, 0)


async def test_a_part_the_manifest_does_not_name_is_refused(tmp_path, client, world):
    export, _ = aws_export(tmp_path)
    manifest = export / "metadata" / "BILLING_PERIOD=2024-09" / f"{EXPORT}-Manifest.json"
    parts = manifest_and_parts(manifest, export / "data" / "BILLING_PERIOD=2024-09")
    stray = tmp_path / "other-00001.parquet"
    write_part(stray, period_rows("2024-09")[:5])
    result = await send(client, world.tokens["owner"], [*parts, (stray.name, stray.read_bytes())])
    payload = result["data"]["importCosts"]
    assert payload["code"] == "INVALID_COST_FILE"
    assert "other-00001.parquet is not one of the files its manifest names" in payload["message"]
    assert (await CostRecord.all().count(), (await CostImport.get()).state) == (0, "FAILED")
    await CostImport.all().delete()
    with pytest.raises(CostFileRejected, match="is not one of the files its manifest names"):
        await command_line(world.org, manifest, stray)
    assert await counts() == (0, 0)


async def test_a_manifest_naming_one_file_three_times_is_refused(tmp_path):
    org = await f.organization()
    _, rows = sample_rows()
    (tmp_path / "part.csv").write_bytes(to_csv(sample_rows()[0], rows))
    (tmp_path / "x-Manifest.json").write_text(json.dumps({"dataFiles": ["s3://b/part.csv"] * 3}))
    with pytest.raises(CostFileRejected, match="the manifest names part.csv twice"):
        await import_costs(org.id, tmp_path)
    assert await counts() == (0, 0)


async def test_a_zip_named_many_times_by_a_manifest_is_refused_before_unpacking_twice(tmp_path):
    org = await f.organization()
    header, rows = sample_rows()
    with zipfile.ZipFile(tmp_path / "costs.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("part.csv", to_csv(header, rows))
    (tmp_path / "Manifest.json").write_text(json.dumps({"dataFiles": ["s3://b/costs.zip/part.csv"] * 20}))
    with pytest.raises(CostFileRejected, match="twice"):
        await import_costs(org.id, tmp_path)
    assert await counts() == (0, 0)


@pytest.mark.parametrize("layout", ["aws", "azure"])
async def test_a_folder_of_several_runs_without_a_manifest_is_refused_saying_why(tmp_path, layout):
    org = await f.organization()
    if layout == "aws":
        export, _ = aws_export(tmp_path, create_new=True)
        for manifest in (export / "metadata").rglob("*-Manifest.json"):
            manifest.unlink()
        folder = export / "data" / "BILLING_PERIOD=2024-09"
    else:
        folder, _ = azure_export(tmp_path)
        for manifest in folder.rglob("manifest.json"):
            manifest.unlink()
    with pytest.raises(CostFileRejected) as refused:
        await command_line(org, folder)
    assert "holds 2 runs of the export" in refused.value.message
    assert "nothing says which one is current" in refused.value.message
    assert RUN_OLD in refused.value.message and RUN_NEW in refused.value.message
    assert await counts() == (0, 0)


def _zip(entries: list[tuple[str, bytes]], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _encrypted(data: bytes) -> bytes:
    """The zip with its entries flagged encrypted (general purpose bit 0), as an encrypting
    archiver writes them."""
    patched = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := patched.find(signature, start)) >= 0:
            patched[start + offset] |= 1
            start += 4
    return bytes(patched)


class _TempWatch:
    """The peak size of a temporary folder while an import runs (sampled in a thread)."""

    def __init__(self, folder: Path):
        self.folder, self.peak, self._stop = folder, 0, threading.Event()

    def _size(self) -> int:
        total = 0
        for path in self.folder.rglob("*"):
            try:
                total += path.stat().st_size if path.is_file() else 0
            except FileNotFoundError:
                continue
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._size())
            time.sleep(0.005)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("bomb", ["bytes", "ratio", "small entries", "entries", "zip in zip", "zip named otherwise", "duplicate",
                                  "encrypted", "outside"])
async def test_a_zip_past_its_bounds_is_refused_in_our_words_and_leaves_nothing(tmp_path, bomb, settings, monkeypatch):
    org = await f.organization()
    header, rows = sample_rows()
    csv = to_csv(header, rows[:10])
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temporary))
    zeros = b"0" * (64 << 20)
    if bomb == "bytes":
        monkeypatch.setattr(settings, "max_extracted_bytes", 8 << 20)
        monkeypatch.setattr(settings, "max_compression_ratio", 1_000_000)
        data, expected = _zip([("costs.csv", csv + zeros)]), "unpacks to more than 8,388,608 bytes"
    elif bomb == "ratio":
        data, expected = _zip([("costs.csv", csv + zeros)]), "unpacks to more than 100 times its size"
    elif bomb == "small entries":
        # Each below the MiB an entry may take before its own ratio counts; together far past it.
        data = _zip([(f"p{i}.csv", csv + zeros[: 1000 << 10]) for i in range(64)])
        expected = "unpacks to more than 100 times its size"
    elif bomb == "entries":
        monkeypatch.setattr(settings, "max_archive_entries", 50)
        data, expected = _zip([(f"p{i}.csv", csv) for i in range(51)]), "holds more than 50 files"
    elif bomb == "zip in zip":
        data, expected = _zip([("inner.zip", _zip([("costs.csv", csv)]))]), "holds another zip"
    elif bomb == "zip named otherwise":
        data, expected = _zip([("costs.csv", _zip([("costs.csv", csv)]))]), "holds another zip"
    elif bomb == "duplicate":
        with pytest.warns(UserWarning):
            data = _zip([("costs.csv", csv), ("costs.csv", csv)])
        expected = "holds costs.csv twice"
    elif bomb == "encrypted":
        data, expected = _encrypted(_zip([("costs.csv", csv)])), "holds an encrypted file (costs.csv)"
    else:
        data, expected = _zip([("../../costs.csv", csv)]), "holds a file outside its folder"
    delivery = tmp_path / "delivery.zip"
    delivery.write_bytes(data)

    with _TempWatch(temporary) as watch, pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, delivery)

    assert expected in refused.value.message
    assert str(temporary) not in refused.value.message and str(tmp_path) not in refused.value.message
    assert await counts() == (0, 0)
    assert not list(temporary.iterdir()), "nothing is left in the temporary folder"
    bound = {"bytes": settings.max_extracted_bytes, "ratio": 100 * len(data), "small entries": 100 * len(data)}.get(
        bomb, 1 << 20
    )
    assert watch.peak <= bound + (2 << 20), f"the temporary folder grew by {watch.peak:,} bytes"


async def test_a_delivery_past_its_row_cap_is_refused_whole(tmp_path, settings, monkeypatch):
    org = await f.organization()
    monkeypatch.setattr(settings, "max_delivery_rows", 999)
    header, rows = sample_rows()
    (tmp_path / "a.csv").write_bytes(to_csv(header, rows[:500]))
    (tmp_path / "b.csv").write_bytes(to_csv(header, rows[500:]))
    with pytest.raises(CostFileRejected, match="the delivery holds more than 999 rows"):
        await import_costs(org.id, [tmp_path / "a.csv", tmp_path / "b.csv"])
    assert await counts() == (0, 0)


@pytest.mark.parametrize("name", ["focus\x00.csv", "fo\x1bcus.csv", "focus\x7f.csv"])
async def test_a_control_character_in_a_file_name_is_a_typed_error_and_stores_nothing(client, world, settings, name):
    header, rows = sample_rows()
    result = await send(client, world.tokens["owner"], [("ok.csv", to_csv(header, rows[:5])), (name, b"x")])
    assert "errors" not in result, result
    payload = result["data"]["importCosts"]
    assert (payload["code"], payload["field"]) == ("INVALID", "files")
    assert "control character" in payload["message"] and "postgres" not in json.dumps(result).lower()
    assert await counts() == (0, 0)
    assert not stored_deliveries(settings, world.org.id)


async def test_an_organization_s_stored_deliveries_are_capped_and_purged_after_their_retention(
    client, world, settings, monkeypatch, capsys,
):
    header, rows = sample_rows()
    data = to_csv(header, rows)
    monkeypatch.setattr(settings, "max_stored_delivery_bytes", len(data) * 2 + 100)
    first = await send(client, world.tokens["owner"], [("a.csv", data)])
    second = await send(client, world.tokens["owner"], [("b.csv", data)])
    assert [r["data"]["importCosts"]["__typename"] for r in (first, second)] == ["CostsImported"] * 2
    third = (await send(client, world.tokens["owner"], [("c.csv", data)]))["data"]["importCosts"]
    assert (third["code"], third["field"]) == ("INVALID", "file")
    assert f"keeps at most {len(data) * 2 + 100:,} bytes of cost deliveries" in third["message"]
    assert await CostImport.all().count() == 2
    kept = sorted(stored_deliveries(settings, world.org.id))
    assert len(kept) == 2
    # Another organization's quota is its own.
    other = await send(client, world.tokens["foreign_owner"], [("d.csv", data)])
    assert other["data"]["importCosts"]["__typename"] == "CostsImported"

    old = time.time() - (settings.delivery_retention_days + 1) * 86400
    # A delivery is as old as its newest file (a bucket has no folders to date).
    for path in kept[0].rglob("*"):
        os.utime(path, (old, old))
    assert await worker_jobs.purge_old_deliveries({"settings": settings}) == 1
    assert sorted(stored_deliveries(settings, world.org.id)) == kept[1:]
    for path in kept[1].rglob("*"):
        os.utime(path, (old, old))
    cli.purge_deliveries()
    assert "Removed 1 cost deliveries" in capsys.readouterr().out
    assert stored_deliveries(settings, world.org.id) == []
    assert any(job.coroutine is worker_jobs.purge_old_deliveries for job in worker_jobs.WorkerSettings.cron_jobs)
    # Room again: the purge gave it back.
    again = await send(client, world.tokens["owner"], [("c.csv", data)])
    assert again["data"]["importCosts"]["__typename"] == "CostsImported"
    assert await CostImport.filter(organization_id=world.org.id).count() == 3
