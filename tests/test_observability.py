"""What an operator sees of real processes: a web process and a worker, each its own operating-
system process with LOG_FORMAT=json, taken through a month (an upload, its import, the close,
generation, approval, the e-mail), then scraped (`/metrics`, read with prometheus-client's
parser) and read (every log line parsed, the whole output searched for secrets). Then how they
stop: on SIGTERM the web process lets its requests finish and closes its WebSockets with 1012;
the worker takes no more jobs, and hands back the one it could not finish."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from urllib.parse import urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from prometheus_client.parser import text_string_to_metric_families
from strawberry.relay import to_base64

import tests.factories as f
from infra import broker
from jobs import dispatch
from models import CostImport, Invoice, SubAccount
from models.base import Scope
from models.cost_sources import CostSource, CostSourceKind
from models.cost_sources.credentials import Credentials, seal_credentials
from models.xero.tokens import TokenSet, seal_tokens
from tests.conftest import Mailbox
from tests.graphql import LiveClient
from tests.processes import FAMILIES, Processes, free_port, until
from tests.test_cost_imports_api import IMPORT
from tests.test_costs_import import AWS_BIG, SAMPLE

SMTP_USER, SMTP_PASSWORD = "mailer", "smtp-password-never-logged"
METRICS_TOKEN = "metrics-token-never-logged"
PASSWORD = "owner-password-never-logged"
REQUEST_ID = "upload-0042-from-the-proxy"
# Where nothing listens: a revocation sent there fails at once, and is retried later.
CLOSED = "http://127.0.0.1:9/revoke"
KEY, REFRESH = "cost-source-key-never-logged", "xero-refresh-token-never-logged"
LOGIN = """mutation($e: String!, $p: String!) { login(email: $e, password: $p) {
  __typename ... on LoginSuccess { token } } }"""
CLOSE = """mutation Close($m: Month!) { closeBillingPeriod(month: $m) { __typename
  ... on BillingPeriodClosed { invoicesCreated } } }"""
BULK = """mutation %s($ids: [ID!]!) { %s(ids: $ids) { __typename
  ... on InvoiceActionResults { results { invoice { status } error { code message } } } } }"""
WATCH = """subscription Watch { invoiceStatusChanged { status } }"""
PDF_URL = """query Pdf($n: String!) { invoice(number: $n) { pdfUrl } }"""
FIELDS = {"time", "level", "logger", "message", "request_id", "operation", "organization_id", "job_id", "function"}


def _authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def mailbox():
    """An SMTP server that takes mail only from our user with its password."""
    box = Mailbox()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        auth_required=True,
        auth_require_tls=False,
        authenticator=_authenticate,
    )
    controller.start()
    yield f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{controller.port}", box
    controller.stop()


async def _scrape(url: str) -> dict[str, float]:
    """Sample name (with its labels) -> value, as prometheus-client parses the answer."""
    async with httpx.AsyncClient() as client:
        answer = await client.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200, answer.text
    return {
        f"{sample.name}{json.dumps(sample.labels, sort_keys=True)}": sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def _total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of a sample's values over the label sets that include `labels`."""
    return sum(
        value
        for key, value in samples.items()
        if key.split("{", 1)[0] == name and all(json.loads("{" + key.split("{", 1)[1]).get(k) == v for k, v in labels.items())
    )


async def _post(client: httpx.AsyncClient, query: str, variables: dict, token: str, **headers: str) -> httpx.Response:
    answer = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {token}", **headers}
    )
    assert answer.status_code == 200, answer.text
    return answer


async def _upload(client: httpx.AsyncClient, token: str, content, **headers: str) -> httpx.Response:
    variables = {"file": None, "files": None}
    return await client.post(
        "/graphql",
        data={"operations": json.dumps({"query": IMPORT, "variables": variables}), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (SAMPLE.name, content, "text/csv")},
        headers={"Authorization": f"Bearer {token}", **headers},
    )


