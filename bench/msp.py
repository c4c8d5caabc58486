"""The world around a month close, for bench/month_close.py: what an MSP and its outside
systems do while the product closes a month, each a real server on loopback.

- a web process (`uvicorn invoicing.app:create_app`, its own operating-system process),
  which the MSP drives over GraphQL: login, a subscription left open, Xero connected, a cost
  source created and synced, a delivery uploaded with `importCosts`, the close, generation,
  the invoice list with its checks, approval and the push to Xero;
- moto's S3 server (`moto_server`, a process of its own) holding an AWS Data Exports delivery
  of the month, which the cost source's sync reads;
- an SMTP server (aiosmtpd) that the invoices are e-mailed to;
- the Xero test server (tests/xero_server.py: Xero's documented API, checking each request);
- both processes' `/metrics` scraped every half second and read with prometheus-client's
  parser, so that each family the operators' documentation names is seen non-zero or named.

The worker stays in the bench's own process (month_close.py times it as before)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import processes  # noqa: E402

PASSWORD = "bench-owner-password"
OWNER = "owner@bench.example"
BUCKET, PREFIX, EXPORT, PERIOD = "bench-billing", "exports", "focus-bench", "2024-09"
S3_KEY_ID, S3_SECRET = "AKIABENCHMONTH", "bench-month-secret"
SYNCED_ROWS, UPLOADED_ROWS = 3000, 2000
SUB_ACCOUNTS = 300  # bench/import_costs.py's generator: SubAccountId 100000000000 + 7 * n

# Each family an operator watches (docs/operators/observability.md), as the parser names them:
# those a month makes non-zero, and the jobs running, which only a scrape during a job sees.
FAMILIES = (*processes.FAMILIES, "invoicing_queue_jobs_running")

LOGIN = """mutation Login($e: String!, $p: String!) { login(email: $e, password: $p) {
  __typename ... on LoginSuccess { token } } }"""
WATCH = """subscription Watch { invoiceStatusChanged { status } }"""
CONNECT = """mutation ConnectXero { connectXero { __typename ... on XeroAuthorizationStarted { authorizeUrl }
  ... on UserError { code message } } }"""
CREATE_SOURCE = """mutation CreateSource($input: CreateCostSourceInput!) { createCostSource(input: $input) {
  __typename ... on CostSourceSaved { costSource { id } } ... on UserError { code message } } }"""
SYNC_SOURCE = """mutation SyncSource($id: ID!) { syncCostSource(id: $id) { __typename ... on UserError { code } } }"""
IMPORT = """mutation ImportCosts($file: Upload) { importCosts(file: $file) { __typename
  ... on CostImportQueued { costImport { id } } ... on UserError { code message } } }"""
IMPORTS = """query Imports { costImports(first: 10) { edges { node { state rows inserted } } } }"""
CLOSE = """mutation Close($m: Month!, $force: Boolean!) { closeBillingPeriod(month: $m, force: $force) { __typename
  ... on BillingPeriodClosed { invoicesCreated } ... on UserError { code message } } }"""
LIST = """query Invoices($after: String, $status: InvoiceStatus!) {
  invoices(first: 100, after: $after, filter: {status: [$status]}) { totalCount pageInfo { hasNextPage endCursor }
  edges { node { id number status total checks { code severity } } } } }"""
BULK = """mutation %s($ids: [ID!]!%s) { %s(ids: $ids%s) { __typename
  ... on InvoiceActionResults { succeeded results { error { code message } } } ... on UserError { code message } } }"""
GENERATE = BULK % ("Generate", "", "generateInvoices", "")
APPROVE = BULK % ("Approve", ", $acknowledge: [InvoiceCheckCode!]", "approveInvoices", ", acknowledge: $acknowledge")
PUSH = BULK % ("PushToXero", "", "pushInvoicesToXero", "")


class Ports:
    """The loopback ports of the month's servers, chosen before the settings are read."""

    def __init__(self) -> None:
        self.web, self.moto, self.xero, self.smtp = (processes.free_port() for _ in range(4))

    def environment(self) -> dict[str, str]:
        """The settings both processes read: where each outside system listens."""
        from cryptography.fernet import Fernet

        from tests.xero_server import CLIENT_ID, CLIENT_SECRET

        xero = f"http://127.0.0.1:{self.xero}"
        return {
            "HOST": "127.0.0.1",
            "PORT": str(self.web),
            "SECRET_KEY": os.urandom(24).hex(),
            "SMTP_URL": f"smtp://127.0.0.1:{self.smtp}",
            "SMTP_FROM": "billing@bench.example",
            "COST_SOURCE_PRIVATE_ENDPOINTS": "true",
            "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.moto}",
            "XERO_CLIENT_ID": CLIENT_ID,
            "XERO_CLIENT_SECRET": CLIENT_SECRET,
            "XERO_TOKEN_KEY": Fernet.generate_key().decode(),
            "XERO_AUTHORIZE_URL": f"{xero}/identity/connect/authorize",
            "XERO_TOKEN_URL": f"{xero}/identity/connect/token",
            "XERO_REVOCATION_URL": f"{xero}/identity/connect/revocation",
            "XERO_IDENTITY_API_URL": xero,
            "XERO_ACCOUNTING_API_URL": f"{xero}/api.xro/2.0",
            "XERO_RETRY_SECONDS": "0.2",
        }


