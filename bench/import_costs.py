"""Benchmark: import a synthetic FOCUS delivery of N rows end to end (read, check, COPY,
supersede, commit) through `models.costs.import_costs`.

The data is a month of hourly resource usage of a few hundred sub-accounts under a few
billing accounts, written to disk in chunks by a child process (never held in memory) as
CSV, gzip CSV or Parquet. The import runs in this process, whose peak RSS is reported.
The database named by --database-url is DROPPED and recreated: never point it at real data.

    .venv/bin/python bench/import_costs.py --rows 2000000 --format parquet

Then PostgreSQL's own COPY of the same rows, read back from the table into a CSV file, into a
table like `cost_records` (its columns, defaults, constraints and indexes), in one transaction:
the floor an import cannot pass. The last four lines printed are `rows_per_s <integer>`,
`copy_rows_per_s <integer>`, `peak_rss_mb <integer>` and the headline `import/copy <ratio>`.

With `--storage s3` the delivery is also kept in an S3 bucket (moto's server, started here as
a process of its own on loopback) as an upload is, and imported from it as a worker on another
machine imports it (fetched from the bucket, then read); the same run imports it from the local
disk first, into a fresh database each time. `rows_per_s` is then the bucket's rate, and the
last line, `s3/local <ratio>` (in place of `import/copy`), that rate over the local disk's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/invoicing_bench"
SUB_ACCOUNTS = 300
BILLING_ACCOUNTS = 3
MAPPED_CUSTOMERS = 30  # each claims 5 sub-accounts; the others stay unmatched
CHUNK_ROWS = 100_000
SERVICES = [
    ("Amazon Elastic Compute Cloud", "Compute", "Hrs", "m5.large"),
    ("Amazon Simple Storage Service", "Storage", "GB-Mo", "StandardStorage"),
    ("Amazon Relational Database Service", "Databases", "Hrs", "db.r5.large"),
    ("AWS Lambda", "Compute", "Requests", "Request"),
    ("Amazon CloudFront", "Networking", "GB", "DataTransfer-Out"),
    ("Amazon DynamoDB", "Databases", "ReadRequestUnits", "ReadCapacityUnit-Hrs"),
]


def _chunk(start: int, rows: int):
    """Rows start..start+rows of the month, as an Arrow table of FOCUS text columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def mod(values, divisor: int):
        return pc.subtract(values, pc.multiply(pc.divide(values, divisor), divisor))

    index = pa.array(range(start, start + rows), pa.int64())
    sub = mod(index, SUB_ACCOUNTS)
    hour = mod(pc.divide(index, SUB_ACCOUNTS), 720)
    service = mod(pc.divide(index, 7), len(SERVICES))
    september = 1725148800  # 2024-09-01T00:00:00Z
    seconds = pc.add(pc.multiply(hour, 3600), september)
    charge_start = seconds.cast(pa.timestamp("s"))
    charge_end = pc.add(seconds, 3600).cast(pa.timestamp("s"))
    cents = mod(pc.multiply(index, 7919), 1_000_000)
    quantity = pc.add(mod(index, 97), 1)

    def text(values) -> pa.Array:
        return pa.array(values, pa.string())

    def pick(options, at):
        return pc.take(text(options), at)

    def thousandths(values):
        whole = pc.cast(pc.divide(values, 1000), pa.string())
        part = pc.utf8_lpad(pc.cast(mod(values, 1000), pa.string()), 3, "0")
        return pc.binary_join_element_wise(whole, part, ".")

    billed = thousandths(cents)
    stamp = pc.strftime(charge_start, format="%Y-%m-%dT%H:%M:%SZ")
    end = pc.strftime(charge_end, format="%Y-%m-%dT%H:%M:%SZ")
    sub_ids = pc.cast(pc.add(pc.multiply(sub, 7), 100000000000), pa.string())
    columns = {
        "BilledCost": billed,
        "EffectiveCost": billed,
        "ListCost": thousandths(pc.multiply(cents, 2)),
        "BillingAccountId": pc.cast(pc.add(mod(sub, BILLING_ACCOUNTS), 900000000000), pa.string()),
        "BillingAccountName": pc.binary_join_element_wise("Payer ", pc.cast(mod(sub, BILLING_ACCOUNTS), pa.string()), ""),
        "BillingCurrency": pa.repeat(pa.scalar("USD"), rows),
        "BillingPeriodStart": pa.repeat(pa.scalar("2024-09-01T00:00:00Z"), rows),
        "BillingPeriodEnd": pa.repeat(pa.scalar("2024-10-01T00:00:00Z"), rows),
        "ChargeCategory": pa.repeat(pa.scalar("Usage"), rows),
        "ChargeDescription": pick([f"{s[3]} usage" for s in SERVICES], service),
        "ChargeFrequency": pa.repeat(pa.scalar("Usage-Based"), rows),
        "ChargePeriodStart": stamp,
        "ChargePeriodEnd": end,
        "ConsumedQuantity": pc.cast(quantity, pa.string()),
        "ConsumedUnit": pick([s[2] for s in SERVICES], service),
        "PricingQuantity": pc.cast(quantity, pa.string()),
        "PricingUnit": pick([s[2] for s in SERVICES], service),
        "ProviderName": pa.repeat(pa.scalar("AWS"), rows),
        "PublisherName": pa.repeat(pa.scalar("AWS"), rows),
        "InvoiceIssuerName": pa.repeat(pa.scalar("AWS"), rows),
        "RegionId": pick(["us-east-1", "eu-west-1", "eu-central-1"], mod(sub, 3)),
        "RegionName": pick(["US East (N. Virginia)", "Europe (Ireland)", "Europe (Frankfurt)"], mod(sub, 3)),
        "ResourceId": pc.binary_join_element_wise("arn:aws:ec2:us-east-1:", sub_ids, ":instance/i-", pc.cast(mod(index, 5000), pa.string()), ""),
        "ServiceName": pick([s[0] for s in SERVICES], service),
        "ServiceCategory": pick([s[1] for s in SERVICES], service),
        "SkuId": pick([s[3] for s in SERVICES], service),
        "SubAccountId": sub_ids,
        "SubAccountName": pc.binary_join_element_wise("Workload ", sub_ids, ""),
        "Tags": pick(['{"env":"prod"}', '{"env":"dev","team":"data"}', ""], mod(sub, 3)),
        "x_UsageType": pick(["BoxUsage:m5.large", "TimedStorage-ByteHrs", "DataTransfer-Out-Bytes"], mod(index, 3)),
    }
    return pa.table(columns)


