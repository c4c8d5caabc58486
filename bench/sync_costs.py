"""Benchmark: sync a month of N FOCUS rows laid out as AWS Data Exports writes it, from the S3
emulator, through the product's own sync (`jobs.cost_sources.sync_source`), against importing
the same rows from local disk as `bench/import_costs.py` does, in the same run.

moto's S3 runs in a process of its own (`moto_server` on loopback; its memory and CPU are not
the sync's) and is written only through the S3 API, by a child process that generates the
month with `bench/import_costs.py`'s generator, one part file at a time
(`<prefix>/<export>/data/BILLING_PERIOD=2024-09/<export>-0000N.parquet`, then
`<export>-Manifest.json` under `metadata/` naming them by their `s3://` URIs). The same part
files, from the local disk, are then imported by `import_costs`. Each phase starts on a fresh
database. The database named by --database-url is DROPPED and recreated: never point it at
real data.

    .venv/bin/python bench/sync_costs.py --rows 10000000 --format parquet

Peak RSS is this process's as the sync ends (measured before the import runs). The last line
is the headline: `sync/import <ratio>  rows_per_s <sync's>  peak_rss_mb <sync's>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.import_costs import DEFAULT_DATABASE_URL, bench_organization, fresh_database, generate  # noqa: E402

BUCKET = "msp-billing-exports"
PREFIX = "exports"
EXPORT = "focus-monthly"
PERIOD = "2024-09"
ROWS_PER_PART = 1_250_000  # ~8 parts for 10,000,000 rows, as AWS cuts a month of that size
KEY_ID, SECRET = "AKIABENCHSYNC0000000", "bench-secret-access-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_emulator() -> tuple[subprocess.Popen, str]:
    """moto's S3 in a process of its own, once it answers."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("moto_server did not start")


def part_rows(rows: int) -> list[tuple[int, int]]:
    """(first row, rows) of each part."""
    count = max(1, round(rows / ROWS_PER_PART))
    size = -(-rows // count)
    return [(first, min(size, rows - first)) for first in range(0, rows, size)]


def part_path(folder: Path, number: int, kind: str) -> Path:
    return folder / f"{EXPORT}-{number:05d}.{kind}"


def lay_out(folder: str, endpoint: str, rows: int, kind: str) -> None:
    """Generate the month's parts and write them, then the manifest, into the bucket as AWS
    Data Exports does (run in a child process: its memory is not the sync's)."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)
    s3.create_bucket(Bucket=BUCKET)
    transfer = TransferConfig(multipart_chunksize=64 << 20)
    data_files = []
    for number, (first, count) in enumerate(part_rows(rows), start=1):
        path = part_path(Path(folder), number, kind)
        generate(str(path), count, kind, first)
        key = f"{PREFIX}/{EXPORT}/data/BILLING_PERIOD={PERIOD}/{EXPORT}-{number:05d}.{kind}"
        s3.upload_file(str(path), BUCKET, key, Config=transfer)
        data_files.append(f"s3://{BUCKET}/{key}")
    manifest = {
        "executionId": "bench-0001", "dataFiles": data_files,
        "exportArn": f"arn:aws:bcm-data-exports:us-east-1:123456789012:export/{EXPORT}",
        "billingPeriod": {"start": "2024-09-01T00:00:00Z", "end": "2024-10-01T00:00:00Z"},
    }
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{EXPORT}/metadata/BILLING_PERIOD={PERIOD}/{EXPORT}-Manifest.json",
                  Body=json.dumps(manifest).encode())


async def sync_phase(database_url: str) -> tuple[int, float]:
    """Sync the bucket on a fresh database; the rows imported and the seconds it took."""
    from infra import db, object_stores
    from infra.settings import get_settings
    from jobs.cost_sources import sync_source
    from models import CostImport
    from models.cost_sources import CostSourceKind, SourceInput, create_source

    settings = get_settings()
    await fresh_database(database_url)
    try:
        organization = await bench_organization()
        source = await create_source(
            SimpleNamespace(organization_id=organization.id), settings,
            SourceInput(name="AWS billing", kind=CostSourceKind.AWS_S3, location=f"s3://{BUCKET}/{PREFIX}",
                        region="us-east-1", access_key_id=KEY_ID, secret_access_key=SECRET),
            lambda endpoint: object_stores.check_endpoint(settings, endpoint),
        )
        started = time.perf_counter()
        outcome = await sync_source(settings, source.id)
        seconds = time.perf_counter() - started
        imported = await CostImport.filter(cost_source_id=source.id).values_list(
            "state", "row_count", "started_at", "finished_at"
        )
    finally:
        await db.close()
    if outcome.get("state") != "OK" or len(imported) != 1 or imported[0][0] != "DONE":
        raise SystemExit(f"the sync did not import the month: {outcome} {imported}")
    _, rows, import_started, import_finished = imported[0]
    importing = (import_finished - import_started).total_seconds()
    print(f"synced {rows} rows in {seconds:.2f} s (listing and reading the bucket {seconds - importing:.2f} s, "
          f"importing {importing:.2f} s)")
    return rows, seconds


async def import_phase(database_url: str, paths: list[Path]) -> tuple[int, float]:
    """Import the same parts from local disk on a fresh database, as bench/import_costs.py does."""
    from infra import db
    from models.costs import import_costs

    await fresh_database(database_url)
    try:
        organization = await bench_organization()
        started = time.perf_counter()
        report = await import_costs(organization.id, paths)
        seconds = time.perf_counter() - started
    finally:
        await db.close()
    print(f"imported {report.rows} rows from local disk in {seconds:.2f} s")
    return report.rows, seconds


def main(rows: int, kind: str, database_url: str, folder: Path) -> None:
    server, endpoint = start_emulator()
    try:
        started = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(target=lay_out, args=(str(folder), endpoint, rows, kind))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit("generating or uploading the month failed")
        paths = [part_path(folder, number, kind) for number in range(1, len(part_rows(rows)) + 1)]
        size = sum(path.stat().st_size for path in paths)
        print(f"wrote {rows} rows as {len(paths)} {kind} parts ({size / 1e6:.0f} MB) into the emulator "
              f"in {time.perf_counter() - started:.1f} s")

        os.environ.update({
            "DATABASE_URL": database_url, "AWS_S3_ENDPOINT_URL": endpoint, "STORAGE_DIR": str(folder / "storage"),
            "DATA_DIR": str(folder / "data"), "SECRET_KEY": "bench-sync-secret-key-not-for-production",
        })
        os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
        synced, sync_seconds = asyncio.run(sync_phase(database_url))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        imported, import_seconds = asyncio.run(import_phase(database_url, paths))
    finally:
        server.terminate()
        server.wait()
    sync_rate, import_rate = synced / sync_seconds, imported / import_seconds
    print(f"import rows_per_s {int(import_rate)}")
    print(f"rows_per_s {int(sync_rate)}")
    print(f"peak_rss_mb {peak_mb}")
    print(f"sync/import {sync_rate / import_rate:.2f}  rows_per_s {int(sync_rate)}  peak_rss_mb {peak_mb}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the synthetic month")
    parser.add_argument("--format", choices=("csv.gz", "parquet"), default="parquet",
                        help="what the export writes (AWS Data Exports: gzip CSV or Parquet)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="database to DROP, recreate and import into (default: $BENCH_DATABASE_URL or %(default)s)",
    )
    parser.add_argument("--folder", type=Path, default=None, help="where to write the parts (default: a temporary folder)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=arguments.folder) as scratch:
        main(arguments.rows, arguments.format, arguments.database_url, Path(scratch))
