"""The invoice pipeline under stress: a worker killed mid-render, invoices stuck or given up,
fifty generations at once, resending, a refused recipient, and the scope matrix of the
pipeline's mutations. Real worker processes, real Chromium, a real SMTP server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from arq import func
from arq.constants import in_progress_key_prefix
from strawberry.relay import to_base64
from tortoise import connections

from infra import broker, storage
from infra.settings import get_settings
from jobs import dispatch
from jobs.generate import GIVE_UP_AFTER, STUCK_AFTER, generate_invoices, requeue_stuck
from jobs.send import send_invoice
from jobs.worker import WorkerSettings, worker_settings
from models import BillingPeriod, CostImport, Invoice, InvoiceEvent, InvoiceNumberCounter, InvoiceRevision
from models.actors import Actor
from models.base import Scope
from models.billing_periods import close_period
from models.invoices.actions import fail_generation
from models.invoices.lifecycle import transition
from tests import factories as f
from tests.graphql import error_codes, gql
from tests.test_rendering import pdf_text

ROOT = Path(__file__).resolve().parent.parent
SEPT = date(2024, 9, 1)
SYSTEM = Actor.system("test")

CLOSE = """mutation($m: Month!) { closeBillingPeriod(month: $m) { __typename
  ... on BillingPeriodClosed { invoicesCreated } ... on UserError { code } } }"""
BULK = """mutation($ids: [ID!]!) { %s(ids: $ids) { __typename
  ... on InvoiceActionResults { results { id invoice { status number } error { code message } } } } }"""
RESEND = """mutation($id: ID!) { resendInvoice(id: $id) { __typename
  ... on InvoiceResendQueued { invoice { number deliveryStatus } } ... on UserError { code message } } }"""
TIMELINE = """query($n: String!) { invoice(number: $n) { deliveryStatus
  timeline { kind actor fromStatus toStatus detail } } }"""


# The product's worker settings with short job timeouts and no cron jobs. arq keeps a running
# job's in-progress key for (longest job timeout + 10 s); when its worker dies, the job stays
# queued and runs again on any worker once that key expires: 15 s after it started here,
# instead of the 310 s of the product's settings. A dict, not a subclass: arq reads a settings
# class's own __dict__, so a subclass would lose the inherited Redis settings, queue and start-up.
PRODUCT_WORKER = worker_settings(get_settings())
QUICK_RECOVERY_WORKER = {
    **PRODUCT_WORKER,
    "functions": [
        func(generate_invoices, name=dispatch.GENERATE, keep_result=0, timeout=5),
        func(send_invoice, name=dispatch.SEND, keep_result=0, timeout=5),
    ],
    "cron_jobs": [],
}


def _gid(invoice) -> str:
    return to_base64("Invoice", str(invoice.id))


async def _eventually(condition, timeout: float = 60, interval: float = 0.1, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await condition():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def _costs(org, account, *, services: int, rows_per_service: int = 1) -> None:
    """`services` usage lines for the account's September 2024 (`rows_per_service` cost records
    each), inserted in one statement."""
    imported = await CostImport.create(
        organization=org, file_sha256="0" * 64, row_count=0, inserted_count=0, duplicate_count=0
    )
    await connections.get("default").execute_query(
        "INSERT INTO cost_records (organization_id, managed_account_id, cost_import_id, fingerprint,"
        " billing_month, billing_period_start, billing_period_end, provider_name, sub_account_id,"
        " billed_cost, billing_currency, consumed_quantity, consumed_unit, service_name,"
        " service_category, charge_category, extra)"
        " SELECT $1, $2::uuid, $3, md5($2::text || ':' || n), '2024-09-01', '2024-09-01T00:00:00Z',"
        " '2024-10-01T00:00:00Z', 'AWS', '111122223333', 1 + (n % 97) / 8.0, 'USD', 1 + n % 13, 'Hrs',"
        " 'Service ' || lpad((n % $4)::text, 5, '0'), 'Compute', 'Usage', '{}'"
        " FROM generate_series(1, $5) AS n",
        [str(org.id), str(account.id), str(imported.id), services, services * rows_per_service],
    )
    await f.summed_costs(org.id)


async def _revisions(invoice) -> int:
    return await InvoiceRevision.filter(invoice_id=invoice.id).count()


async def _status(invoice) -> str:
    return (await Invoice.get(id=invoice.id)).status


# --- Worker processes -------------------------------------------------------------------------


def _start_worker(settings, settings_path: str, log: Path) -> subprocess.Popen:
    """`python -m arq <settings_path>` on the test's database, Redis and data folder."""
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "DATA_DIR": str(settings.data_dir),
        "STORAGE_DIR": str(settings.storage_path),
        "XDG_CONFIG_HOME": str(settings.data_dir / "xdg-config"),
    }
    env.pop("SMTP_URL", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "arq", settings_path], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _family(process: subprocess.Popen) -> list[psutil.Process]:
    """The worker and what it started (Playwright's driver, Chromium and its helpers)."""
    try:
        parent = psutil.Process(process.pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kill(process: subprocess.Popen, family: list[psutil.Process] | None = None) -> None:
    """SIGKILL the worker, then whatever it started that outlived it."""
    family = family if family is not None else _family(process)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    # Playwright's driver closes Chromium when its pipe to the worker closes; give it a moment.
    _, alive = psutil.wait_procs(family[1:], timeout=5)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM (arq cancels its jobs and closes Chromium), then SIGKILL what is left."""
    family = _family(process)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    _kill(process, family)


# --- a. Killed, lost, given up ---------------------------------------------------------------


async def test_a_worker_killed_mid_render_leaves_the_invoice_generated_later(
    client, world, redis, settings, tmp_path
):
    # 1,200 services from 3,600 cost records: a PDF of 1,200 lines takes Chromium well over a
    # second, so the kill lands inside the render.
    await _costs(world.org, world.account, services=1200, rows_per_service=3)
    owner = world.tokens["owner"]
    assert (await gql(client, CLOSE, {"m": "2024-09"}, token=owner))["data"]["closeBillingPeriod"]["invoicesCreated"] == 2
    invoice = await Invoice.get(managed_account_id=world.account.id)
    generated = await gql(client, BULK % "generateInvoices", {"ids": [_gid(invoice)]}, token=owner)
    assert generated["data"]["generateInvoices"]["results"][0]["invoice"]["status"] == "GENERATING"
    (job,) = await redis.queued_jobs(queue_name=broker.QUEUE_NAME)
    assert (job.function, job.args) == (dispatch.GENERATE, ([str(invoice.id)], 1))
    job_id = job.job_id
    in_progress = in_progress_key_prefix + job_id

    log = tmp_path / "workers.log"
    doomed = _start_worker(settings, f"{__name__}.QUICK_RECOVERY_WORKER", log)
    survivor = None
    try:
        await _eventually(lambda: redis.exists(in_progress), timeout=30, interval=0.02, what="the job to start")
        # The job numbers the invoice right before it renders: kill it then.
        await _eventually(
            lambda: Invoice.filter(id=invoice.id, number__isnull=False).exists(),
            timeout=20, interval=0.02, what="the job to number the invoice",
        )
        _kill(doomed)
        assert doomed.returncode == -signal.SIGKILL

        numbered = await Invoice.get(id=invoice.id)
        assert numbered.status == "GENERATING" and await _revisions(invoice) == 0, "killed mid-job"
        # arq still holds the job: queued, and marked as running until the in-progress key expires.
        assert await redis.zscore(broker.QUEUE_NAME, job_id) is not None
        assert 0 < await redis.pttl(in_progress) <= 15_000

        # The sweeper cannot queue it a second time while arq holds it.
        await connections.get("default").execute_query(
            "UPDATE invoices SET updated_at = now() - $2::interval WHERE id = $1",
            [str(invoice.id), STUCK_AFTER + timedelta(seconds=5)],
        )
        assert await requeue_stuck({"redis": redis}) == 1
        assert [j.job_id for j in await redis.queued_jobs(queue_name=broker.QUEUE_NAME)] == [job_id]

        # A new worker, with the product's own settings, runs the job once the key expires.
        survivor = _start_worker(settings, f"{__name__}.PRODUCT_WORKER", log)
        await _eventually(
            lambda: Invoice.filter(id=invoice.id, status__not="GENERATING").exists(),
            timeout=40, interval=0.2, what="the invoice to leave GENERATING",
        )
    finally:
        _kill(doomed)
        if survivor is not None:
            _stop(survivor)

    done = await Invoice.get(id=invoice.id)
    assert done.status == "AWAITING_APPROVAL", (done.error_message, log.read_text()[-3000:])
    assert done.number == numbered.number, "the number taken by the killed job is kept"
    revision = await InvoiceRevision.get(invoice_id=invoice.id)
    assert revision.revision == 1 and len(revision.snapshot["lines"]) == 1200
    assert storage.load(settings, revision.pdf_path).startswith(b"%PDF-")
    assert await InvoiceEvent.filter(invoice_id=invoice.id, kind="GENERATED").count() == 1
    assert (await InvoiceNumberCounter.get(organization_id=world.org.id)).last_value == 1


async def test_an_invoice_whose_job_was_lost_is_queued_again_and_generated(world, redis, worker):
    await _costs(world.org, world.account, services=3)
    await close_period(world.org.id, SEPT, SYSTEM)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    # GENERATING, but its job never reached Redis (or Redis lost it).
    await transition(invoice.id, "GENERATE", SYSTEM)
    assert await requeue_stuck({"redis": redis}) == 0, "too recent to be stuck"
    await connections.get("default").execute_query(
        "UPDATE invoices SET updated_at = now() - $2::interval WHERE id = $1",
        [str(invoice.id), STUCK_AFTER + timedelta(seconds=5)],
    )
    assert await requeue_stuck({"redis": redis}) == 1
    await _eventually(lambda: Invoice.filter(id=invoice.id, status="AWAITING_APPROVAL").exists(), what="generation")
    assert await _revisions(invoice) == 1


async def test_an_invoice_generating_for_too_long_goes_to_error_with_a_message(world, redis):
    await close_period(world.org.id, SEPT, SYSTEM)
    late, recent = await Invoice.filter(organization_id=world.org.id).order_by("managed_account__name")
    for invoice in (late, recent):
        await transition(invoice.id, "GENERATE", SYSTEM)
    await connections.get("default").execute_query(
        "UPDATE invoices SET updated_at = now() - $2::interval WHERE id = $1",
        [str(late.id), GIVE_UP_AFTER + timedelta(minutes=1)],
    )

    assert await requeue_stuck({"redis": redis}) == 0
    failed = await Invoice.get(id=late.id)
    assert failed.status == "ERROR" and "did not finish in 30 minutes" in failed.error_message
    event = await InvoiceEvent.get(invoice_id=late.id, kind="FAILED")
    assert (event.from_status, event.to_status, event.actor_label) == ("GENERATING", "ERROR", "worker")
    assert event.detail == {"error": failed.error_message}
    assert await _status(recent) == "GENERATING"
    assert await redis.queued_jobs(queue_name=broker.QUEUE_NAME) == [], "nothing queued for either"


class HangingBrowser:
    """A browser that never finishes printing (what a stuck Chromium looks like to the job)."""

    async def render(self, html: str, *, group: object = None, page_label: str | None = None) -> bytes:
        await asyncio.Event().wait()


async def test_a_hanging_render_is_retried_then_ends_in_error_before_arq_cancels_it(
    world, redis, settings, monkeypatch
):
    import jobs.generate

    await _costs(world.org, world.account, services=2)
    await close_period(world.org.id, SEPT, SYSTEM)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    await transition(invoice.id, "GENERATE", SYSTEM)
    assert WorkerSettings.functions[0].timeout_s > jobs.generate.GENERATION_TIMEOUT.total_seconds()
    monkeypatch.setattr(jobs.generate, "GENERATION_TIMEOUT", timedelta(milliseconds=200))
    ctx = {"settings": settings, "redis": redis, "pdf": HangingBrowser()}

    # (wait_for: without the job's own limit these would hang, not fail)
    ids = [str(invoice.id)]
    assert await asyncio.wait_for(generate_invoices(ctx, ids), 10) == {ids[0]: "retrying"}
    assert await _status(invoice) == "GENERATING"
    (again,) = await redis.queued_jobs(queue_name=broker.QUEUE_NAME)
    assert (again.function, again.args) == (dispatch.GENERATE, (ids, 2))
    assert again.score > 1000 * datetime.now(UTC).timestamp() + 1000, "deferred by two seconds"
    # A job run again because its worker died counts that try too.
    assert await asyncio.wait_for(generate_invoices({**ctx, "job_try": 2}, ids, 2), 10) == {ids[0]: "retrying"}
    assert sorted(job.args[1] for job in await redis.queued_jobs(queue_name=broker.QUEUE_NAME)) == [2, 4]
    last_try = jobs.generate.MAX_TRIES
    assert await asyncio.wait_for(generate_invoices(ctx, ids, last_try), 10) == {ids[0]: "failed"}
    failed = await Invoice.get(id=invoice.id)
    assert failed.status == "ERROR" and "TimeoutError" in failed.error_message


# --- b. Fifty at once --------------------------------------------------------------------------


async def test_fifty_concurrent_generations_get_gapless_unique_numbers(client, redis, worker):
    org = await f.organization(name="Acme MSP", invoice_prefix="ACME")
    profile = await f.billing_profile(org)
    accounts = [await f.managed_account(org, name=f"Customer {n:02d}", billing_profile=profile) for n in range(50)]
    for account in accounts:
        await _costs(org, account, services=3, rows_per_service=2)
    owner = await f.token(await f.user(org, Scope.OWNER))
    closed = await gql(client, CLOSE, {"m": "2024-09"}, token=owner)
    assert closed["data"]["closeBillingPeriod"]["invoicesCreated"] == 50
    ids = [_gid(i) for i in await Invoice.filter(organization_id=org.id)]

    # Two owners' clicks at once, in opposite orders: every id is won by exactly one.
    first, second = await asyncio.gather(
        gql(client, BULK % "generateInvoices", {"ids": ids}, token=owner),
        gql(client, BULK % "generateInvoices", {"ids": ids[::-1]}, token=owner),
    )
    outcomes = {}
    for result in first["data"]["generateInvoices"]["results"] + second["data"]["generateInvoices"]["results"]:
        outcomes.setdefault(result["id"], []).append(result["error"]["code"] if result["error"] else "OK")
    assert {gid: sorted(codes) for gid, codes in outcomes.items()} == {gid: ["INVALID_TRANSITION", "OK"] for gid in ids}

    await _eventually(
        lambda: _none_but(org, "AWAITING_APPROVAL"), timeout=120, interval=0.2, what="all 50 to be generated"
    )
    invoices = await Invoice.filter(organization_id=org.id)
    (year,) = {i.issue_date.year for i in invoices}
    assert sorted(i.number for i in invoices) == [f"ACME-{year}-{n:04d}" for n in range(1, 51)]
    assert (await InvoiceNumberCounter.get(organization_id=org.id)).last_value == 50
    assert await InvoiceRevision.filter(invoice_id__in=[i.id for i in invoices]).count() == 50
    # Each click's invoices went in jobs of GENERATION_BATCH.
    won = [sum(result["error"] is None for result in click["data"]["generateInvoices"]["results"]) for click in (first, second)]
    jobs = sum(-(-n // dispatch.GENERATION_BATCH) for n in won)

    async def ended() -> bool:  # a job ends just after its invoices are stored
        return worker.jobs_complete + worker.jobs_retried + worker.jobs_failed >= jobs

    await _eventually(ended, timeout=10, interval=0.05, what="the jobs to end")
    assert worker.jobs_complete == jobs and worker.jobs_retried == worker.jobs_failed == 0


async def test_a_jobs_invoices_are_generated_together_each_with_its_own_outcome(redis, settings):
    from jobs.pdf import PdfRenderer

    org = await f.organization(name="Acme MSP", invoice_prefix="ACME")
    profile = await f.billing_profile(org)
    accounts = [
        await f.managed_account(org, name="Customer A", billing_profile=profile),
        # Billed in euros with no rate from its dollar costs: it fails, alone.
        await f.managed_account(org, name="Customer B", billing_profile=profile, currency="EUR"),
        await f.managed_account(org, name="Customer C", billing_profile=profile),
        await f.managed_account(org, name="Customer D", billing_profile=profile),
    ]
    for account in accounts:
        await _costs(org, account, services=3)
    await close_period(org.id, SEPT, SYSTEM)
    invoices = [await Invoice.get(managed_account_id=account.id) for account in accounts]
    for invoice in invoices[:3]:
        await transition(invoice.id, "GENERATE", SYSTEM)  # D stays READY_TO_INVOICE

    async with PdfRenderer(settings, batch_size=8) as renderer:
        ctx = {"settings": settings, "redis": redis, "pdf": renderer, "job_try": 1}
        outcomes = await generate_invoices(ctx, [str(invoice.id) for invoice in invoices])
    assert list(outcomes.values()) == ["generated", "failed", "generated", "nothing to do"]
    assert list(outcomes) == [str(invoice.id) for invoice in invoices]
    assert renderer.batches == 1  # printed together
    a, b, c, d = [await Invoice.get(id=invoice.id) for invoice in invoices]
    assert (a.status, b.status, c.status, d.status) == ("AWAITING_APPROVAL", "ERROR", "AWAITING_APPROVAL", "READY_TO_INVOICE")
    assert "No exchange rate from USD to EUR for 2024-09" in b.error_message and b.number is None
    year = a.issue_date.year
    assert (a.number, c.number) == (f"ACME-{year}-0001", f"ACME-{year}-0002")
    for invoice in (a, c):
        revision = await InvoiceRevision.get(id=invoice.current_revision_id)
        pdf = storage.load(settings, revision.pdf_path)
        assert invoice.number in pdf_text(pdf) and len(pdf) == revision.pdf_size
        assert revision.snapshot["customer"]["name"] == ("Customer A" if invoice is a else "Customer C")


async def _none_but(org, status) -> bool:
    return not await Invoice.filter(organization_id=org.id).exclude(status=status).exists()


# --- c, d. Sending and resending ---------------------------------------------------------------


async def _approved(client, world, owner, emails):
    """world.account's September invoice, generated and approved; its first e-mail attempted."""
    world.account.billing_emails = emails
    await world.account.save()
    await _costs(world.org, world.account, services=4)
    await gql(client, CLOSE, {"m": "2024-09"}, token=owner)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    await gql(client, BULK % "generateInvoices", {"ids": [_gid(invoice)]}, token=owner)
    await _eventually(lambda: Invoice.filter(id=invoice.id, status="AWAITING_APPROVAL").exists(), what="generation")
    approved = await gql(client, BULK % "approveInvoices", {"ids": [_gid(invoice)]}, token=owner)
    assert approved["data"]["approveInvoices"]["results"][0]["invoice"]["status"] == "APPROVED"
    await _eventually(lambda: Invoice.filter(id=invoice.id, delivery_status__in=["SENT", "FAILED"]).exists(), what="delivery")
    return await Invoice.get(id=invoice.id)


def _attachment(message, number) -> bytes:
    return next(p for p in message.walk() if p.get_filename() == f"{number}.pdf").get_payload(decode=True)


async def test_resend_emails_the_approved_invoice_again(client, world, worker, smtp, settings):
    _, mailbox = smtp
    owner = world.tokens["owner"]
    emails = ["ap@contoso.example", "cfo@contoso.example"]
    invoice = await _approved(client, world, owner, emails)
    assert len(mailbox.messages) == 1

    resent = await gql(client, RESEND, {"id": _gid(invoice)}, token=owner)
    assert resent["data"]["resendInvoice"] == {
        "__typename": "InvoiceResendQueued", "invoice": {"number": invoice.number, "deliveryStatus": "QUEUED"},
    }
    await _eventually(lambda: _sent_again(invoice, mailbox), what="the second e-mail")

    pdf = storage.load(settings, (await InvoiceRevision.get(id=invoice.current_revision_id)).pdf_path)
    assert len(mailbox.messages) == 2
    for recipients, message in mailbox.messages:
        assert sorted(recipients) == emails
        assert message["Subject"].split()[1] == invoice.number
        assert _attachment(message, invoice.number) == pdf

    shown = (await gql(client, TIMELINE, {"n": invoice.number}, token=owner))["data"]["invoice"]
    assert shown["deliveryStatus"] == "SENT"
    kinds = [event["kind"] for event in shown["timeline"]]
    resend_at = kinds.index("RESEND_REQUESTED")
    assert shown["timeline"][resend_at]["actor"] == world.users["owner"].email
    before, after = shown["timeline"][:resend_at], shown["timeline"][resend_at + 1:]
    for part in (before, after):
        sent = [e for e in part if e["kind"] == "SENT"]
        assert sorted(e["detail"]["recipient"] for e in sent) == emails
        assert {e["actor"] for e in sent} == {"mailer"}


async def _sent_again(invoice, mailbox) -> bool:
    return len(mailbox.messages) == 2 and await Invoice.filter(id=invoice.id, delivery_status="SENT").exists()


async def test_resend_refuses_what_is_not_approved_or_not_yours(client, world, redis):
    await close_period(world.org.id, SEPT, SYSTEM)
    ready = await Invoice.get(managed_account_id=world.account.id)
    october = await f.billing_period(world.org, date(2024, 10, 1))
    awaiting = await f.generated_invoice(world.other_account, october, number="INV-2024-0001")
    foreign_period = await f.billing_period(world.foreign_org, date(2024, 10, 1))
    foreign = await f.generated_invoice(world.foreign_account, foreign_period, number="INV-2024-0001", status="APPROVED")
    owner = world.tokens["owner"]

    for invoice in (ready, awaiting):
        refused = (await gql(client, RESEND, {"id": _gid(invoice)}, token=owner))["data"]["resendInvoice"]
        assert (refused["__typename"], refused["code"]) == ("InvalidTransitionError", "INVALID_TRANSITION")
    for token, invoice in ((owner, foreign), (world.tokens["foreign_owner"], awaiting)):
        missing = (await gql(client, RESEND, {"id": _gid(invoice)}, token=token))["data"]["resendInvoice"]
        assert (missing["__typename"], missing["code"]) == ("NotFoundError", "NOT_FOUND")
    for role in ("viewer", "customer", "other_customer"):
        forbidden = await gql(client, RESEND, {"id": _gid(foreign)}, token=world.tokens[role])
        assert forbidden["data"] is None and error_codes(forbidden) == ["FORBIDDEN"]
    assert await InvoiceEvent.filter(kind="RESEND_REQUESTED").count() == 0
    assert await redis.queued_jobs(queue_name=broker.QUEUE_NAME) == []


async def test_a_refused_recipient_is_recorded_and_the_other_still_gets_it(client, world, worker, smtp):
    _, mailbox = smtp
    mailbox.refused.add("gone@contoso.example")
    owner = world.tokens["owner"]
    invoice = await _approved(client, world, owner, ["ap@contoso.example", "gone@contoso.example"])

    assert [recipients for recipients, _ in mailbox.messages] == [["ap@contoso.example"]]
    shown = (await gql(client, TIMELINE, {"n": invoice.number}, token=owner))["data"]["invoice"]
    assert shown["deliveryStatus"] == "SENT"
    outcomes = {e["detail"]["recipient"]: e for e in shown["timeline"] if e["kind"] in ("SENT", "DELIVERY_FAILED")}
    assert outcomes["ap@contoso.example"]["kind"] == "SENT"
    assert outcomes["gone@contoso.example"]["kind"] == "DELIVERY_FAILED"
    assert outcomes["gone@contoso.example"]["detail"]["detail"].startswith("550")
    assert len(outcomes) == 2


# --- e. Who may drive the pipeline -------------------------------------------------------------

ROLES = ("owner", "viewer", "customer", "other_customer", "foreign_owner")
FORBIDDEN_ROLES = ("viewer", "customer", "other_customer")


async def _bulk(client, mutation, ids, token):
    result = await gql(client, BULK % mutation, {"ids": ids}, token=token)
    if result.get("data") is None:
        return error_codes(result)
    return [r["error"]["code"] if r["error"] else r["invoice"]["status"] for r in result["data"][mutation]["results"]]


async def _statuses(invoices) -> list[str]:
    return [await _status(invoice) for invoice in invoices]


@pytest.mark.parametrize("role", ROLES)
async def test_pipeline_mutations_scope_matrix(client, world, redis, role):
    token = world.tokens[role]
    closed = await gql(client, CLOSE, {"m": "2024-09"}, token=token)
    ours = Invoice.filter(organization_id=world.org.id)
    theirs = Invoice.filter(organization_id=world.foreign_org.id)
    if role == "owner":
        assert closed["data"]["closeBillingPeriod"] == {"__typename": "BillingPeriodClosed", "invoicesCreated": 2}
        assert (await ours.count(), await theirs.count()) == (2, 0)
    elif role == "foreign_owner":
        assert closed["data"]["closeBillingPeriod"] == {"__typename": "BillingPeriodClosed", "invoicesCreated": 1}
        assert (await ours.count(), await theirs.count()) == (0, 1)
        assert await BillingPeriod.filter(organization_id=world.org.id).count() == 0
    else:
        assert closed["data"] is None and error_codes(closed) == ["FORBIDDEN"]
        assert await Invoice.all().count() == 0 and await BillingPeriod.all().count() == 0

    await close_period(world.org.id, SEPT, SYSTEM)
    invoices = await ours.order_by("managed_account__name")
    ids = [_gid(i) for i in invoices]
    refused = ["FORBIDDEN"] if role in FORBIDDEN_ROLES else ["NOT_FOUND"] * 2

    generated = await _bulk(client, "generateInvoices", ids, token)
    assert generated == (["GENERATING"] * 2 if role == "owner" else refused)
    assert await _statuses(invoices) == (["GENERATING"] * 2 if role == "owner" else ["READY_TO_INVOICE"] * 2)

    for invoice in invoices:
        if await _status(invoice) == "READY_TO_INVOICE":
            await transition(invoice.id, "GENERATE", SYSTEM)
        await fail_generation(invoice.id, "No exchange rate.", SYSTEM)
    regenerated = await _bulk(client, "regenerateInvoices", ids, token)
    assert regenerated == (["GENERATING"] * 2 if role == "owner" else refused)
    assert await _statuses(invoices) == (["GENERATING"] * 2 if role == "owner" else ["ERROR"] * 2)

    october = await f.billing_period(world.org, date(2024, 10, 1))
    awaiting = [
        await f.generated_invoice(account, october, number=f"INV-2024-09{n}")
        for n, account in enumerate((world.account, world.other_account))
    ]
    approved = await _bulk(client, "approveInvoices", [_gid(i) for i in awaiting], token)
    assert approved == (["APPROVED"] * 2 if role == "owner" else refused)
    assert await _statuses(awaiting) == (["APPROVED"] * 2 if role == "owner" else ["AWAITING_APPROVAL"] * 2)

    queued = sorted(j.function for j in await redis.queued_jobs(queue_name=broker.QUEUE_NAME))
    assert queued == ([dispatch.GENERATE] * 2 + [dispatch.SEND] * 2 if role == "owner" else [])


async def test_the_test_worker_stops_cleanly_while_jobs_are_starting(settings, redis):
    """arq's close() cancels the jobs under way and waits for them; a job cancelled as it
    starts would raise its cancellation out of the tests' teardown (and pytest would then
    reuse the last test's fixtures for every test after it): tests.workers.running lets the
    jobs finish first and keeps a cancellation out of its caller."""
    import uuid

    from tests.workers import running

    for pause in (0, 0.02, 0.05, 0.1):
        async with running(redis, {"settings": settings}) as worker:
            await dispatch.enqueue_generation(redis, [uuid.uuid4() for _ in range(150)], batch=1)
            await asyncio.sleep(pause)
        assert worker.jobs_complete + worker.jobs_retried > 0