def generate(path: str, rows: int, kind: str, first: int = 0) -> None:
    """Write rows first..first+rows of the month to `path` a chunk at a time (run in a child
    process); a month in several parts is one call per part."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    writer = sink = None
    for start in range(first, first + rows, CHUNK_ROWS):
        table = _chunk(start, min(CHUNK_ROWS, first + rows - start))
        if writer is None:
            if kind == "parquet":
                writer = pq.ParquetWriter(path, table.schema, compression="snappy")
            else:
                sink = pa.output_stream(path, compression="gzip" if kind == "csv.gz" else None)
                writer = pa_csv.CSVWriter(sink, table.schema)
        if kind == "parquet":
            writer.write_table(table, row_group_size=CHUNK_ROWS)
        else:
            writer.write_table(table)
    writer.close()
    if sink is not None:
        sink.close()


async def recreate_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql", path="/postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def fresh_database(database_url: str) -> None:
    """Drop and recreate the database, migrate it and open the product's connections to it;
    a checkpoint first, so that the writes of an earlier run are not flushed during this one."""
    from tortoise import Tortoise

    from infra import db
    from infra.settings import get_settings

    settings = get_settings()
    await recreate_database(database_url)
    await db.migrate(settings)
    await Tortoise.close_connections()
    await db.init(settings)
    with contextlib.suppress(Exception):  # CHECKPOINT needs a superuser (or pg_checkpoint)
        await Tortoise.get_connection("default").execute_script("CHECKPOINT")


async def bench_organization():
    """The MSP the delivery is imported for: 30 customers claiming 5 sub-accounts each."""
    from models import Organization
    from models.managed_accounts import ManagedAccount, set_sub_accounts

    organization = await Organization.create(name="Bench MSP")
    for customer in range(MAPPED_CUSTOMERS):
        account = await ManagedAccount.create(organization=organization, name=f"Customer {customer}")
        await set_sub_accounts(account, [str(100000000000 + (customer * 5 + n) * 7) for n in range(5)])
    return organization


async def copy_floor(folder: Path) -> float:
    """Seconds PostgreSQL takes to COPY the imported rows, as a CSV file, into a fresh table
    like `cost_records` in one transaction (a checkpoint first, as before the import)."""
    from tortoise import Tortoise

    connection = Tortoise.get_connection("default")
    path = folder / "copy-floor.csv"
    async with connection.acquire_connection() as pg:
        await pg.execute("SET TIME ZONE 'UTC'")
        columns = [name for name in await pg.fetchval(
            "SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute"
            " WHERE attrelid = 'cost_records'::regclass AND attnum > 0 AND NOT attisdropped"
        ) if name != "id"]
        await pg.copy_from_query(f"SELECT {', '.join(columns)} FROM cost_records", output=str(path), format="csv")
        await pg.execute("CREATE TABLE copy_floor (LIKE cost_records INCLUDING ALL)")
        with contextlib.suppress(Exception):
            await pg.execute("CHECKPOINT")
        started = time.perf_counter()
        async with pg.transaction():
            await pg.copy_to_table("copy_floor", source=str(path), columns=columns, format="csv")
        seconds = time.perf_counter() - started
        await pg.execute("DROP TABLE copy_floor")
    path.unlink()
    return seconds


def start_moto() -> tuple[subprocess.Popen, str]:
    """moto's S3 server, a process of its own on a free loopback port, and a bucket in it."""
    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                      aws_secret_access_key="bench")
    for _ in range(100):
        try:
            s3.create_bucket(Bucket="bench-storage")
            return server, endpoint
        except Exception:  # not listening yet
            time.sleep(0.1)
    server.kill()
    raise SystemExit("moto's server did not start")