async def test_a_month_through_real_processes_is_counted_and_logged_as_json_without_a_secret(
    settings,
    world,
    redis,
    mailbox,
):
    owner = await f.user(world.org, Scope.OWNER, email="owner@northwind.example", password=PASSWORD)
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AWS_BIG)
    world.account.billing_emails = ["ap@contoso.example"]
    await world.account.save()
    web_port, worker_port = free_port(), free_port()
    processes = Processes(
        settings,
        LOG_FORMAT="json",
        SMTP_URL=mailbox[0],
        METRICS_TOKEN=METRICS_TOKEN,
        WORKER_METRICS_PORT=str(worker_port),
        XERO_REVOCATION_URL=CLOSED,
    )
    web = f"127.0.0.1:{web_port}"
    sealed = seal_tokens(settings, TokenSet("access-never-logged", REFRESH, time.time() + 600))
    try:
        await processes.web("web", web_port)
        async with httpx.AsyncClient(base_url=f"http://{web}", timeout=60) as client:
            login = await client.post("/graphql", json={"query": LOGIN, "variables": {"e": owner.email, "p": PASSWORD}})
            token = login.json()["data"]["login"]["token"]
            assert len(login.headers["x-request-id"]) == 32
            async with LiveClient(web, token) as live:
                await live.subscribe(WATCH)
                # No worker yet: the import waits in the queue, which the web process reads.
                uploaded = await _upload(client, token, SAMPLE.read_bytes(), **{"X-Request-Id": REQUEST_ID})
                assert uploaded.headers["x-request-id"] == REQUEST_ID
                assert uploaded.json()["data"]["importCosts"]["__typename"] == "CostImportQueued"
                assert (await client.get("/metrics")).status_code == 404  # loopback, but a token is set
                await asyncio.sleep(0.3)
                before = await _scrape(f"http://{web}/metrics")
            assert before["invoicing_queue_jobs_waiting{}"] == 1
            assert before["invoicing_queue_oldest_job_age_seconds{}"] > 0.2
            assert before["invoicing_subscriptions_active{}"] == 1
            assert _total(before, "invoicing_graphql_operation_seconds_count", type="mutation", outcome="ok") == 2

            processes.worker()
            await until(lambda: CostImport.filter(state="DONE").exists(), "the import")
            closed = await _post(client, CLOSE, {"m": "2024-09"}, token)
            assert closed.json()["data"]["closeBillingPeriod"]["invoicesCreated"] == 2
            invoice = await Invoice.get(managed_account_id=world.account.id, billing_period__start_date="2024-09-01")
            ids = [to_base64("Invoice", str(invoice.id))]
            await _post(client, BULK % ("Generate", "generateInvoices"), {"ids": ids}, token)
            await until(lambda: Invoice.filter(id=invoice.id, status="AWAITING_APPROVAL").exists(), "generation")
            approved = await _post(client, BULK % ("Approve", "approveInvoices"), {"ids": ids}, token)
            assert approved.json()["data"]["approveInvoices"]["results"][0]["error"] is None, approved.text
            await until(lambda: Invoice.filter(id=invoice.id, delivery_status="SENT").exists(), "the e-mail")
            number = (await Invoice.get(id=invoice.id)).number
            link = (await _post(client, PDF_URL, {"n": number}, token)).json()["data"]["invoice"]["pdfUrl"]
            assert (await client.get(urlsplit(link).path)).status_code == 200
            # A Xero revocation and a cost source sync, as their effects queue them.
            await dispatch.enqueue_xero_revoke(redis, "sealed-tokens-this-worker-cannot-read")
            await dispatch.enqueue_xero_revoke(redis, sealed)
            # An S3-compatible store on loopback: refused as a private endpoint, the sync fails.
            source = await CostSource.create(
                organization=world.org,
                name="Northwind exports",
                kind=CostSourceKind.S3_COMPATIBLE,
                bucket="billing",
                endpoint="http://127.0.0.1:9",
                credentials=seal_credentials(settings, Credentials("AKIAOBSERVE", KEY)),
            )
            await dispatch.enqueue_cost_source_sync(redis, source.id)

            async def counted() -> bool:
                samples = await _scrape(f"http://127.0.0.1:{worker_port}/metrics")
                return _total(samples, "invoicing_xero_syncs_total") == 2 and _total(samples, "invoicing_cost_source_syncs_total") == 1

            await until(counted, "the revocations and the sync")
            worker = await _scrape(f"http://127.0.0.1:{worker_port}/metrics")
            after = await _scrape(f"http://{web}/metrics")
    finally:
        processes.stop()

    assert _total(worker, "invoicing_cost_import_rows_total") == (await CostImport.get()).row_count
    assert _total(worker, "invoicing_cost_import_seconds_count", outcome="done") == 1
    assert _total(worker, "invoicing_pdfs_printed_total") >= 1
    assert _total(worker, "invoicing_pdf_print_seconds_count", outcome="ok") >= 1
    assert _total(worker, "invoicing_emails_total", outcome="sent") == 1
    assert _total(worker, "invoicing_xero_syncs_total", kind="revoke", outcome="unreadable") == 1
    # Xero's revocation endpoint is not this test's to reach: the revocation fails, and will retry.
    assert _total(worker, "invoicing_xero_syncs_total", kind="revoke") == 2
    assert _total(worker, "invoicing_cost_source_syncs_total", kind="S3_COMPATIBLE", state="failing") == 1
    for function in ("run_cost_import", "generate_invoices", "send_invoice", "revoke_xero_tokens"):
        assert _total(worker, "invoicing_job_seconds_count", function=function, outcome="ok") >= 1, function
    operations = {json.loads("{" + key.split("{", 1)[1])["operation"] for key in after if key.startswith("invoicing_graphql")}
    assert {"Close", "Generate", "Approve", "Pdf", "Watch"} <= operations
    assert _total(after, "invoicing_queue_jobs_waiting") == 0
    # Each family the issue names, non-zero in one scrape or another of the two processes.
    scraped = [before, after, worker]
    assert [name for name in FAMILIES if not any(v > 0 for s in scraped for k, v in s.items() if k.startswith(name))] == []

    lines = processes.lines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert all(FIELDS <= set(record) for record in records), [r for r in records if not FIELDS <= set(r)][:3]
    carried = [record for record in records if record["request_id"] == REQUEST_ID]
    assert {(r["function"], r["organization_id"]) for r in carried if r["job_id"]} == {("run_cost_import", str(world.org.id))}
    assert any(r["logger"] == "uvicorn.access" and "POST /graphql" in r["message"] for r in carried)
    text = "\n".join(lines)
    (sent,) = mailbox[1].messages
    body = next(part.get_payload(decode=True).decode() for part in sent[1].walk() if part.get_content_type() == "text/plain")
    secrets = [
        PASSWORD,
        token,
        SMTP_PASSWORD,
        METRICS_TOKEN,
        settings.secret_key,
        link.rsplit("/", 1)[1],
        KEY,
        REFRESH,
        sealed,
        *world.tokens.values(),
        *[line.strip() for line in body.splitlines() if len(line.strip()) > 24],
    ]
    assert [secret for secret in secrets if secret and secret in text] == []