class Outside:
    """The servers of the month: moto, SMTP and Xero, started once for the whole run."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self.mails = 0

    async def __aenter__(self) -> Outside:
        import uvicorn
        from aiosmtpd.controller import Controller

        from tests.xero_server import FakeXero

        self.moto = subprocess.Popen(  # noqa: ASYNC220 (started once, before anything runs)
            [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(self.ports.moto)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        outside = self

        class Mailbox:
            async def handle_DATA(self, server, session, envelope):
                outside.mails += 1
                return "250 OK"

        self.smtp = Controller(Mailbox(), hostname="127.0.0.1", port=self.ports.smtp)
        self.smtp.start()
        self.xero = FakeXero()
        self.xero.redirect_uri = f"http://127.0.0.1:{self.ports.web}/xero/callback"
        config = uvicorn.Config(self.xero.app(), host="127.0.0.1", port=self.ports.xero, lifespan="off", log_level="warning")
        self.xero_server = uvicorn.Server(config)
        self.xero_task = asyncio.create_task(self.xero_server.serve())
        await processes.until(lambda: _listening(self.ports.moto) and self.xero_server.started, "moto and the Xero server", 60)
        return self

    async def __aexit__(self, *exc) -> None:
        self.xero_server.should_exit = True
        await self.xero_task
        self.smtp.stop()
        self.moto.terminate()
        self.moto.wait(20)

    def deliver(self) -> None:
        """The month as AWS Data Exports writes it: a data file, then the manifest naming it."""
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.ports.moto}",
            region_name="us-east-1",
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
        )
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=BUCKET)
        key = f"{PREFIX}/{EXPORT}/data/BILLING_PERIOD={PERIOD}/{EXPORT}-00001.snappy.parquet"
        s3.put_object(Bucket=BUCKET, Key=key, Body=focus_rows(0, SYNCED_ROWS, "parquet"))
        manifest = {
            "executionId": f"bench-{time.time_ns()}",
            "dataFiles": [f"s3://{BUCKET}/{key}"],
            "exportArn": f"arn:aws:bcm-data-exports:us-east-1:123456789012:export/{EXPORT}",
            "billingPeriod": {"start": "2024-09-01T00:00:00Z", "end": "2024-10-01T00:00:00Z"},
        }
        s3.put_object(
            Bucket=BUCKET,
            Key=f"{PREFIX}/{EXPORT}/metadata/BILLING_PERIOD={PERIOD}/{EXPORT}-Manifest.json",
            Body=json.dumps(manifest).encode(),
        )


def focus_rows(first: int, rows: int, kind: str, billing_account: str | None = None) -> bytes:
    """FOCUS rows of September from bench/import_costs.py's generator, as Parquet or CSV; with
    `billing_account`, all of that payer (another delivery's scope: it replaces nothing synced)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from bench.import_costs import _chunk

    table = _chunk(first, rows)
    if billing_account:
        at = table.schema.get_field_index("BillingAccountId")
        table = table.set_column(at, "BillingAccountId", pa.array([billing_account] * rows, pa.string()))
    sink = io.BytesIO()
    if kind == "parquet":
        pq.write_table(table, sink, compression="snappy")
    else:
        pa_csv.write_csv(table, sink)
    return sink.getvalue()


def sub_account_of(number: int) -> str:
    return str(100000000000 + 7 * number)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Scrapes:
    """`/metrics` of the web process and of the worker, every half second, read with
    prometheus-client's parser: per family, its highest value in any scrape of either
    (a counter's or histogram's count, a gauge's value)."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.highest: dict[str, float] = {}
        self.series: dict[str, float] = {}
        self.scrapes = 0

    async def start(self) -> None:
        self.task = asyncio.create_task(self._every(0.5))

    async def _every(self, seconds: float) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                for url in self.urls.values():
                    with contextlib.suppress(httpx.TransportError):
                        self.read((await client.get(url)).text)
                await asyncio.sleep(seconds)

    def read(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(text):
            # The text format's `_created` samples come out as families of their own: left out.
            if not family.name.startswith("invoicing_") or family.name.endswith("_created"):
                continue
            total = 0.0
            for sample in family.samples:
                if sample.name.endswith(("_bucket", "_sum", "_created", "_gsum", "_gcount")):
                    continue
                total += sample.value
            self.highest[family.name] = max(self.highest.get(family.name, 0.0), total)
        self.scrapes += 1

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        async with httpx.AsyncClient(timeout=30) as client:
            for url in self.urls.values():
                self.read((await client.get(url)).text)

    def report(self) -> None:
        for name in sorted(self.highest):
            print(f"metrics {name} {self.highest[name]:g} (highest)")
        zero = [name for name in FAMILIES if not self.highest.get(name)]
        named = f" (zero: {', '.join(zero)})" if zero else ""
        print(f"metrics: {self.scrapes} scrapes, {len(FAMILIES) - len(zero)} of {len(FAMILIES)} families non-zero{named}")


class Msp:
    """The MSP at its console: a logged-in owner of the bench organization, talking to the web
    process over HTTP and a WebSocket."""

    def __init__(self, settings, ports: Ports, outside: Outside) -> None:
        self.settings, self.ports, self.outside = settings, ports, outside
        self.web_url = f"http://127.0.0.1:{ports.web}"
        self.folder = Path(settings.data_dir)
        self.timings: dict[str, float] = {}

    async def start(self) -> None:
        """The web process, then the owner's session and subscription."""
        from tests.graphql import LiveClient

        self.outside.mails = 0
        self.processes = processes.Processes(self.settings, self.folder)
        self.web = await self.processes.web("web", self.ports.web, log_level="warning", ready=(200,))
        self.http = httpx.AsyncClient(base_url=self.web_url, timeout=600)
        login = await self.call(LOGIN, {"e": OWNER, "p": PASSWORD}, token=None)
        self.token = login["login"]["token"]
        self.live = LiveClient(f"127.0.0.1:{self.ports.web}", self.token, origin=self.web_url)
        await self.live.__aenter__()
        await self.live.subscribe(WATCH)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.live.__aexit__(None, None, None)
        await self.http.aclose()
        self.processes.stop()

    async def call(self, query: str, variables: dict | None = None, token: str | None | bool = True) -> dict:
        headers = {"Authorization": f"Bearer {self.token if token is True else token}"} if token else {}
        answer = await self.http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
        body = answer.json()
        if answer.status_code != 200 or body.get("errors"):
            raise SystemExit(f"GraphQL refused: {answer.status_code} {json.dumps(body)[:1000]}")
        return body["data"]

    # -- before the close: Xero connected, the month's costs arriving ------------------------

    async def connect_xero(self) -> None:
        from urllib.parse import urlsplit

        started = (await self.call(CONNECT))["connectXero"]
        if started["__typename"] != "XeroAuthorizationStarted":
            raise SystemExit(f"connectXero: {started}")
        answer = await self.http.get(
            urlsplit(self.outside.xero.redirect_uri).path, params=self.outside.xero.authorize(started["authorizeUrl"])
        )
        if answer.status_code != 200:
            raise SystemExit(f"the Xero callback answered {answer.status_code}")

    async def costs_arrive(self) -> tuple[int, float]:
        """A cost source synced from the bucket, and a delivery uploaded: both imported by the
        worker. The rows imported, and the seconds until both were done."""
        started = time.perf_counter()
        await asyncio.to_thread(self.outside.deliver)
        source = (
            await self.call(
                CREATE_SOURCE,
                {
                    "input": {
                        "name": "AWS billing",
                        "kind": "AWS_S3",
                        "location": f"s3://{BUCKET}/{PREFIX}",
                        "region": "us-east-1",
                        "accessKeyId": S3_KEY_ID,
                        "secretAccessKey": S3_SECRET,
                    }
                },
            )
        )["createCostSource"]
        if source["__typename"] != "CostSourceSaved":
            raise SystemExit(f"createCostSource: {source}")
        await self.call(SYNC_SOURCE, {"id": source["costSource"]["id"]})
        upload = focus_rows(SYNCED_ROWS, UPLOADED_ROWS, "csv", billing_account="800000000000")
        answer = await self.http.post(
            "/graphql",
            data={"operations": json.dumps({"query": IMPORT, "variables": {"file": None}}), "map": json.dumps({"0": ["variables.file"]})},
            files={"0": ("focus-september.csv", upload, "text/csv")},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if answer.json()["data"]["importCosts"]["__typename"] != "CostImportQueued":
            raise SystemExit(f"importCosts: {answer.text[:1000]}")

        async def imported() -> list[dict]:
            edges = (await self.call(IMPORTS))["costImports"]["edges"]
            done = [edge["node"] for edge in edges if edge["node"]["state"] in ("DONE", "FAILED")]
            if any(node["state"] == "FAILED" for node in done):
                raise SystemExit(f"an import failed: {edges}")
            return done if len(done) == 2 else []

        await processes.until(imported, "the synced and the uploaded delivery", 600)
        rows = sum(node["rows"] for node in await imported())
        return rows, time.perf_counter() - started

    # -- the close, and generation ----------------------------------------------------------

    async def close(self, month: str) -> int:
        closed = (await self.call(CLOSE, {"m": month, "force": False}))["closeBillingPeriod"]
        if closed.get("code") == "DATA_INCOMPLETE":
            # One delivery of the month, not its final one: the MSP closes it as it is.
            closed = (await self.call(CLOSE, {"m": month, "force": True}))["closeBillingPeriod"]
        if closed["__typename"] != "BillingPeriodClosed":
            raise SystemExit(f"closeBillingPeriod: {closed}")
        return closed["invoicesCreated"]

    async def listed(self, status: str) -> list[dict]:
        """Every invoice of a status, a page of 100 at a time, with its checks."""
        found, after = [], None
        while True:
            page = (await self.call(LIST, {"after": after, "status": status}))["invoices"]
            found.extend(edge["node"] for edge in page["edges"])
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    async def bulk(self, query: str, ids: list[str], **variables) -> None:
        """A bulk mutation, 500 invoices a call (its limit); every one must succeed."""
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            answer = next(iter((await self.call(query, {"ids": chunk, **variables})).values()))
            if answer.get("succeeded") != len(chunk):
                errors = [result["error"] for result in answer.get("results", []) if result["error"]]
                raise SystemExit(f"{query.split('(')[0]}: {answer.get('succeeded')} of {len(chunk)}: {errors[:3] or answer}")

    # -- after generation: the checks, approval, the e-mails, Xero --------------------------

    async def approve_send_and_push(self, expected: int) -> None:
        from models import Invoice
        from models.xero.tables import SyncState, XeroSync

        started = time.perf_counter()
        invoices = await self.listed("AWAITING_APPROVAL")
        if len(invoices) != expected:
            raise SystemExit(f"{len(invoices)} invoices awaiting approval, not {expected}")
        codes = sorted({check["code"] for invoice in invoices for check in invoice["checks"] if check["severity"] == "WARNING"})
        self.timings["list and checks"] = time.perf_counter() - started
        ids = [invoice["id"] for invoice in invoices]

        started = time.perf_counter()
        await self.bulk(APPROVE, ids, acknowledge=codes)
        await processes.until(lambda: self.outside.mails >= expected, "the e-mails", 120 + expected)
        await processes.until(lambda: _count_is(Invoice.filter(delivery_status="SENT"), expected), "the deliveries", 60)
        self.timings["approve and e-mail"] = time.perf_counter() - started

        started = time.perf_counter()
        await self.bulk(PUSH, ids)
        await processes.until(
            lambda: _count_is(XeroSync.filter(state=SyncState.SYNCED), expected, XeroSync.filter(state=SyncState.FAILED)),
            "the pushes to Xero",
            120 + expected,
        )
        self.timings["push to Xero"] = time.perf_counter() - started
        print(
            f"MSP: {len(codes)} kinds of warning acknowledged ({', '.join(codes) or 'none'}); "
            f"{self.outside.mails} e-mails received; {len(self.outside.xero.invoices)} invoices in Xero; "
            + "; ".join(f"{name} {seconds:.1f} s" for name, seconds in self.timings.items())
        )
        if self.outside.xero.problems:
            raise SystemExit(f"the Xero server found requests it would refuse: {self.outside.xero.problems[:3]}")


async def _count_is(query, expected: int, failed=None) -> bool:
    if failed is not None and await failed.exists():
        raise SystemExit("a push to Xero failed")
    return await query.count() == expected
