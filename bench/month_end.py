"""Month end over the API: a month of N customers' costs uploaded, closed, generated, checked,
reconciled, approved and e-mailed with Factur-X, as an MSP's script drives it.

The month is `--rows` FOCUS rows of `--customers` customers (two sub-accounts each, and one
sub-account in fifty that nobody claims), eight services, hourly, written as Parquet parts of
an AWS Data Export with its manifest (`data/BILLING_PERIOD=2024-09/<export>-0000N.snappy.parquet`
and `metadata/BILLING_PERIOD=2024-09/<export>-Manifest.json`), vectorised with pyarrow, two
processes at a time, and kept under `var/bench/` by its parameters (generated once).

The product runs as it does in production, as processes of its own: the web app under uvicorn
(`invoicing.app:create_app`) and `--workers` arq workers (`invoicing worker`), beside
PostgreSQL, Redis, Chromium (the workers' PDF renderer) and an SMTP server started here
(aiosmtpd, on loopback). The organization (a billing profile and accounts with what EN 16931
asks, e-invoicing on, approval e-mails attaching Factur-X) and its owner's API token are
seeded directly; then every step goes over HTTP with that token:

  upload        `importCosts(file:, files:)`: the manifest and the parts, one multipart request
  import        until the queued import is DONE (`node(id:)` polled)
  close         `closeBillingPeriod(month:)`
  generate      `generateInvoices(filter:)`, until every invoice awaits approval
  checks        every invoice's `checks`, a page of 100 at a time
  reconcile     `reconciliation(period:)`, its parts adding up to the data's own total
  approve       `approveInvoices(filter:, acknowledge:)` with the warnings the checks found
  send          until every invoice is SENT and the SMTP server holds one e-mail each, a
                sample of which carry the Factur-X PDF (its `factur-x.xml` inside)

Each phase prints its seconds; then `reconciliation_ms` (median of five more calls over
HTTP, at this many rows) and the headline `month_end_seconds` (the phases' sum).

The database named by --database-url is DROPPED, recreated (a copy of `<name>_template_<hash>`,
migrated once and kept, named by the migrations) and dropped again at the end; the Redis
database of --redis-url (db 5 by default, claimed as the test runs claim theirs) is flushed:
never point them at real data.

    .venv/bin/python bench/month_end.py --customers 1000 --rows 10000000
    .venv/bin/python bench/month_end.py --customers 100 --rows 1000000   # a profile-sized month
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/invoicing_bench_month_end"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"
MONTH = "2024-09"
EXPORT = "focus-month-end"
BUCKET = "s3://bench-cur/exports"
PARTS = 8
CHUNK_ROWS = 250_000
HOURS = 720
FORMAT_VERSION = 1  # bump when the generated data changes: the cache is keyed by it
SERVICES = [
    ("Amazon Elastic Compute Cloud", "Compute", "Hrs", "m5.large"),
    ("Amazon Simple Storage Service", "Storage", "GB-Mo", "StandardStorage"),
    ("Amazon Relational Database Service", "Databases", "Hrs", "db.r5.large"),
    ("AWS Lambda", "Compute", "Requests", "Request"),
    ("Amazon CloudFront", "Networking", "GB", "DataTransfer-Out"),
    ("Amazon DynamoDB", "Databases", "ReadRequestUnits", "ReadCapacityUnit-Hrs"),
    ("Amazon Elastic Block Store", "Storage", "GB-Mo", "gp3"),
    ("Amazon CloudWatch", "Management and Governance", "Metrics", "CW:MetricMonitorUsage"),
]


# ------------------------------------------------------------------ the month's data


def sub_accounts(customers: int) -> int:
    """Two per customer, and one in fifty more that no customer claims."""
    return 2 * customers + max(1, customers // 50)


def sub_account_id(n: int) -> str:
    return str(200000000000 + n * 13)


def _chunk(start: int, rows: int, subs: int):
    """Rows start..start+rows of the month as an Arrow table of FOCUS columns, and their
    BilledCost in thousandths (summed to check the reconciliation)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def div(values, divisor: int):
        return pc.divide(values, divisor)  # integers: truncated, as // for these non-negative ones

    def mod(values, divisor: int):
        return pc.subtract(values, pc.multiply(div(values, divisor), divisor))

    index = pa.array(range(start, start + rows), pa.int64())
    sub = mod(index, subs)
    service = mod(div(index, subs), len(SERVICES))
    hour = mod(div(index, subs * len(SERVICES)), HOURS)
    resource = div(index, subs * len(SERVICES) * HOURS)
    september = 1725148800  # 2024-09-01T00:00:00Z
    cents = mod(pc.multiply(index, 7919), 1_000_000)  # thousandths of a dollar: up to 999.999

    def text(values) -> pa.Array:
        return pa.array(values, pa.string())

    def pick(options, at):
        return pc.take(text(options), at)

    def numbers(values):
        return pc.cast(values, pa.string())

    def thousandths(values):
        return pc.binary_join_element_wise(numbers(div(values, 1000)), pc.utf8_lpad(numbers(mod(values, 1000)), 3, "0"), ".")

    seconds = pc.add(pc.multiply(hour, 3600), september)
    stamp = pc.strftime(seconds.cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%SZ")
    end = pc.strftime(pc.add(seconds, 3600).cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%SZ")
    sub_ids = numbers(pc.add(pc.multiply(sub, 13), 200000000000))
    quantity = numbers(pc.add(mod(index, 97), 1))
    billed = thousandths(cents)
    payer = mod(sub, 4)

    def constant(value: str):
        return pa.repeat(pa.scalar(value), rows)

    columns = {
        "BilledCost": billed,
        "EffectiveCost": billed,
        "ListCost": thousandths(pc.multiply(cents, 2)),
        "BillingAccountId": numbers(pc.add(payer, 900000000000)),
        "BillingAccountName": pc.binary_join_element_wise("Payer ", numbers(payer), ""),
        "BillingCurrency": constant("USD"),
        "BillingPeriodStart": constant("2024-09-01T00:00:00Z"),
        "BillingPeriodEnd": constant("2024-10-01T00:00:00Z"),
        "ChargeCategory": constant("Usage"),
        "ChargeDescription": pick([f"{s[3]} usage" for s in SERVICES], service),
        "ChargeFrequency": constant("Usage-Based"),
        "ChargePeriodStart": stamp,
        "ChargePeriodEnd": end,
        "ConsumedQuantity": quantity,
        "ConsumedUnit": pick([s[2] for s in SERVICES], service),
        "PricingQuantity": quantity,
        "PricingUnit": pick([s[2] for s in SERVICES], service),
        "ProviderName": constant("AWS"),
        "PublisherName": constant("AWS"),
        "InvoiceIssuerName": constant("AWS"),
        "RegionId": pick(["us-east-1", "eu-west-1", "eu-central-1"], mod(sub, 3)),
        "ResourceId": pc.binary_join_element_wise(
            "arn:aws:ec2:us-east-1:", sub_ids, ":instance/i-", numbers(pc.add(pc.multiply(service, 1000), resource)), ""
        ),
        "ServiceName": pick([s[0] for s in SERVICES], service),
        "ServiceCategory": pick([s[1] for s in SERVICES], service),
        "SkuId": pick([s[3] for s in SERVICES], service),
        "SubAccountId": sub_ids,
        "SubAccountName": pc.binary_join_element_wise("Workload ", sub_ids, ""),
        "Tags": pick(['{"env":"prod"}', '{"env":"dev","team":"data"}', ""], mod(sub, 3)),
        "x_UsageType": pick(["BoxUsage:m5.large", "TimedStorage-ByteHrs", "DataTransfer-Out-Bytes"], mod(index, 3)),
    }
    return pa.table(columns), pc.sum(cents).as_py()


def write_part(path: str, first: int, rows: int, subs: int) -> int:
    """Rows first..first+rows of the month as one Parquet part (in a child process), a chunk
    at a time; their BilledCost summed in thousandths."""
    import pyarrow.parquet as pq

    writer, total = None, 0
    for start in range(first, first + rows, CHUNK_ROWS):
        table, thousandths = _chunk(start, min(CHUNK_ROWS, first + rows - start), subs)
        total += thousandths
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="snappy")
        writer.write_table(table, row_group_size=CHUNK_ROWS)
    assert writer is not None
    writer.close()
    return total


def month_data(customers: int, rows: int, cache: Path) -> tuple[Path, dict]:
    """The export's folder for these parameters (generated unless cached) and what it holds."""
    folder = cache / f"month-end-v{FORMAT_VERSION}-{customers}c-{rows}r"
    about = folder / "about.json"
    if about.exists():
        return folder, json.loads(about.read_text())
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=cache))
    data = scratch / "data" / f"BILLING_PERIOD={MONTH}"
    meta = scratch / "metadata" / f"BILLING_PERIOD={MONTH}"
    data.mkdir(parents=True)
    meta.mkdir(parents=True)
    per_part = -(-rows // PARTS)
    names, jobs = [], []
    with ProcessPoolExecutor(max_workers=2) as pool:
        for number, first in enumerate(range(0, rows, per_part), start=1):
            name = f"{EXPORT}-{number:05d}.snappy.parquet"
            names.append(name)
            jobs.append(pool.submit(write_part, str(data / name), first, min(per_part, rows - first), sub_accounts(customers)))
        total = sum(job.result() for job in jobs)
    (meta / f"{EXPORT}-Manifest.json").write_text(
        json.dumps(
            {
                "executionId": "5f0c1d2e-0000-4000-8000-000000000031",
                "exportArn": "arn:aws:bcm-data-exports:us-east-1:123456789012:export/focus-month-end",
                "billingPeriod": {"start": "2024-09-01T00:00:00.000Z", "end": "2024-10-01T00:00:00.000Z"},
                "dataFiles": [f"{BUCKET}/{EXPORT}/data/BILLING_PERIOD={MONTH}/{name}" for name in names],
            }
        )
    )
    facts = {
        "customers": customers,
        "rows": rows,
        "parts": len(names),
        "billed_thousandths": total,
        "bytes": sum(path.stat().st_size for path in data.iterdir()),
    }
    (scratch / "about.json").write_text(json.dumps(facts))
    scratch.rename(folder)
    print(
        f"generated {rows} rows in {len(names)} Parquet parts ({facts['bytes'] / 1e6:.0f} MB) "
        f"in {time.perf_counter() - started:.1f} s, kept in {folder}"
    )
    return folder, facts


def delivery_files(folder: Path) -> list[tuple[str, Path]]:
    """The manifest first, then the parts, each named with its folders under the export."""
    files = sorted((folder / "metadata").rglob("*-Manifest.json")) + sorted((folder / "data").rglob("*.parquet"))
    return [(str(path.relative_to(folder)), path) for path in files]


# ------------------------------------------------------------------ the product's processes


def _admin(url: str):
    import asyncpg

    parts = urlsplit(url)
    return asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql", path="/postgres")))


def template_name(url: str) -> str:
    """The migrated empty database the bench's is copied from, named by the migrations' text."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "migrations").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return f"{urlsplit(url).path.lstrip('/')}_template_{digest.hexdigest()[:10]}"


async def fresh_database(url: str, settings) -> None:
    """Drop and recreate the bench's database, migrated: a copy of a template migrated once
    (migrating from nothing takes minutes on a busy machine), kept for the next run."""
    from tortoise import Tortoise

    from infra import db

    name, template = urlsplit(url).path.lstrip("/"), template_name(url)
    admin = await _admin(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template):
            for stale in await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", f"{name}_template_%"):
                await admin.execute(f'DROP DATABASE "{stale["datname"]}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
            await db.migrate(settings)
            await Tortoise.close_connections()
            await admin.execute(f'CREATE DATABASE "{template}" TEMPLATE "{name}"')
        else:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()


async def drop_database(url: str) -> None:
    admin = await _admin(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await admin.close()


async def seed(customers: int) -> str:
    """The MSP: a billing profile and customers with what EN 16931 asks, each claiming two
    sub-accounts, e-invoicing on with Factur-X e-mailed; its owner's API token."""
    from datetime import timedelta
    from decimal import Decimal

    from models import BillingProfile, BillingProfileCharge, ManagedAccount, Organization
    from models.auth import TokenKind, create_user, issue_token
    from models.base import Scope
    from models.managed_accounts import SubAccount
    from models.organizations import EmailAttachment

    org = await Organization.create(name="Bench MSP", invoice_prefix="ME", einvoicing=True, email_attachment=EmailAttachment.FACTURX)
    profile = await BillingProfile.create(
        organization=org,
        nickname="Default",
        company_name="Northwind SAS",
        address_line1="1 rue de la Paix",
        city="Paris",
        postal_code="75002",
        country="France",
        country_code="FR",
        vat_id="FR40303265045",
        legal_id="303265045",
        endpoint_scheme="0009",
        endpoint_id="30326504500018",
        iban="FR7630006000011234567890189",
        bic="AGRIFRPP",
    )
    await BillingProfileCharge.create(billing_profile=profile, position=1, name="VAT", kind="PERCENT", value=Decimal(20))
    await ManagedAccount.bulk_create(
        [
            ManagedAccount(
                organization=org,
                name=f"Customer {n:04d}",
                billing_profile=profile,
                official_company_name=f"Customer {n:04d} GmbH",
                billing_emails=[f"ap@customer{n:04d}.example"],
                po_number=f"PO-{n:04d}",
                address_line1=f"Hauptstrasse {n + 1}",
                city="Berlin",
                country="Germany",
                country_code="DE",
                vat_id="DE136695976",
                legal_id="HRB 12345",
                endpoint_scheme="9930",
                endpoint_id="DE136695976",
            )
            for n in range(customers)
        ],
        batch_size=1000,
    )
    accounts = await ManagedAccount.filter(organization=org).order_by("name").values_list("id", flat=True)
    await SubAccount.bulk_create(
        [
            SubAccount(organization=org, managed_account_id=account, sub_account_id=sub_account_id(2 * n + k))
            for n, account in enumerate(accounts)
            for k in range(2)
        ],
        batch_size=2000,
    )
    owner = await create_user(org.id, "owner@bench.example", Scope.OWNER)
    raw, _ = await issue_token(owner, TokenKind.API, timedelta(days=1))
    return raw


def claim_redis(url: str) -> None:
    """Hold the Redis database as the test runs hold theirs (a key in database 0 naming this
    process), so that a test run never picks the one this bench empties, nor the other way round."""
    import psutil
    import redis

    parts = urlsplit(url)
    claims = redis.Redis.from_url(urlunsplit(parts._replace(path="/0")))
    key = f"invoicing:test-run:{int(parts.path.lstrip('/') or 0)}"
    try:
        holder = int(claims.get(key) or 0)
        if holder and holder != os.getpid() and psutil.pid_exists(holder):
            raise SystemExit(f"Redis database {url} is held by process {holder}: choose another with --redis-url")
        claims.set(key, str(os.getpid()))
    finally:
        claims.close()


def release_redis(url: str) -> None:
    import redis

    parts = urlsplit(url)
    claims = redis.Redis.from_url(urlunsplit(parts._replace(path="/0")))
    key = f"invoicing:test-run:{int(parts.path.lstrip('/') or 0)}"
    try:
        if claims.get(key) == str(os.getpid()).encode():
            claims.delete(key)
    finally:
        claims.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mailbox:
    """What the SMTP server accepted: (recipients, message bytes)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def start_processes(env: dict[str, str], port: int, workers: int, logs: Path) -> list[subprocess.Popen]:
    """The web app under uvicorn and the workers, each a process of its own."""
    out = (logs / "processes.log").open("ab")
    started = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "invoicing.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    ]
    started += [
        subprocess.Popen([sys.executable, "-m", "invoicing", "worker"], cwd=ROOT, env=env, stdout=out, stderr=out) for _ in range(workers)
    ]
    return started


class CpuMeter:
    """CPU seconds spent so far by the product's processes, by kind: the web process, the
    workers' own Python, their Chromium (every process under a worker: Playwright's driver and
    the browser's), PostgreSQL's backends serving the bench's database, and this process (the
    script and the SMTP server). A process that ends keeps its last reading. Load independent,
    unlike the phases' seconds."""

    KINDS = ("web", "worker", "chromium", "postgres", "bench")

    def __init__(self, started: list[subprocess.Popen], database: str) -> None:
        import psutil

        self.web = psutil.Process(started[0].pid)
        self.workers = [psutil.Process(process.pid) for process in started[1:]]
        self.database = database
        self.last: dict[int, tuple[str, float]] = {}

    @staticmethod
    def _seconds(process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    async def reading(self) -> dict[str, float]:
        import psutil

        seen: list[tuple[str, psutil.Process]] = [("web", self.web), ("bench", psutil.Process())]
        for worker in self.workers:
            seen.append(("worker", worker))
            seen += [("chromium", child) for child in worker.children(recursive=True)]
        admin = await _admin(self.database)
        try:
            name = urlsplit(self.database).path.lstrip("/")
            backends = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
        finally:
            await admin.close()
        for row in backends:
            with contextlib.suppress(psutil.Error):
                seen.append(("postgres", psutil.Process(row["pid"])))
        for kind, process in seen:
            with contextlib.suppress(psutil.Error):
                self.last[process.pid] = (kind, self._seconds(process))
        totals = dict.fromkeys(self.KINDS, 0.0)
        for kind, seconds in self.last.values():
            totals[kind] += seconds
        return totals


def stop_processes(started: list[subprocess.Popen]) -> None:
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


# ------------------------------------------------------------------ the month over the API

IMPORT = """mutation($file: Upload, $files: [Upload!]) { importCosts(file: $file, files: $files) {
  __typename ... on CostImportQueued { costImport { id state } } ... on UserError { code message } } }"""
IMPORT_STATE = """query($id: ID!) { node(id: $id) { ... on CostImport {
  state rows rowsDone inserted error { message file row column } } } }"""
CLOSE = """mutation($m: Month!) { closeBillingPeriod(month: $m) {
  __typename ... on BillingPeriodClosed { invoicesCreated } ... on UserError { code message } } }"""
BULK = """mutation(%s) { %s {
  __typename ... on InvoiceActionResults { results { id error { code message } } } ... on UserError { code message } } }"""
GENERATE = BULK % ("$f: InvoiceFilter!", "generateInvoices(filter: $f)")
APPROVE = BULK % ("$f: InvoiceFilter!, $ack: [InvoiceCheckCode!]", "approveInvoices(filter: $f, acknowledge: $ack)")
COUNT = "query($f: InvoiceFilter!) { invoices(filter: $f, first: 1) { totalCount edges { node { number errorMessage } } } }"
CHECKS = """query($f: InvoiceFilter!, $after: String) { invoices(filter: $f, first: 100, after: $after) {
  pageInfo { hasNextPage endCursor } edges { node { number checks { code severity } } } } }"""
RECONCILIATION = """query($m: Month!) { reconciliation(period: $m) {
  totals { currency imported invoiced unclaimed } lines { part currency cost rows } } }"""


class Api:
    def __init__(self, client, token: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    async def __call__(self, query: str, variables: dict | None = None) -> dict:
        response = await self.client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=self.headers)
        answer = response.json()
        if response.status_code != 200 or answer.get("errors"):
            raise SystemExit(f"GraphQL answered {response.status_code}: {json.dumps(answer)[:2000]}")
        return answer["data"]

    async def count(self, **where) -> tuple[int, list[dict]]:
        found = (await self(COUNT, {"f": {"periodFrom": MONTH, "periodTo": MONTH, **where}}))["invoices"]
        return found["totalCount"], [edge["node"] for edge in found["edges"]]


async def until(condition, timeout: float, what: str, every: float = 0.25) -> None:
    deadline = time.perf_counter() + timeout
    while not await condition():
        if time.perf_counter() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s: {what}")
        await asyncio.sleep(every)


async def upload(client, token: str, files: list[tuple[str, Path]]) -> str:
    """One multipart request holding the manifest (`file`) and the parts (`files`), streamed
    from disk; the queued import's id."""
    mapping = {"0": ["variables.file"], **{str(i): [f"variables.files.{i - 1}"] for i in range(1, len(files))}}
    operations = {"query": IMPORT, "variables": {"file": None, "files": [None] * (len(files) - 1)}}
    handles = [path.open("rb") for _, path in files]
    try:
        response = await client.post(
            "/graphql",
            headers={"Authorization": f"Bearer {token}"},
            data={"operations": json.dumps(operations), "map": json.dumps(mapping)},
            files=[
                (str(i), (name, handle, "application/octet-stream"))
                for i, ((name, _), handle) in enumerate(zip(files, handles, strict=True))
            ],
        )
    finally:
        for handle in handles:
            handle.close()
    answer = response.json()
    payload = (answer.get("data") or {}).get("importCosts") or {}
    if payload.get("__typename") != "CostImportQueued":
        raise SystemExit(f"importCosts answered {response.status_code}: {json.dumps(answer)[:2000]}")
    return payload["costImport"]["id"]


async def month_end(
    api: Api, client, token: str, folder: Path, facts: dict, mailbox: Mailbox, customers: int, meter: CpuMeter
) -> dict[str, float]:
    from decimal import Decimal

    phases: dict[str, float] = {}
    rows = facts["rows"]
    cpu = await meter.reading()

    async def done(phase: str, started: float, note) -> None:
        nonlocal cpu
        phases[phase] = time.perf_counter() - started
        now = await meter.reading()
        spent = " ".join(f"{kind} {1000 * (now[kind] - cpu[kind]) / customers:.1f}" for kind in CpuMeter.KINDS)
        cpu = now
        print(f"{phase:<10} {phases[phase]:8.2f} s  {note() if callable(note) else note}", flush=True)
        print(f"{'':<10} {'':8}    CPU ms per invoice: {spent}", flush=True)

    started = time.perf_counter()
    import_id = await upload(client, token, delivery_files(folder))
    await done("upload", started, f"{facts['parts']} parts and the manifest, {facts['bytes'] / 1e6:.0f} MB")

    started = time.perf_counter()
    state: dict = {}

    async def imported() -> bool:
        nonlocal state
        state = (await api(IMPORT_STATE, {"id": import_id}))["node"]
        if state["state"] == "FAILED":
            raise SystemExit(f"the import failed: {state['error']}")
        return state["state"] == "DONE"

    await until(imported, 60 + rows / 2000, "the import", every=0.5)
    if state["rows"] != rows:
        raise SystemExit(f"imported {state['rows']} rows, not {rows}")

    def rates() -> str:
        with_upload = rows / (phases["import"] + phases["upload"])
        return f"{rows} rows: {rows / phases['import']:,.0f} rows/s ({with_upload:,.0f} with the upload)"

    await done("import", started, rates)

    started = time.perf_counter()
    closed = (await api(CLOSE, {"m": MONTH}))["closeBillingPeriod"]
    if closed.get("invoicesCreated") != customers:
        raise SystemExit(f"closeBillingPeriod answered {closed}")
    await done("close", started, f"{customers} invoices ready")

    started = time.perf_counter()
    generated = await api(GENERATE, {"f": {"periodFrom": MONTH, "periodTo": MONTH, "status": ["READY_TO_INVOICE"]}})
    results = generated["generateInvoices"].get("results") or []
    if len(results) != customers or any(result["error"] for result in results):
        raise SystemExit(f"generateInvoices answered {json.dumps(generated)[:2000]}")

    async def generated_all() -> bool:
        failed, which = await api.count(status=["ERROR"])
        if failed:
            raise SystemExit(f"{failed} invoices in ERROR, e.g. {which}")
        return (await api.count(status=["AWAITING_APPROVAL"]))[0] == customers

    await until(generated_all, 120 + customers, "generation")
    await done("generate", started, lambda: f"{customers / phases['generate']:.1f} invoices/s")

    started = time.perf_counter()
    warnings: set[str] = set()
    findings, after, read = 0, None, 0
    while True:
        page = (await api(CHECKS, {"f": {"periodFrom": MONTH, "periodTo": MONTH}, "after": after}))["invoices"]
        for edge in page["edges"]:
            read += 1
            for check in edge["node"]["checks"]:
                findings += 1
                if check["severity"] == "WARNING":
                    warnings.add(check["code"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    if read != customers:
        raise SystemExit(f"read the checks of {read} invoices, not {customers}")
    await done("checks", started, f"{read} invoices' checks: {findings} findings, warnings {sorted(warnings) or 'none'}")

    started = time.perf_counter()
    reconciliation = (await api(RECONCILIATION, {"m": MONTH}))["reconciliation"]
    await done("reconcile", started, f"{len(reconciliation['lines'])} lines")
    cost = sum(Decimal(total["imported"]) for total in reconciliation["totals"])
    counted = sum(line["rows"] for line in reconciliation["lines"])
    expected = Decimal(facts["billed_thousandths"]) / 1000
    if cost != expected or counted != rows:
        raise SystemExit(f"the reconciliation adds up to {cost} over {counted} rows, the data to {expected} over {rows}")

    started = time.perf_counter()
    approved = await api(APPROVE, {"f": {"periodFrom": MONTH, "periodTo": MONTH, "status": ["AWAITING_APPROVAL"]}, "ack": sorted(warnings)})
    results = approved["approveInvoices"].get("results") or []
    if len(results) != customers or any(result["error"] for result in results):
        raise SystemExit(f"approveInvoices answered {json.dumps(approved)[:2000]}")
    await done("approve", started, f"{customers} approved")

    started = time.perf_counter()

    async def sent_all() -> bool:
        return (await api.count(displayStatus=["SENT"]))[0] == customers and len(mailbox.messages) >= customers

    await until(sent_all, 120 + 2 * customers, "the e-mails")
    check_mail(mailbox, customers)
    await done("send", started, lambda: f"{len(mailbox.messages)} e-mails with Factur-X: {customers / phases['send']:.1f}/s")

    times = []
    for _ in range(5):
        begun = time.perf_counter()
        await api(RECONCILIATION, {"m": MONTH})
        times.append((time.perf_counter() - begun) * 1000)
    phases["reconciliation_ms"] = statistics.median(times)
    return phases


async def send_costs(settings) -> None:
    """What one e-mail's work costs in CPU, measured here on an approved invoice of the run:
    its EN 16931 document from what was frozen, the Factur-X PDF, and the e-mail itself."""
    from jobs.mailer import Attachment, render_invoice_email, send_mail
    from jobs.send import invoice_email_context
    from models import Invoice, InvoiceRevision
    from models.einvoicing.files import facturx_pdf, frozen_document

    invoice = await Invoice.filter(status="APPROVED").order_by("number").first()
    assert invoice is not None
    revision = await InvoiceRevision.get(id=invoice.current_revision_id)
    pdf = storage_load(settings, revision.pdf_path)
    spent = dict.fromkeys(("document", "facturx", "mail"), 0.0)
    rounds = 5
    for _ in range(rounds):
        begun = time.process_time()
        frozen = await frozen_document(invoice)
        assert frozen is not None
        spent["document"] += time.process_time() - begun
        begun = time.process_time()
        made = facturx_pdf(pdf, frozen[1])
        spent["facturx"] += time.process_time() - begun
        begun = time.process_time()
        subject, text, html = render_invoice_email(invoice_email_context(invoice, revision))
        await send_mail(
            settings,
            to=["cpu@bench.example"],
            subject=subject,
            text=text,
            html=html,
            attachments=[Attachment(filename=f"{invoice.number}.pdf", content=made)],
        )
        spent["mail"] += time.process_time() - begun
    print(
        "CPU ms per e-mail (this process): "
        + ", ".join(f"{k} {1000 * v / rounds:.0f}" for k, v in spent.items())
        + f"; PDF {len(pdf) / 1e3:.0f} kB, as Factur-X {len(made) / 1e3:.0f} kB"
    )


def storage_load(settings, path: str) -> bytes:
    from infra import storage

    return storage.load(settings, path)


def check_mail(mailbox: Mailbox, customers: int) -> None:
    """One e-mail per customer to its billing address; a sample's PDF is Factur-X."""
    recipients = sorted(address for rcpt, _ in mailbox.messages for address in rcpt)
    if recipients != sorted(f"ap@customer{n:04d}.example" for n in range(customers)):
        raise SystemExit(f"the e-mails went to {len(recipients)} addresses, not each customer's once")
    import io

    from pypdf import PdfReader

    for _, content in mailbox.messages[:: max(1, len(mailbox.messages) // 20)]:
        message = email.message_from_bytes(content)
        pdfs = [part.get_payload(decode=True) for part in message.walk() if part.get_content_type() == "application/pdf"]
        if len(pdfs) != 1 or "factur-x.xml" not in PdfReader(io.BytesIO(pdfs[0])).attachments:
            raise SystemExit("an e-mail does not carry its invoice as Factur-X")


async def main(args) -> None:
    from aiosmtpd.controller import Controller

    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    folder, facts = month_data(args.customers, args.rows, cache)
    size = facts["bytes"] / 1e6
    print(f"the month: {facts['rows']} rows, {args.customers} customers, {facts['parts']} parts, {size:.0f} MB ({folder})", flush=True)

    claim_redis(args.redis_url)
    mailbox = Mailbox()
    smtp_port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    data_dir = Path(tempfile.mkdtemp(prefix="invoicing-bench-month-end-"))
    os.environ.update(
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        DATA_DIR=str(data_dir),
        ENVIRONMENT="production",
        SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
    )
    import httpx

    from infra import broker, db
    from infra.settings import get_settings

    settings = get_settings()
    begun = time.perf_counter()
    started: list[subprocess.Popen] = []
    try:
        await fresh_database(args.database_url, settings)
        await db.init(settings)
        redis = await broker.connect(settings)
        await redis.flushdb()
        token = await seed(args.customers)
        print(f"database migrated and seeded in {time.perf_counter() - begun:.1f} s", flush=True)
        await db.close()
        port = free_port()
        env = settings.child_environment() | {"PUBLIC_URL": f"http://127.0.0.1:{port}"}
        started = start_processes(env, port, args.workers, data_dir)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(600, connect=10)) as client:

            async def ready() -> bool:
                for process in started:
                    if process.poll() is not None:
                        raise SystemExit(f"a process ended at start ({process.args}); see {data_dir}/processes.log")
                try:
                    return (await client.get("/healthz")).json()["status"] == "ok"
                except (httpx.TransportError, ValueError):
                    return False

            begun = time.perf_counter()
            await until(ready, 300, "the web app and the worker")
            seconds = time.perf_counter() - begun
            print(f"started in {seconds:.1f} s: web app on {base}, {args.workers} worker(s), SMTP on port {smtp_port}", flush=True)
            meter = CpuMeter(started, args.database_url)
            phases = await month_end(Api(client, token), client, token, folder, facts, mailbox, args.customers, meter)
        await db.init(settings)
        await send_costs(settings)
        await redis.flushdb()
        await redis.aclose()
    finally:
        stop_processes(started)
        controller.stop()
        await db.close()
        await drop_database(args.database_url)
        if args.keep_logs:
            print(f"the processes' log: {data_dir / 'processes.log'}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
        release_redis(args.redis_url)
    reconciliation_ms = phases.pop("reconciliation_ms")
    print(" + ".join(f"{name} {seconds:.1f}" for name, seconds in phases.items()))
    print(f"reconciliation_ms {reconciliation_ms:.0f} (median of five over HTTP, {facts['rows']} rows)")
    print(f"month_end_seconds {sum(phases.values()):.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100, help="managed accounts, i.e. invoices")
    parser.add_argument("--rows", type=int, default=1_000_000, help="cost rows in the month")
    parser.add_argument("--workers", type=int, default=1, help="`invoicing worker` processes")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' data folder and log")
    parser.add_argument(
        "--cache",
        type=Path,
        default=ROOT / "var" / "bench",
        help="where the generated month is kept by its parameters (default: %(default)s)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="database to DROP, recreate and drop at the end (default: $BENCH_DATABASE_URL or %(default)s)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis database to FLUSH and use (default: $BENCH_REDIS_URL or %(default)s)",
    )
    asyncio.run(main(parser.parse_args()))