def _multipart(boundary: str) -> bytes:
    """`importCosts` of the sample as a GraphQL multipart request's body."""
    operations = json.dumps({"query": IMPORT, "variables": {"file": None, "files": None}})
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in (("operations", operations), ("map", json.dumps({"0": ["variables.file"]})))
    )
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="0"; filename="{SAMPLE.name}"\r\nContent-Type: text/csv\r\n\r\n'
    return (head + part).encode() + SAMPLE.read_bytes() + f"\r\n--{boundary}--\r\n".encode()


async def test_a_stopping_web_process_finishes_its_requests_and_closes_sockets_with_service_restart(settings, world):
    """`invoicing serve` on SIGTERM: no new connection, a WebSocket closed with 1012 (clients
    reconnect, to another process), an upload under way answered in full, then it exits."""
    port = free_port()
    processes = Processes(
        settings,
        LOG_FORMAT="json",
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_STOP_SECONDS="20",
        ALLOWED_ORIGINS=json.dumps(["http://127.0.0.1:8000"]),
    )
    owner, body, boundary = world.tokens["owner"], _multipart("observe"), "observe"
    half, resumed = len(body) // 2, asyncio.Event()
    try:
        server = processes.start("serve", "-m", "invoicing", "serve")
        await processes.answering("serve", server, port)
        sent_half = asyncio.Event()

        async def slowly():
            yield body[:half]
            sent_half.set()
            await resumed.wait()
            yield body[half:]

        async with LiveClient(f"127.0.0.1:{port}", owner) as live, httpx.AsyncClient(timeout=60) as client:
            operation = await live.subscribe(WATCH)
            upload = asyncio.create_task(
                client.post(
                    f"http://127.0.0.1:{port}/graphql",
                    content=slowly(),
                    headers={
                        "Authorization": f"Bearer {owner}",
                        "Content-Length": str(len(body)),
                        "Content-Type": f"multipart/form-data; boundary={boundary}",
                    },
                )
            )
            await asyncio.wait_for(sent_half.wait(), 10)
            # Under way once the server has read its head: a connection with nothing read yet is
            # simply closed (the client tries again elsewhere).
            await asyncio.sleep(1)
            stopped_at = time.monotonic()
            server.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(live.closed, 10) == 1012
            assert live.inbox[operation].empty()
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/healthz")
            resumed.set()
            answer = await asyncio.wait_for(upload, 20)
        assert answer.status_code == 200
        assert answer.json()["data"]["importCosts"]["__typename"] == "CostImportQueued"
        assert server.wait(40) == 128 + signal.SIGTERM
        assert time.monotonic() - stopped_at < 40
    finally:
        resumed.set()
        processes.stop()


