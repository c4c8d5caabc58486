"""Latency of the invoice list through the real ASGI app, against the floor of plain SQL.

Seeds 1,000 invoices with 20 lines each, then times

    invoices(first: N) { edges { node { account { name } lineItems { amount } timeline { kind } } } }

at N = 20 and 100 through the app (HTTP parsing, auth, GraphQL, dataloaders, JSON), and the
same data fetched with plain asyncpg queries and serialized to JSON. The last line is
`graphql/sql <ratio>` at page size 100.

    .venv/bin/python bench/graphql_list.py [--database-url URL] [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUERY = """query($n: Int!) { invoices(first: $n) { edges { node {
  number total account { name } lineItems { amount } timeline { kind } } } } }"""
INVOICES, LINES = 1000, 20


async def recreate(url: str) -> None:
    import asyncpg

    parts = urlsplit(url)
    admin = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql", path="/postgres")))
    name = parts.path.lstrip("/")
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()


async def seed():
    from models import (
        BillingPeriod,
        Invoice,
        InvoiceEvent,
        InvoiceLineItem,
        InvoiceRevision,
        ManagedAccount,
        Organization,
    )
    from models.auth import TokenKind, create_user, issue_token
    from models.base import Scope

    org = await Organization.create(name="Bench MSP")
    accounts = [await ManagedAccount.create(organization=org, name=f"Customer {i}") for i in range(50)]
    periods = []
    for i in range(INVOICES // len(accounts)):
        start = date(2020 + i // 12, i % 12 + 1, 1)
        end = (start + timedelta(days=32)).replace(day=1)
        periods.append(await BillingPeriod.create(organization=org, start_date=start, end_date=end))
    now = datetime.now(UTC)
    invoices, revisions, lines, events = [], [], [], []
    for n in range(INVOICES):
        invoice = Invoice(
            organization=org, managed_account=accounts[n % len(accounts)], billing_period=periods[n // len(accounts)],
            currency="USD", number=f"INV-2026-{n + 1:04}",
            issue_date=date(2026, 1, 1), due_date=date(2026, 1, 31), created_at=now,
        )
        invoices.append(invoice)
    await Invoice.bulk_create(invoices, batch_size=500)
    invoices = await Invoice.filter(organization=org)
    for invoice in invoices:
        revisions.append(InvoiceRevision(
            invoice=invoice, revision=1, template_version="1", currency="USD", cost_currency="USD",
            subtotal=Decimal(LINES), adjustments=0, charges=0, total=Decimal(LINES),
            issue_date=date(2026, 1, 1), due_date=date(2026, 1, 31),
        ))
        events.append(InvoiceEvent(invoice=invoice, actor_label="worker", kind="GENERATED"))
    await InvoiceRevision.bulk_create(revisions, batch_size=500)
    await InvoiceEvent.bulk_create(events, batch_size=1000)
    by_invoice = {r.invoice_id: r for r in await InvoiceRevision.all()}
    for invoice in invoices:
        revision = by_invoice[invoice.id]
        lines += [InvoiceLineItem(revision=revision, position=p + 1, description=f"Service {p}", amount=Decimal(1))
                  for p in range(LINES)]
        invoice.current_revision_id = revision.id
        invoice.total = invoice.subtotal = Decimal(LINES)
        invoice.status = "AWAITING_APPROVAL"
    await InvoiceLineItem.bulk_create(lines, batch_size=5000)
    await Invoice.bulk_update(invoices, fields=["current_revision_id", "total", "subtotal", "status"], batch_size=500)
    owner = await create_user(org.id, "bench@example.com", Scope.OWNER)
    raw, _ = await issue_token(owner, TokenKind.API, timedelta(days=1))
    return org, raw


async def plain_sql(conn, org_id, n: int) -> bytes:
    """The floor: the same data with hand-written SQL, serialized to JSON."""
    rows = await conn.fetch(
        "SELECT id, number, total, managed_account_id, current_revision_id FROM invoices"
        " WHERE organization_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2", org_id, n)
    accounts = {r["id"]: r["name"] for r in await conn.fetch(
        "SELECT id, name FROM managed_accounts WHERE id = ANY($1)", list({r["managed_account_id"] for r in rows}))}
    lines: dict = {}
    for r in await conn.fetch(
            "SELECT revision_id, amount FROM invoice_line_items WHERE revision_id = ANY($1) ORDER BY position",
            [r["current_revision_id"] for r in rows]):
        lines.setdefault(r["revision_id"], []).append({"amount": str(r["amount"])})
    events: dict = {}
    for r in await conn.fetch(
            "SELECT invoice_id, kind FROM invoice_events WHERE invoice_id = ANY($1) ORDER BY at, id",
            [r["id"] for r in rows]):
        events.setdefault(r["invoice_id"], []).append({"kind": r["kind"]})
    edges = [{"node": {
        "number": r["number"], "total": str(r["total"]), "account": {"name": accounts[r["managed_account_id"]]},
        "lineItems": lines.get(r["current_revision_id"], []), "timeline": events.get(r["id"], []),
    }} for r in rows]
    return json.dumps({"data": {"invoices": {"edges": edges}}}).encode()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/invoicing_bench_graphql")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    os.environ.update(DATABASE_URL=args.database_url, REDIS_URL=args.redis_url, ENVIRONMENT="production")

    import asyncpg
    import httpx

    from infra import broker, db
    from infra.settings import get_settings
    from invoicing.app import create_app, tune_garbage_collector

    settings = get_settings()
    await recreate(args.database_url)
    await db.migrate(settings)
    await db.close()
    await db.init(settings)
    started = time.perf_counter()
    org, token = await seed()
    print(f"seeded {INVOICES} invoices x {LINES} lines in {time.perf_counter() - started:.1f} s")

    app = create_app(settings)
    app.state.redis = await broker.connect(settings)
    # As the app's lifespan does in a web process (not run by the ASGI transport).
    tune_garbage_collector()
    conn = await asyncpg.connect(args.database_url.replace("postgres://", "postgresql://", 1))
    transport = httpx.ASGITransport(app=app)
    figures = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for n in (20, 100):
            body = {"query": QUERY, "variables": {"n": n}}
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(5):  # warm-up
                response = await client.post("/graphql", json=body, headers=headers)
                assert len(response.json()["data"]["invoices"]["edges"]) == n
                await plain_sql(conn, org.id, n)
            graphql_times, sql_times = [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                await client.post("/graphql", json=body, headers=headers)
                graphql_times.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await plain_sql(conn, org.id, n)
                sql_times.append((time.perf_counter() - t0) * 1000)
            g50, g95 = percentiles(graphql_times)
            s50, s95 = percentiles(sql_times)
            figures[n] = g50 / s50
            print(f"page {n:>3}: graphql p50 {g50:7.1f} ms  p95 {g95:7.1f} ms | "
                  f"plain sql+json p50 {s50:6.1f} ms  p95 {s95:6.1f} ms | ratio {g50 / s50:.2f}")
    await conn.close()
    await app.state.redis.aclose()
    await db.close()
    print(f"graphql/sql {figures[100]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
