"""Month close to PDFs: N accounts closed, generated and printed through the real pipeline,
against the floor of Chromium printing the same HTML, the month driven as an MSP drives it.

Seeds one organization with `--accounts` managed accounts (each with a billing profile and
`--lines` services of cost records for September 2024, an organization-wide discount and a
VAT charge). Then the MSP works through a web process of its own (`uvicorn`, another
operating-system process) over GraphQL, as bench/msp.py describes: it logs in and keeps an
invoice subscription open, connects Xero (the Xero test server), creates a cost source whose
bucket (moto's S3 server) holds an AWS Data Exports delivery of the month and syncs it, uploads
another delivery with `importCosts`, and waits until the worker imported both. It closes the
month (`closeBillingPeriod`), then the real path is timed: `generateInvoices` for every invoice
(500 a call, as the console sends them), and an arq worker running the product's job functions
with a warm `PdfRenderer` printing up to `--batch` invoices per Chromium print job (the
worker's PDF_BATCH_SIZE), each job generating `--generation-batch` invoices together
(dispatch.GENERATION_BATCH), GENERATIONS_AT_ONCE jobs at a time, until every invoice is
AWAITING_APPROVAL. The worker runs in this
process (one Python process beside one Chromium, as `invoicing worker` runs). Then a sample of
the stored PDFs is read back: each must match its recorded SHA-256 and hold its own invoice
alone. It prints the month's wall time: close + generate + print. The MSP then lists the
invoices with their checks, approves them all (acknowledging the warnings found), waits until
each was e-mailed to the SMTP server (aiosmtpd on loopback), and pushes them to Xero.

Throughout, `/metrics` of the web process and of the worker (on its WORKER_METRICS_PORT, as
`invoicing worker` serves it) is scraped every half second and read with prometheus-client's
parser: `metrics: N scrapes, K of K families non-zero` (a family never seen non-zero is named).

Then, once the database has been vacuumed and checkpointed, the same renderer class prints the
HTML of one of those invoices as many times (500 at most), with the same pool size, one invoice per print
job and `--batch` per print job: the browser alone; and the month's own invoices (500 at most,
each its own HTML) with `--batch` per print job. Each phase also prints the CPU it cost per
invoice: this process (the worker), the web process, Chromium with Playwright's driver, and
the PostgreSQL and Redis servers (all their processes on the host: on a shared server, other
load shows there).

`--compare` first runs the whole month with the worker's settings as they were (one invoice
per print job and per generation job, arq's 10 jobs at once and 0.5 s poll), then as now, and
prints their ratio from the same run. The last lines are
`month_close_seconds <s>`, `pipeline/raw (own invoices) <ratio>` and `pipeline/raw <ratio>`
(pipeline against the renderer alone printing one invoice's HTML, with the same batch size).

The database named by --database-url is DROPPED and recreated, and the Redis database of
--redis-url (db 4 by default) is flushed: never point them at real data.

    .venv/bin/python bench/month_close.py [--quick | --accounts 500] [--batch 8] [--compare]
        [--lines 40] [--profile out.html]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/invoicing_bench_month"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/4"
MONTH = date(2024, 9, 1)


class CpuMeter:
    """CPU seconds spent while it runs, by this process, the web process, what this process
    started for its renderer (Playwright's driver and Chromium) and the PostgreSQL and Redis
    servers (every process of theirs on the host). The S3 emulator is counted in none."""

    GROUPS = ("python", "web", "chromium", "postgresql", "redis")

    def __init__(self, web: int | None = None, ignored: tuple[int, ...] = ()) -> None:
        self.seen: dict[int, tuple[str, float]] = {}
        self.web, self.ignored = web, ignored

    def _sample(self) -> dict[int, tuple[str, float]]:
        me = psutil.Process()
        groups = {me.pid: "python"}
        for child in me.children():
            if child.pid in self.ignored:
                continue
            group = "web" if child.pid == self.web else "chromium"
            with contextlib.suppress(psutil.Error):
                groups |= {process.pid: group for process in (child, *child.children(recursive=True))}
        for process in psutil.process_iter(["name"]):
            name = process.info["name"] or ""
            if name.startswith(("postgres", "postmaster")):
                groups.setdefault(process.pid, "postgresql")
            elif name.startswith("redis-server"):
                groups.setdefault(process.pid, "redis")
        sample = {}
        for pid, group in groups.items():
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            sample[pid] = (group, times.user + times.system)
        return sample

    def __enter__(self) -> CpuMeter:
        self.start = self._sample()
        return self

    def __exit__(self, *exc) -> None:
        end = self._sample()
        self.seconds = dict.fromkeys(self.GROUPS, 0.0)
        for pid, (group, used) in end.items():
            # A process that started meanwhile counts from zero; one that ended is lost (rare:
            # the browser, its pages and the database connections live through the run).
            self.seconds[group] += used - self.start.get(pid, (group, 0.0))[1]


async def recreate_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql", path="/postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def seed(accounts: int, lines: int):
    """The organization, its accounts and their month of costs (one cost record per service)."""
    from decimal import Decimal

    from tortoise import connections

    from bench import msp
    from models import BillingProfile, BillingProfileCharge, BillingRule, CostImport, ManagedAccount, Organization
    from models.auth import create_user
    from models.base import Scope
    from models.managed_accounts import SubAccount

    org = await Organization.create(name="Bench MSP", invoice_prefix="BENCH")
    profile = await BillingProfile.create(
        organization=org, nickname="Default", company_name="Bench Cloud Services Ltd",
        address_line1="1 Bench Street", city="London", postal_code="EC1A 1BB", country="United Kingdom",
        business_fields=[{"key": "VAT ID", "value": "GB 123 4567 89"}],
        banking_fields=[{"key": "IBAN", "value": "GB29 NWBK 6016 1331 9268 19"}],
    )
    await BillingProfileCharge.create(billing_profile=profile, position=1, name="VAT", kind="PERCENT", value=Decimal(20))
    await BillingRule.create(
        organization=org, name="Committed use", kind="DISCOUNT", calculation="PERCENT", value=Decimal(5), provider_name="AWS"
    )
    await ManagedAccount.bulk_create([
        ManagedAccount(
            organization=org, name=f"Customer {n:04d}", billing_profile=profile,
            official_company_name=f"Customer {n:04d} Holdings Ltd", billing_emails=[f"ap@customer{n}.example"],
            po_number=f"PO-{n:04d}", address_line1=f"{n} Market Street", city="Manchester", country="United Kingdom",
        )
        for n in range(accounts)
    ])
    # The accounts that claim the delivered rows' sub-accounts (the others' costs stay unclaimed).
    claiming = await ManagedAccount.filter(organization=org).order_by("name").limit(msp.SUB_ACCOUNTS)
    await SubAccount.bulk_create([
        SubAccount(organization=org, managed_account=account, sub_account_id=msp.sub_account_of(n), provider_name="AWS")
        for n, account in enumerate(claiming)
    ])
    await create_user(org.id, msp.OWNER, Scope.OWNER, password=msp.PASSWORD)
    imported = await CostImport.create(
        organization=org, file_sha256="0" * 64, row_count=0, inserted_count=0, duplicate_count=0
    )
    await connections.get("default").execute_query(
        "INSERT INTO cost_records (organization_id, managed_account_id, cost_import_id, fingerprint,"
        " billing_month, billing_period_start, billing_period_end, provider_name, sub_account_id,"
        " billed_cost, billing_currency, consumed_quantity, consumed_unit, service_name,"
        " service_category, charge_category, extra)"
        " SELECT a.organization_id, a.id, $2, md5(a.id::text || ':' || s), $3, '2024-09-01T00:00:00Z',"
        " '2024-10-01T00:00:00Z', CASE WHEN s % 3 = 0 THEN 'Microsoft' ELSE 'AWS' END, '111122223333',"
        " round((1 + (s * 37 + hashtext(a.id::text)) % 5000 / 7.0)::numeric, 6), 'USD', 1 + s % 17, 'Hrs',"
        " 'Service ' || lpad(s::text, 3, '0'), 'Compute', 'Usage', '{}'"
        " FROM managed_accounts a CROSS JOIN generate_series(1, $4) AS s WHERE a.organization_id = $1",
        [str(org.id), str(imported.id), MONTH, lines],
    )
    return org


async def wait_until_generated(org, expected: int, timeout: float) -> float:
    """Wait until every invoice is AWAITING_APPROVAL; the time (time.time()) of the last
    transition, which the poll interval does not blur."""
    from tortoise.functions import Count, Max

    from models import Invoice

    deadline = time.perf_counter() + timeout
    counts = {}
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.25)
        rows = await Invoice.filter(organization_id=org.id).group_by("status").annotate(
            n=Count("id"), last=Max("updated_at")
        ).values("status", "n", "last")
        counts = {row["status"]: row["n"] for row in rows}
        if counts.get("ERROR"):
            failed = await Invoice.filter(organization_id=org.id, status="ERROR").first()
            raise SystemExit(f"{counts['ERROR']} invoices in ERROR, e.g.: {failed.error_message}")
        if counts.get("AWAITING_APPROVAL", 0) == expected:
            return rows[0]["last"].timestamp()
    raise SystemExit(f"not all generated after {timeout} s: {counts}")


def report_cpu(meter: CpuMeter, count: int, seconds: float) -> str:
    per_invoice = ", ".join(f"{group} {1000 * used / count:.1f}" for group, used in meter.seconds.items())
    busy = sum(meter.seconds.values()) / seconds
    return f"CPU ms per invoice: {per_invoice} ({busy:.2f} of {psutil.cpu_count()} cores busy)"


async def pipeline(org, msp, redis, *, batch: int, generation_batch: int, profile: str | None):
    """Invoices per second from the first `generateInvoices` to the last AWAITING_APPROVAL."""
    from bench.msp import GENERATE

    ids = [invoice["id"] for invoice in await msp.listed("READY_TO_INVOICE")]
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled", interval=0.0005)
        profiler.start()
    try:
        with CpuMeter(web=msp.web.pid, ignored=(msp.outside.moto.pid,)) as meter:
            started = time.time()
            # As the console does: the invoices 500 a call; each call's jobs are queued once its
            # transitions commit.
            await msp.bulk(GENERATE, ids)
            queued = time.time() - started
            seconds = await wait_until_generated(org, len(ids), timeout=60 + 2 * len(ids)) - started
    finally:
        if profiler is not None:
            profiler.stop()
            await asyncio.to_thread(Path(profile).write_text, profiler.output_html())
            print(profiler.output_text(unicode=False, color=False, show_all=False, timeline=False))
    print(f"generateInvoices of {len(ids)}: {queued:.2f} s (the worker already at work)")
    print(report_cpu(meter, len(ids), seconds))
    return len(ids) / seconds, seconds


@contextlib.asynccontextmanager
async def worker(settings, redis, *, pool: int, batch: int, max_jobs: int, poll_delay: float, generation_batch: int,
                 at_once: int):
    """An arq worker running the product's job functions in this process, with a warm renderer,
    and its `/metrics` served as `invoicing worker` serves it (WORKER_METRICS_PORT)."""
    from arq.worker import Worker

    from infra import broker, metrics
    from jobs.imports import IMPORTS_AT_ONCE
    from jobs.pdf import PdfRenderer
    from jobs.rendering import render_invoice_html, sample_view
    from jobs.worker import WorkerSettings

    renderer = PdfRenderer(settings, pool_size=pool, batch_size=batch)
    await renderer.start()
    warm = render_invoice_html(sample_view())
    await asyncio.gather(*(renderer.render(warm) for _ in range(2 * pool)))
    port = free_port()
    served = metrics.MetricsServer(settings.model_copy(update={"worker_metrics_port": port}), redis)
    await served.start()
    arq_worker = Worker(
        functions=WorkerSettings.functions, redis_pool=redis, queue_name=broker.QUEUE_NAME,
        handle_signals=False, max_jobs=max_jobs, poll_delay=poll_delay,
        # Before batching, every job generated its invoice at once.
        ctx={"settings": settings, "pdf": renderer, "imports": asyncio.Semaphore(IMPORTS_AT_ONCE),
             "generations": asyncio.Semaphore(at_once if generation_batch > 1 else max_jobs)},
    )
    task = asyncio.create_task(arq_worker.async_run())
    try:
        yield arq_worker, renderer, f"http://127.0.0.1:{port}/metrics"
        # The last jobs announce their invoices after the commit the waits saw: let them end
        # before the worker stops (it would cancel them).
        while any(not job.done() for job in arq_worker.tasks.values()):  # noqa: ASYNC110 (arq signals nothing)
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await arq_worker.close()
        await renderer.close()
        await served.stop()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def raw(settings, htmls: list[str], pool: int, batch: int, ignored: tuple[int, ...] = ()) -> float:
    """Invoices per second of the renderer alone: warm renders of `htmls`, `pool` print jobs
    at a time, of `batch` invoices each (1: as bench/render_pdf.py measures)."""
    from jobs.pdf import PdfRenderer

    async with PdfRenderer(settings, pool_size=pool, batch_size=batch) as renderer:
        await asyncio.gather(*(renderer.render(htmls[0]) for _ in range(2 * pool)))
        with CpuMeter(ignored=ignored) as meter:
            started = time.perf_counter()
            await asyncio.gather(*(renderer.render(html) for html in htmls))
            seconds = time.perf_counter() - started
    print(report_cpu(meter, len(htmls), seconds))
    return len(htmls) / seconds


async def first_revision(org, expected: int):
    """One invoice's revision, after checking that the numbers came out gapless."""
    from models import Invoice, InvoiceRevision

    rows = await Invoice.filter(organization_id=org.id).values_list("number", "current_revision_id")
    numbers = sorted(int(number.rsplit("-", 1)[1]) for number, _ in rows)
    if numbers != list(range(1, expected + 1)):
        raise SystemExit("the invoice numbers are not 1..N")
    return await InvoiceRevision.get(id=rows[0][1])


async def month(args, settings, outside, batch: int, max_jobs: int, poll_delay: float, generation_batch: int):
    """Seed the month, let the MSP drive it, close and generate it with the renderer printing
    `batch` invoices per print job, then approve, e-mail and push it: (invoices, seconds to
    close, seconds to generate, invoices/s, one revision's HTML, its lines, own HTMLs)."""
    from tortoise import Tortoise, connections

    from bench.msp import Msp, Scrapes
    from infra import broker, db
    from jobs.rendering import render_invoice_html
    from models import InvoiceRevision

    await recreate_database(args.database_url)
    await db.migrate(settings)
    await Tortoise.close_connections()
    await db.init(settings)
    redis = await broker.connect(settings)
    await redis.flushdb()
    msp = Msp(settings, outside.ports, outside)
    try:
        started = time.perf_counter()
        org = await seed(args.accounts, args.lines)
        print(f"seeded {args.accounts} accounts x {args.lines} services in {time.perf_counter() - started:.2f} s")
        async with worker(settings, redis, pool=args.pool, batch=batch, max_jobs=max_jobs, poll_delay=poll_delay,
                          generation_batch=generation_batch, at_once=args.generations_at_once) as (arq_worker, renderer, url):
            await msp.start()
            scrapes = Scrapes({"web": f"{msp.web_url}/metrics", "worker": url})
            await scrapes.start()
            try:
                await msp.connect_xero()
                rows, arriving = await msp.costs_arrive()
                print(f"costs arrived: {rows} rows synced from the bucket and uploaded, imported in {arriving:.1f} s")
                started = time.perf_counter()
                created = await msp.close(f"{MONTH:%Y-%m}")
                closing = time.perf_counter() - started
                print(f"closed {MONTH:%Y-%m}: {created} invoices ready in {closing:.2f} s")
                per_second, seconds = await pipeline(org, msp, redis, batch=batch, generation_batch=generation_batch,
                                                     profile=args.profile)
                print(f"worker: {arq_worker.jobs_complete} jobs complete, {arq_worker.jobs_retried} retried, "
                      f"{arq_worker.jobs_failed} failed; {renderer.batches} print jobs of several invoices")
                print(f"pipeline: {created} invoices in {seconds:.2f} s: {per_second:.2f} invoices/s "
                      f"(pool {args.pool}, batch {batch}, max_jobs {max_jobs}, poll_delay {poll_delay} s, "
                      f"generated {generation_batch} at a time)")
                revision = await first_revision(org, created)
                await check_pdfs(settings, org)
                await msp.approve_send_and_push(created)
            finally:
                await scrapes.stop()
                await msp.stop()
        scrapes.report()
        html = render_invoice_html(revision.snapshot)
        own = [render_invoice_html(snapshot) for snapshot in await InvoiceRevision.filter(
            invoice__organization_id=org.id).order_by("invoice__number").limit(500).values_list("snapshot", flat=True)]
        # Let the database settle, so that autovacuum and a checkpoint after all those writes
        # do not land on the browser's share of the machine.
        for statement in ("VACUUM ANALYZE", "CHECKPOINT"):
            await connections.get("default").execute_script(statement)
    finally:
        await redis.flushdb()
        await redis.aclose()
        await db.close()
    return created, closing, seconds, per_second, html, len(revision.snapshot["lines"]), own


async def check_pdfs(settings, org) -> None:
    """Every revision's PDF is its own: stored, of the recorded size and SHA-256, and naming
    its own invoice number (read back from the file)."""
    import hashlib

    from pypdf import PdfReader

    from infra import storage
    from models import Invoice

    rows = await Invoice.filter(organization_id=org.id).values_list("number", "current_revision__pdf_path",
                                                                     "current_revision__pdf_sha256")
    for number, path, sha256 in rows[:: max(1, len(rows) // 25)]:
        data = storage.load(settings, path)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise SystemExit(f"{number}: the stored PDF is not the one recorded")
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
        # The title's letters come out spaced; the footer names the invoice once more.
        if text.replace(" ", "").count("INVOICE") != 1 or text.count("Invoice number") != 1 or number not in text:
            raise SystemExit(f"{number}: the PDF is not that invoice's alone")


async def main(args) -> None:
    from bench.msp import Outside, Ports

    ports = Ports()
    os.environ.update(
        DATABASE_URL=args.database_url, REDIS_URL=args.redis_url, DATA_DIR=args.data_dir, ENVIRONMENT="production",
        **ports.environment(),
    )
    from infra.settings import get_settings

    settings = get_settings()
    async with Outside(ports) as outside:
        await months(args, settings, outside)


async def months(args, settings, outside) -> None:
    batches = (1, args.batch) if args.compare and args.batch > 1 else (args.batch,)
    runs = {}
    for batch in batches:
        # Compared with the worker as it was: one invoice per print job, arq's 10 jobs and 0.5 s
        # poll, each invoice generated alone.
        before = args.compare and batch == 1
        runs[batch] = await month(
            args, settings, outside, batch, 10 if before else args.max_jobs, 0.5 if before else args.poll_delay,
            1 if before else args.generation_batch,
        )
        created, closing, seconds, per_second, html, lines, own = runs[batch]
        print(f"month close, batch {batch}: close {closing:.1f} s + generate and print {seconds:.1f} s = "
              f"{closing + seconds:.1f} s for {created} accounts", flush=True)
    created, closing, seconds, per_second, html, lines, own = runs[args.batch]
    raws = {}
    # A rate: 500 renders tell it (10,000 would add a quarter of an hour to a large month's run).
    renders = min(created, 500)
    for batch in sorted(set(batches) | {1}):
        raws[batch] = await raw(settings, [html] * renders, args.pool, batch, ignored=(outside.moto.pid,))
        print(f"raw Chromium: the same HTML ({lines} usage lines, {len(html):,} bytes) {renders} times, "
              f"pool {args.pool}, batch {batch}: {raws[batch]:.2f} invoices/s")
    owns = await raw(settings, own[:renders], args.pool, args.batch, ignored=(outside.moto.pid,))
    print(f"raw Chromium: the month's own {len(own[:renders])} invoices, pool {args.pool}, batch {args.batch}: {owns:.2f} invoices/s")
    if args.compare and args.batch > 1:
        before = runs[1]
        print(f"now / before (same run): pipeline {per_second / before[3]:.2f}x, "
              f"raw {raws[args.batch] / raws[1]:.2f}x; pipeline with batches / raw one per print job "
              f"{per_second / raws[1]:.2f}")
    print(f"month_close_seconds {closing + seconds:.1f} (close + generate + print, {created} accounts)")
    print(f"pipeline/raw (own invoices) {per_second / owns:.2f}")
    print(f"pipeline/raw {per_second / raws[args.batch]:.2f}")


if __name__ == "__main__":
    from jobs.generate import GENERATIONS_AT_ONCE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=500, help="managed accounts, i.e. invoices (10000: a large MSP)")
    parser.add_argument("--quick", action="store_true", help="100 accounts: an everyday run of a minute or two")
    parser.add_argument("--batch", type=int, default=8, help="invoices per print job (PDF_BATCH_SIZE; 1: one each)")
    parser.add_argument("--compare", action="store_true",
                        help="first run the month as before: one invoice per print job and per generation, 10 jobs, 0.5 s poll")
    parser.add_argument("--lines", type=int, default=40, help="services (cost lines) per account")
    parser.add_argument("--pool", type=int, default=2, help="Chromium pages (renders in flight); PdfRenderer's default")
    parser.add_argument("--max-jobs", type=int, default=12, help="jobs the worker runs at once (WorkerSettings')")
    parser.add_argument("--generation-batch", type=int, default=16,
                        help="invoices per generation job, generated together (dispatch.GENERATION_BATCH)")
    parser.add_argument("--generations-at-once", type=int, default=GENERATIONS_AT_ONCE,
                        help="generation jobs a worker runs at a time (GENERATIONS_AT_ONCE)")
    parser.add_argument("--poll-delay", type=float, default=0.05, help="seconds between queue polls (WorkerSettings')")
    parser.add_argument("--profile", help="profile the pipeline with pyinstrument; write the HTML report here")
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="database to DROP, recreate and fill (default: $BENCH_DATABASE_URL or %(default)s)",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
                        help="Redis database to FLUSH and use (default: $BENCH_REDIS_URL or %(default)s)")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.accounts = 100
    with tempfile.TemporaryDirectory(prefix="invoicing-bench-month-") as data_dir:
        arguments.data_dir = data_dir
        asyncio.run(main(arguments))