async def _revocations(redis) -> list[str]:
    """The queued jobs but the worker's scheduled runs (`cron:...`)."""
    return [job.decode() for job in await redis.zrange(broker.QUEUE_NAME, 0, -1) if not job.startswith(b"cron:")]


async def test_a_stopping_worker_takes_no_more_jobs_and_hands_back_the_one_it_could_not_finish(settings, redis):
    """`invoicing worker` on SIGTERM, with WORKER_STOP_SECONDS=2, while a Xero revocation waits
    on a Xero that answers nothing: the job is cut short after 2 s and stays queued with this
    try not counted, a job queued after the signal is not taken, and the worker exits. A second
    worker then runs both."""
    connected, held = asyncio.Event(), []

    async def answer_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        connected.set()
        await reader.read(1 << 16)

    stalling = await asyncio.start_server(answer_nothing, "127.0.0.1", 0)
    stall_port = stalling.sockets[0].getsockname()[1]
    processes = Processes(settings, LOG_FORMAT="json", WORKER_STOP_SECONDS="2", XERO_REVOCATION_URL=f"http://127.0.0.1:{stall_port}/revoke")
    sealed = seal_tokens(settings, TokenSet("access", "refresh", time.time() + 600))
    try:
        worker = processes.worker()

        async def heartbeat() -> bool:
            return bool(await redis.exists(broker.HEALTH_CHECK_KEY))

        await until(heartbeat, "the worker's heartbeat")
        await dispatch.enqueue_xero_revoke(redis, sealed)
        (held_job,) = await _revocations(redis)
        await asyncio.wait_for(connected.wait(), 30)
        stopped_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        await dispatch.enqueue_xero_revoke(redis, "sealed-tokens-this-worker-cannot-read")
        (later_job,) = [job for job in await _revocations(redis) if job != held_job]
        await asyncio.sleep(2.5)
        # The SDK's call waits in a thread; it ends when Xero (here) hangs up.
        for writer in held:
            writer.close()
        assert await asyncio.to_thread(worker.wait, 30) == 0
        assert time.monotonic() - stopped_at < 30

        assert await redis.zscore(broker.QUEUE_NAME, held_job) is not None
        assert not await redis.exists(in_progress_key_prefix + held_job)
        assert int(await redis.get(retry_key_prefix + held_job)) == 0
        assert await redis.zscore(broker.QUEUE_NAME, later_job) is not None
        assert not await redis.exists(retry_key_prefix + later_job)
        records = [json.loads(line) for line in processes.lines() if line.strip()]
        assert any(r["message"] == f"job {held_job} handed back to the queue" for r in records)
        assert any(r["message"].startswith("revoke_xero_tokens cancelled") and r["job_id"] == held_job for r in records)

        processes.worker("second-worker", XERO_REVOCATION_URL=CLOSED)

        async def both_run() -> bool:
            tries = await redis.get(retry_key_prefix + held_job)
            return tries == b"1" and not await redis.exists(job_key_prefix + later_job)

        await until(both_run, "the second worker's runs")
    finally:
        stalling.close()
        processes.stop()