async def import_from_bucket(organization_id, path: Path):
    """The delivery uploaded to the bucket as the web process keeps an upload (timed apart),
    then imported as a worker imports it: fetched from the bucket, then read."""
    from infra import storage
    from infra.settings import get_settings
    from models.costs import register_delivery, run_import

    settings = get_settings()
    relative = f"{storage.delivery_folder(organization_id)}/bench/1/{path.name}"
    started = time.perf_counter()

    async def chunks():
        with path.open("rb") as handle:
            while chunk := handle.read(storage.CHUNK_BYTES):
                yield chunk

    await storage.save_stream(settings, relative, chunks())
    print(f"uploaded the delivery to the bucket in {time.perf_counter() - started:.2f} s")
    fetching = 0.0

    async def fetch(stored: str, folder: Path) -> Path:
        nonlocal fetching
        begun = time.perf_counter()
        try:
            return await storage.local_copy(settings, stored, folder)
        finally:
            fetching += time.perf_counter() - begun

    started = time.perf_counter()
    cost_import = await register_delivery(organization_id, [(relative, path.name)])
    report = await run_import(cost_import.id, fetch=fetch)
    print(f"fetched the delivery from the bucket in {fetching:.2f} s (within the import's time)")
    return report, time.perf_counter() - started


async def main(rows: int, kind: str, database_url: str, folder: Path, bucket: str = "") -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    if bucket:
        os.environ.update(STORAGE_URL="s3://bench-storage/invoicing", STORAGE_ENDPOINT_URL=bucket,
                          STORAGE_ACCESS_KEY_ID="bench", STORAGE_SECRET_ACCESS_KEY="bench")
    from infra import db
    from models.costs import import_costs

    path = folder / f"bench-delivery.{kind}"
    started = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(target=generate, args=(str(path), rows, kind))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit("generating the delivery failed")
    print(f"generated {rows} rows as {kind} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s")

    await fresh_database(database_url)
    try:
        organization = await bench_organization()
        started = time.perf_counter()
        report = await import_costs(organization.id, path)
        seconds = time.perf_counter() - started
        print(f"imported {report.rows} rows in {seconds:.2f} s: {report.inserted} written, "
              f"{len(report.scopes)} scopes, {len(report.unmatched)} unmatched sub-accounts (local disk)")
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        floor = await copy_floor(folder)
        print(f"PostgreSQL's COPY of the {report.inserted} rows from a file: {floor:.2f} s")
        local_rate = report.rows / seconds
        if bucket:
            await db.close()
            await fresh_database(database_url)
            organization = await bench_organization()
            report, seconds = await import_from_bucket(organization.id, path)
            print(f"imported {report.rows} rows in {seconds:.2f} s: {report.inserted} written (from the bucket)")
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        await db.close()
    rows_per_s = report.rows / seconds
    copy_rows_per_s = report.inserted / floor
    print(f"rows_per_s {int(rows_per_s)}")
    print(f"copy_rows_per_s {int(copy_rows_per_s)}")
    print(f"peak_rss_mb {peak_kb // 1024}")
    if bucket:
        print(f"s3/local {rows_per_s / local_rate:.2f}")
    else:
        print(f"import/copy {rows_per_s / copy_rows_per_s:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the synthetic delivery")
    parser.add_argument("--format", choices=("csv", "csv.gz", "parquet"), default="csv")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="database to DROP, recreate and import into (default: $BENCH_DATABASE_URL or %(default)s)",
    )
    parser.add_argument("--folder", type=Path, default=None, help="where to write the delivery (default: a temporary folder)")
    parser.add_argument("--storage", choices=("local", "s3"), default="local",
                        help="s3: also import the delivery kept in an S3 bucket (moto's server), and compare")
    arguments = parser.parse_args()
    moto, endpoint = start_moto() if arguments.storage == "s3" else (None, "")
    try:
        with tempfile.TemporaryDirectory(dir=arguments.folder) as scratch:
            asyncio.run(main(arguments.rows, arguments.format, arguments.database_url, Path(scratch), endpoint))
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=10)
