"""Cost records imported before deliveries existed survive the move to the partitioned table:
every row, its values and id, and each scope's rows become that scope's current delivery; the
partitions made then lose the per-row checks the import took over (migration 0027), and their index
by sub-account keeps the unclaimed rows alone (0028).

Run in a child process on a database of its own: migrating needs a Tortoise set-up of its own.
The legacy schema is copied from a template migrated once (tests/databases.py); the move itself
is migrated each time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_DATABASE_URL

ROOT = Path(__file__).resolve().parent.parent
LEGACY = "0006_cost_origin"

SCRIPT = """
import asyncio, json, sys
from datetime import date
import asyncpg
from tortoise import Tortoise
from tortoise.migrations.api.migrate import migrate
from infra import db
from infra.settings import Settings
from tests.databases import create_migrated

url, legacy = sys.argv[1], sys.argv[2]
plain = url.replace("postgres://", "postgresql://", 1)
admin = plain.rsplit("/", 1)[0] + "/postgres"
name = plain.rsplit("/", 1)[1]


async def main():
    # The schema as it stood at the legacy migration: a copy of its template.
    await create_migrated(url, target=f"models.{legacy}")
    config = db.tortoise_config(Settings(database_url=url, redis_url="redis://127.0.0.1:6379/15"))
    legacy_db = await asyncpg.connect(plain)
    org = await legacy_db.fetchval(
        "INSERT INTO organizations (id, created_at, updated_at, name, timezone, invoice_prefix, "
        "data_ingestion_delay, export_date_format) VALUES (gen_random_uuid(), now(), now(), 'Northwind', "
        "'UTC', 'INV', false, 'YYYY-MM-DD') RETURNING id")
    imported = await legacy_db.fetchval(
        "INSERT INTO cost_imports (id, organization_id, filename, file_sha256, row_count, inserted_count, "
        "duplicate_count, unmatched_sub_accounts, created_at) VALUES (gen_random_uuid(), $1, 'old.csv', "
        "repeat('a', 64), 3, 3, 0, '[]', now()) RETURNING id", org)
    for fingerprint, month, cost in (("f1", "2024-09-01", "1.25"), ("f2", "2024-09-01", "2.50"), ("f3", "2024-10-01", "0.125")):
        await legacy_db.execute(
            "INSERT INTO cost_records (organization_id, cost_import_id, fingerprint, billing_month, "
            "billing_period_start, billing_period_end, provider_name, billing_account_id, sub_account_id, "
            "billed_cost, billing_currency, charge_category, extra) VALUES ($1, $2, $3, $4::date, $4::date::timestamptz, "
            "($4::date + interval '1 month')::timestamptz, 'AWS', '111122223333', 'sub-1', $5::numeric, 'USD', 'Usage', '{}')",
            org, imported, fingerprint, date.fromisoformat(month), cost)
    before = [dict(r) for r in await legacy_db.fetch(
        "SELECT id, billing_month::text AS month, billed_cost::text AS cost FROM cost_records ORDER BY id")]
    await legacy_db.close()
    await migrate(config=config)
    await Tortoise.close_connections()
    current = await asyncpg.connect(plain)
    after = [dict(r) for r in await current.fetch(
        "SELECT id, billing_month::text AS month, billed_cost::text AS cost FROM cost_records ORDER BY id")]
    partitioned = await current.fetchval(
        "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'cost_records'::regclass")
    state = await current.fetchval("SELECT state FROM cost_imports")
    scopes = await current.fetchval("SELECT count(*) FROM cost_delivery_scopes")
    # A partition made after the migrations, beside the two made while moving the rows.
    await current.execute("SELECT ensure_cost_records_partition('2024-11-01')")
    tables = "SELECT inhrelid FROM pg_inherits WHERE inhparent = 'cost_records'::regclass"
    checks = {r["relname"]: r["checks"] for r in await current.fetch(
        "SELECT c.relname, array_agg(k.conname ORDER BY k.conname) FILTER (WHERE k.conname IS NOT NULL) AS checks"
        " FROM pg_class c LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'c'"
        f" WHERE c.oid IN ({tables}) OR c.oid = 'cost_records'::regclass GROUP BY 1")}
    collations = [r["collname"] for r in await current.fetch(
        "SELECT DISTINCT l.collname FROM pg_attribute a JOIN pg_collation l ON l.oid = a.attcollation"
        f" WHERE a.attname = 'sub_account_id' AND (a.attrelid IN ({tables}) OR a.attrelid = 'cost_records'::regclass)")]
    # Migration 0028: the index by sub-account, on every partition, holds the unclaimed rows alone.
    by_sub_account = [r["indexdef"].split(" USING ", 1)[1] for r in await current.fetch(
        "SELECT indexdef FROM pg_indexes WHERE indexdef LIKE '%(organization_id, sub_account_id)%'"
        f" AND (tablename::regclass IN ({tables}) OR tablename = 'cost_records') ORDER BY tablename")]
    await current.close()
    connection = await asyncpg.connect(admin)
    await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await connection.close()
    print(json.dumps({"before": before, "after": after, "partitioned": partitioned, "state": state,
                      "scopes": scopes, "checks": checks, "collations": collations,
                      "by_sub_account": by_sub_account}, default=str))

asyncio.run(main())
"""


def test_legacy_cost_records_survive_the_move_to_deliveries():
    url = TEST_DATABASE_URL.rsplit("/", 1)[0] + f"/invoicing_migration_{os.getpid()}"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, url, LEGACY], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DATABASE_URL": url},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(found["before"]) == 3
    assert found["after"] == found["before"], "every row, with its id, month and exact cost"
    assert found["partitioned"] == 1
    assert found["state"] == "DONE"
    assert found["scopes"] == 2, "one current delivery per scope: AWS 111122223333 in September and in October"
    # Migration 0027: on the partitions made before it and after, one check (the origin's) and
    # sub-account ids compared bytewise.
    assert set(found["checks"]) == {
        "cost_records", "cost_records_default", "cost_records_y2024m09", "cost_records_y2024m10", "cost_records_y2024m11",
    }
    assert all(checks == ["cost_records_origin_valid"] for checks in found["checks"].values()), found["checks"]
    assert found["collations"] == ["C"]
    assert found["by_sub_account"] == ["btree (organization_id, sub_account_id) WHERE (managed_account_id IS NULL)"] * 5, (
        found["by_sub_account"]
    )
