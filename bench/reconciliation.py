"""Benchmark: a month's reconciliation read from its kept figures (`cost_totals`), against the
same sums scanned from its cost records, on the database `bench/import_costs.py` left behind
(run that first, with the same --database-url; nothing is written here).

    .venv/bin/python bench/import_costs.py --rows 2000000 --format parquet
    .venv/bin/python bench/reconciliation.py

The last line printed is `reconciliation_ms <median of five>`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/invoicing_bench"
MONTH = date(2024, 9, 1)
RUNS = 5

# What the month's reconciliation summed before it kept its figures: a scan of every record.
_SCAN = """SELECT managed_account_id, provider_name, origin, billing_currency,
       CASE WHEN managed_account_id IS NULL THEN sub_account_id ELSE '' END, sum(billed_cost), count(*)
FROM cost_records WHERE organization_id = $1 AND billing_month = $2 GROUP BY 1, 2, 3, 4, 5"""


async def main(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    from tortoise import connections

    from infra import db
    from infra.settings import get_settings
    from models import Organization
    from models.invoices.reconciliation import reconcile

    await db.init(get_settings())
    try:
        organization = await Organization.get(name="Bench MSP")
        connection = connections.get("default")
        rows = (
            await connection.execute_query_dict(
                "SELECT count(*) AS n FROM cost_records WHERE organization_id = $1 AND billing_month = $2",
                [str(organization.id), MONTH],
            )
        )[0]["n"]
        kept, scanned = [], []
        for _ in range(RUNS):
            started = time.perf_counter()
            found = await reconcile(organization.id, MONTH)
            kept.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await connection.execute_query(_SCAN, [str(organization.id), MONTH])
            scanned.append((time.perf_counter() - started) * 1000)
        print(f"{rows} cost records, {len(found.lines)} reconciliation lines")
        print(f"scan_ms {statistics.median(scanned):.0f}")
        print(f"reconciliation_ms {statistics.median(kept):.0f}")
    finally:
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="the database bench/import_costs.py imported into (default: $BENCH_DATABASE_URL or %(default)s)",
    )
    asyncio.run(main(parser.parse_args().database_url))
