"""Benchmark: import a synthetic FOCUS file of N rows, end to end (parse, COPY, insert).

The file is the FinOps Foundation's FOCUS 1.0 sample (tests/data, CC BY 4.0) cycled to N
rows; each cycle shifts the charge hour, scales the costs and suffixes the ids, so that every
row is new data (none is a duplicate) and the parser's per-value caches see realistic variety.
The database named by --database-url is DROPPED and recreated: never point it at real data.

    .venv/bin/python bench/import_costs.py --rows 100000

The last line printed is `rows_per_s <integer>`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "tests" / "data" / "focus-1.0-sample.csv"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/invoicing_bench"
COST_COLUMNS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
# The sample's largest AWS sub-accounts, given to three customers; the rest stay unmatched.
MAPPED = {
    "Customer A": ["11353890204", "85742851457"],
    "Customer B": ["18938484842", "69918885631"],
    "Customer C": ["84445137922", "/subscriptions/64e355d7-997c-491d-b0c1-8414dccfcf42"],
}


def synthesize(rows: int) -> bytes:
    """A FOCUS CSV of `rows` rows built from the sample."""
    with SAMPLE.open(newline="", encoding="utf-8") as sample:
        reader = csv.DictReader(sample)
        header = list(reader.fieldnames or ())
        base = list(reader)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    for index in range(rows):
        cycle, row = divmod(index, len(base))
        record = dict(base[row])
        if cycle:
            record["Id"] = f"{record['Id']}-{cycle}"
            scale = Decimal(1000 + cycle % 997) / 1000
            for column in COST_COLUMNS:
                if record[column] not in ("", "NULL"):
                    record[column] = f"{Decimal(record[column]) * scale:f}"
            for column in ("ChargePeriodStart", "ChargePeriodEnd"):
                if record[column] not in ("", "NULL"):
                    moved = datetime.fromisoformat(record[column]) + timedelta(hours=cycle % 24)
                    record[column] = moved.strftime("%Y-%m-%d %H:%M:%S")
            if record["ResourceId"] not in ("", "NULL"):
                record["ResourceId"] = f"{record['ResourceId']}-{cycle}"
        writer.writerow(record)
    return out.getvalue().encode()


async def recreate_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql", path="/postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def main(rows: int, database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    from tortoise import Tortoise

    from infra import db
    from infra.settings import get_settings
    from models import Organization
    from models.costs import import_costs
    from models.managed_accounts import ManagedAccount, set_sub_accounts

    settings = get_settings()
    await recreate_database(database_url)
    await db.migrate(settings)
    await Tortoise.close_connections()
    await db.init(settings)
    try:
        organization = await Organization.create(name="Bench MSP")
        for name, sub_account_ids in MAPPED.items():
            account = await ManagedAccount.create(organization=organization, name=name)
            await set_sub_accounts(account, sub_account_ids)

        started = time.perf_counter()
        data = synthesize(rows)
        print(f"synthesized {rows} rows ({len(data) / 1e6:.1f} MB) in {time.perf_counter() - started:.2f} s")

        started = time.perf_counter()
        report = await import_costs(organization.id, data, filename="bench.csv")
        seconds = time.perf_counter() - started
        print(f"imported {report.rows} rows in {seconds:.2f} s: {report.inserted} inserted, "
              f"{report.duplicates} duplicates, {len(report.unmatched)} unmatched sub-accounts")

        started = time.perf_counter()
        again = await import_costs(organization.id, data, filename="bench.csv")
        print(f"re-imported in {time.perf_counter() - started:.2f} s: {again.inserted} inserted, "
              f"{again.duplicates} duplicates")
    finally:
        await db.close()
    print(f"rows_per_s {int(report.rows / seconds)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the synthetic file")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="database to DROP, recreate and import into (default: $BENCH_DATABASE_URL or %(default)s)",
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.database_url))
