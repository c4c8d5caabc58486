"""The console's month view in a real browser: how long until a month of 1,000 invoices is
interactive.

Seeds one month of 1,000 customers' invoices (800 approved and delivered, 150 awaiting
approval, 30 of them with a warning, 50 ready to generate; three lines each) in a fresh
database, serves the app with uvicorn on a loopback port, and opens `/console` in Chromium
(the renderer's, every other host unresolvable) with a signed-in session, `--rounds` times, each
in a fresh browser context (nothing cached but the vendored files' immutable copies would be
on a first visit: the context is new each time). A round's figure is the page's own clock from
the navigation's start to the month view drawn with all its figures (`window.consoleTimings`,
set when `#month[data-ready]` is): one request for the month's figures (`monthSummary`,
summed by the database), the reconciliation, sources and imports. The last line is
`interactive_ms <median>`.

    .venv/bin/python bench/console.py [--database-url URL] [--rounds 9]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

INVOICES, LINES = 1000, 3
MONTH = date(2026, 1, 1)
PASSWORD = "Bench console pass 1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def seed() -> str:
    from models import BillingPeriod, Invoice, InvoiceLineItem, InvoiceRevision, ManagedAccount, Organization
    from models.auth import create_user
    from models.base import Scope
    from models.invoices.checks import CheckCode, Finding, Severity

    org = await Organization.create(name="Bench MSP")
    await ManagedAccount.bulk_create(
        [ManagedAccount(organization=org, name=f"Customer {n:04}", currency="USD" if n % 4 else "EUR") for n in range(INVOICES)],
        batch_size=500,
    )
    accounts = await ManagedAccount.filter(organization=org).order_by("name")
    now = datetime.now(UTC)
    period = await BillingPeriod.create(organization=org, start_date=MONTH, end_date=date(2026, 2, 1), state="CLOSED", closed_at=now)
    await Invoice.bulk_create(
        [
            Invoice(
                organization=org,
                managed_account=account,
                billing_period=period,
                currency=account.currency,
                number=f"INV-2026-{n + 1:04}" if n < 950 else None,
                issue_date=date(2026, 2, 1),
                due_date=date(2026, 3, 3),
                created_at=now,
            )
            for n, account in enumerate(accounts)
        ],
        batch_size=500,
    )
    invoices = await Invoice.filter(organization=org).order_by("number")
    warning = Finding(CheckCode.TOTAL_CHANGED, Severity.WARNING, "The total moved by 40 % since last month.", {}).stored()
    await InvoiceRevision.bulk_create(
        [
            InvoiceRevision(
                invoice=invoice,
                revision=1,
                template_version="1",
                currency=invoice.currency,
                cost_currency="USD",
                subtotal=Decimal("123.45"),
                adjustments=0,
                charges=0,
                total=Decimal("123.45"),
                issue_date=date(2026, 2, 1),
                due_date=date(2026, 3, 3),
                checks=[warning] if 800 <= n < 830 else [],
            )
            for n, invoice in enumerate(invoices)
        ],
        batch_size=500,
    )
    revisions = {r.invoice_id: r for r in await InvoiceRevision.all()}
    await InvoiceLineItem.bulk_create(
        [
            InvoiceLineItem(revision=revisions[invoice.id], position=p + 1, description=f"Service {p + 1}", amount=Decimal("41.15"))
            for invoice in invoices
            for p in range(LINES)
        ],
        batch_size=5000,
    )
    for n, invoice in enumerate(invoices):
        invoice.current_revision_id = revisions[invoice.id].id
        invoice.total = invoice.subtotal = Decimal("123.45")
        invoice.status = "APPROVED" if n < 800 else "AWAITING_APPROVAL" if n < 950 else "READY_TO_INVOICE"
        invoice.delivery_status = "SENT" if n < 800 else "NOT_SENT"
        invoice.approved_at = now if n < 800 else None
    await Invoice.bulk_update(
        invoices, fields=["current_revision_id", "total", "subtotal", "status", "delivery_status", "approved_at"], batch_size=500
    )
    owner = await create_user(org.id, "owner@bench.example", Scope.OWNER, password=PASSWORD)
    return owner.email


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/invoicing_bench_console")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    os.environ.update(DATABASE_URL=args.database_url, REDIS_URL=args.redis_url, ENVIRONMENT="production")

    import httpx
    import uvicorn
    from playwright.async_api import async_playwright

    from bench.graphql_list import recreate
    from infra import broker, db
    from infra.settings import get_settings
    from invoicing.app import create_app
    from jobs.pdf import launch_options

    settings = get_settings()
    await recreate(args.database_url)
    await db.migrate(settings)
    await db.close()
    await db.init(settings)
    started = time.perf_counter()
    email = await seed()
    print(f"seeded {INVOICES} invoices of one month in {time.perf_counter() - started:.1f} s")

    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    app = create_app(settings.model_copy(update={"public_url": origin}))
    app.state.redis = await broker.connect(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=origin) as http:
        answer = (
            await http.post(
                "/graphql",
                json={
                    "query": "mutation($e: String!, $p: String!) { login(email: $e, password: $p)"
                    " { ... on LoginSuccess { token expiresAt } } }",
                    "variables": {"e": email, "p": PASSWORD},
                },
            )
        ).json()
    session = json.dumps(answer["data"]["login"])
    figures = []
    try:
        async with async_playwright() as playwright:
            options = launch_options(settings, playwright.chromium.executable_path)
            options["args"] = [a for a in options["args"] if not a.startswith("--host-resolver-rules")] + [
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
            ]
            browser = await playwright.chromium.launch(**options, headless=True)
            for round_ in range(args.rounds + 1):
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                await context.add_init_script(f"sessionStorage.setItem('invoicing.console.session', {json.dumps(session)});")
                page = await context.new_page()
                await page.goto(origin + "/console")
                await page.locator('#month[data-ready="2026-01"]').wait_for(timeout=120_000)
                timings = await page.evaluate("window.consoleTimings")
                assert timings["invoices"] == INVOICES, timings
                shown = await page.locator("#by-status-rows").inner_text()
                await context.close()
                if round_ == 0:
                    print("the month view reads:", " | ".join(shown.split("\n")))
                    continue  # the server's first answers warm its caches: not counted
                figures.append(timings["monthReady"])
                print(f"round {round_}: month view interactive after {timings['monthReady']:.0f} ms")
            await browser.close()
    finally:
        server.should_exit = True
        await serving
        await app.state.events.close()
        await app.state.redis.aclose()
        await db.close()
    print(f"median {statistics.median(figures):.0f} ms, best {min(figures):.0f} ms, worst {max(figures):.0f} ms over {len(figures)} rounds")
    print(f"interactive_ms {statistics.median(figures):.0f}")


if __name__ == "__main__":
    asyncio.run(main())
