"""The arq worker: its settings, start-up and the tasks it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

from arq import cron, func
from arq.constants import in_progress_key_prefix, retry_key_prefix
from arq.worker import Worker, get_kwargs

from infra import broker, db, links, log_context, metrics, storage
from infra.embedded import resolve_urls
from infra.settings import Settings, get_settings
from jobs import dispatch
from jobs.cost_sources import sync_cost_source, sync_due_cost_sources
from jobs.credit_notes import issue_credit_note
from jobs.effects import runs_effects
from jobs.generate import GENERATION_TIMEOUT, GENERATIONS_AT_ONCE, GIVE_UP_AFTER, generate_invoices, requeue_stuck
from jobs.imports import IMPORT_TIMEOUT_SECONDS, IMPORTS_AT_ONCE, run_cost_import
from jobs.invitations import send_invitation
from jobs.overdue import mark_overdue_invoices
from jobs.pdf import PdfRenderer
from jobs.periods import close_due_periods, send_due_invoices
from jobs.reminders import queue_due_reminders, send_reminder
from jobs.send import notify_customer, send_invoice
from jobs.statements import print_statement
from jobs.void_copies import print_void_copy
from jobs.webhooks import OtherJobs, deliver_webhooks, notify_webhook_disabled, sweep_webhooks
from jobs.xero import poll_xero_payments, push_to_xero, read_xero_payments, revoke_xero_tokens
from models.auth import purge_tokens
from models.idempotency import purge_keys

log = logging.getLogger(__name__)


async def startup(ctx: dict) -> None:
    # `invoicing worker` hands over its resolved settings; `arq jobs.worker.WorkerSettings` none.
    settings = ctx.get("settings") or resolve_urls(get_settings())
    ctx["settings"] = settings
    await db.init(settings)
    ctx.update(await shared(settings))
    if settings.worker_metrics_port is not None:
        ctx["metrics"] = metrics.MetricsServer(settings, ctx.get("redis"))
        await ctx["metrics"].start()


async def shared(settings: Settings) -> dict[str, Any]:
    """What a worker's jobs share: one warm browser (starting Chromium costs far more than a
    render), and the turns of generation jobs and cost imports."""
    renderer = PdfRenderer(settings, batch_size=settings.pdf_batch_size)
    await renderer.start()
    return {
        "pdf": renderer,
        "generations": asyncio.Semaphore(GENERATIONS_AT_ONCE),
        "imports": asyncio.Semaphore(IMPORTS_AT_ONCE),
        # The jobs running now but the webhook lanes' (the lanes wait for it to run none).
        "other_jobs": OtherJobs(),
    }


async def shutdown(ctx: dict) -> None:
    if "pdf" in ctx:
        await ctx["pdf"].close()
    if "metrics" in ctx:
        await ctx["metrics"].stop()
    await db.close()


async def claim_job(ctx: dict) -> None:
    """Shorten arq's claim on the job that starts to `job_lease_seconds`, renewed while this
    worker lives. arq claims a job for the longest job timeout plus 10 s (four hours here, for
    cost imports): a killed worker's jobs would wait that long before another worker ran them."""
    # arq's own lines of the job (its start and end) carry its id: this runs in its task.
    log_context.mark(job_id=ctx["job_id"])
    if _other_job(ctx):
        ctx["other_jobs"].started(ctx["job_id"])
    settings = ctx.get("settings")
    if settings is None or "redis" not in ctx:
        return
    ctx["lease"] = asyncio.create_task(
        _renew(ctx["redis"], in_progress_key_prefix + ctx["job_id"], settings.job_lease_seconds)
    )


async def end_job(ctx: dict) -> None:
    """The job returned, failed or was cancelled (arq has yet to record it): the webhook lanes
    go on if it was the last other job. Here rather than once arq removed its claim, which
    may fail (Redis down) and leave the lanes waiting."""
    if _other_job(ctx):
        ctx["other_jobs"].ended(ctx["job_id"])


async def release_job(ctx: dict) -> None:
    """The job ended (arq removed its claim): stop renewing it. A job that the worker's stop
    cut short stays queued for another worker (arq's doing), and this try is not counted
    against it: a cost import, tried once, runs again in full."""
    if lease := ctx.pop("lease", None):
        lease.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lease
    stopping = ctx.get("stopping")
    if stopping is not None and stopping.is_set() and "redis" in ctx:
        if await ctx["redis"].zscore(broker.QUEUE_NAME, ctx["job_id"]) is not None:
            await ctx["redis"].decr(retry_key_prefix + ctx["job_id"])
            log.info("job %s handed back to the queue", ctx["job_id"])


def _other_job(ctx: dict) -> bool:
    """A job the webhook lanes yield to: any but theirs and their sweeper's."""
    job_id = str(ctx.get("job_id", ""))
    return "other_jobs" in ctx and not job_id.startswith((dispatch.WEBHOOKS, f"cron:{sweep_webhooks.__name__}"))


async def _renew(redis: Any, key: str, lease_seconds: float) -> None:
    """Keep the claim `lease_seconds` long until it is gone (the job ended) or this task is
    cancelled. A renewal that fails (Redis down) is tried again; the claim may lapse meanwhile,
    and a job run twice is harmless: every job checks its row's state first."""
    while True:
        try:
            if not await redis.pexpire(key, int(lease_seconds * 1000)):
                return
        except Exception as exc:  # Redis unreachable: the worker's own loop will notice
            log.warning("could not renew the claim %s: %r", key, exc)
        await asyncio.sleep(lease_seconds / 3)


@runs_effects
async def purge_old_tokens(ctx: dict) -> int:
    """Drop tokens that expired or were revoked more than 30 days ago (kept that long so
    that "token revoked" stays explainable in the meantime), and expired idempotency keys."""
    removed = await purge_tokens(before=datetime.now(UTC) - timedelta(days=30))
    keys = await purge_keys()
    log.info("purged %d old tokens and %d expired idempotency keys", removed, keys)
    return removed


@runs_effects
async def purge_old_exports(ctx: dict) -> int:
    """Delete stored exports once their links have expired."""
    removed = await asyncio.to_thread(links.purge_exports, ctx["settings"])
    log.info("purged %d old exports", removed)
    return removed


@runs_effects
async def purge_old_deliveries(ctx: dict) -> int:
    """Delete uploaded cost deliveries' files once their retention has passed."""
    removed = await asyncio.to_thread(storage.purge_deliveries, ctx["settings"])
    log.info("purged %d old cost deliveries", removed)
    return removed


class WorkerSettings:
    """What every worker runs. Inert: the Redis to serve is added by `worker_settings()`."""

    # keep_result=0: a finished job leaves no result behind, so the invoice's next job may
    # reuse its id; while one is queued or running, the same id is refused. A generation job
    # may wait for its turn (GENERATIONS_AT_ONCE) before its own GENERATION_TIMEOUT starts.
    functions = [
        func(generate_invoices, name=dispatch.GENERATE, keep_result=0,
             timeout=GIVE_UP_AFTER.total_seconds() + GENERATION_TIMEOUT.total_seconds()),
        func(send_invoice, name=dispatch.SEND, keep_result=0, timeout=120),
        func(notify_customer, name=dispatch.NOTIFY, keep_result=0, timeout=120),
        func(send_invitation, name=dispatch.INVITE, keep_result=0, timeout=120),
        func(send_reminder, name=dispatch.REMIND, keep_result=0, timeout=120),
        func(issue_credit_note, name=dispatch.CREDIT_NOTE, keep_result=0, timeout=180),
        func(print_void_copy, name=dispatch.VOID_COPY, keep_result=0, timeout=180),
        func(print_statement, name=dispatch.STATEMENT, keep_result=0, timeout=180),
        func(run_cost_import, name=dispatch.COST_IMPORT, keep_result=0, timeout=IMPORT_TIMEOUT_SECONDS, max_tries=1),
        # A sync imports its new deliveries one after another; a failing source waits for the next.
        func(sync_cost_source, name=dispatch.COST_SOURCE_SYNC, keep_result=0, timeout=4 * IMPORT_TIMEOUT_SECONDS, max_tries=1),
        # The job itself stops retrying after `xero_push_tries` (a setting); arq's cap is above it.
        func(push_to_xero, name=dispatch.XERO_PUSH, keep_result=0, timeout=300, max_tries=50),
        func(revoke_xero_tokens, name=dispatch.XERO_REVOKE, keep_result=0, timeout=120, max_tries=10),
        func(read_xero_payments, name=dispatch.XERO_PAYMENTS, keep_result=0, timeout=300, max_tries=1),
        # A lane runs while deliveries are due (jobs/webhooks.py); one fixed id per lane.
        func(deliver_webhooks, name=dispatch.WEBHOOKS, keep_result=0, timeout=3600, max_tries=1),
        func(notify_webhook_disabled, name=dispatch.WEBHOOK_DISABLED, keep_result=0, timeout=120, max_tries=3),
    ]
    cron_jobs = [
        cron(purge_old_tokens, hour={3}, minute={17}, run_at_startup=False),
        cron(purge_old_exports, minute={0, 15, 30, 45}, run_at_startup=False),
        cron(purge_old_deliveries, minute={40}, run_at_startup=False),
        cron(close_due_periods, minute={5}, run_at_startup=True),
        cron(requeue_stuck, second={0, 30}, run_at_startup=True),
        # Hourly rather than daily: midnight comes at a different hour in each organization's
        # time zone, and each invoice turns OVERDUE once, within the hour after its due day.
        cron(mark_overdue_invoices, minute={10}, run_at_startup=True),
        # Every minute: a review period ends at any time of day.
        cron(send_due_invoices, second={15}, run_at_startup=True),
        # Hourly too, for the same reason; after the overdue marking.
        cron(queue_due_reminders, minute={20}, run_at_startup=True),
        # Payments made in Xero come back as payments of ours within a quarter of an hour.
        cron(poll_xero_payments, minute={2, 17, 32, 47}, run_at_startup=False),
        # Each source is synced COST_SOURCE_SYNC_HOURS after its last sync; a failing one sooner.
        cron(sync_due_cost_sources, minute={10, 25, 40, 55}, run_at_startup=False),
        # Retries fall due at any second: lanes start within ten seconds of it.
        cron(sweep_webhooks, second=set(range(0, 60, 10)), run_at_startup=True),
    ]
    # Generation jobs waiting for their turn beside those generating (jobs/generate.py), with
    # room for other work, and a free slot taken within 50 ms rather than arq's 0.5 s poll: a
    # month close is paced by how soon the next invoices start (bench/month_close.py). Cost
    # imports take two of them at most.
    max_jobs = 12
    poll_delay = 0.05
    on_startup = startup
    on_shutdown = shutdown
    on_job_start = claim_job
    on_job_end = end_job
    after_job_end = release_job
    queue_name = broker.QUEUE_NAME
    health_check_key = broker.HEALTH_CHECK_KEY
    health_check_interval = broker.HEALTH_CHECK_SECONDS


def worker_settings(settings: Settings) -> dict[str, Any]:
    """arq's settings for a worker on these settings (their URLs resolved). A dict, not a
    subclass: arq reads a settings class's own `__dict__`, so a subclass would lose the rest."""
    own = {name: value for name, value in vars(WorkerSettings).items() if not name.startswith("__")}
    sweeps = set(range(0, 60, settings.sweep_every_seconds))
    own["cron_jobs"] = [
        cron(requeue_stuck, second=sweeps, run_at_startup=True) if job.coroutine is requeue_stuck else job
        for job in own["cron_jobs"]
    ]
    own["max_jobs"] = settings.worker_max_jobs
    return {**own, "redis_settings": broker.redis_settings(settings), "ctx": {"settings": settings}}


class StoppingWorker(Worker):
    """arq's worker, telling its jobs' ends (`release_job`) that it is stopping."""

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        self.ctx["stopping"].set()
        super().handle_sig_wait_for_completion(signum)


def claiming_worker(settings: Settings) -> Worker:
    """arq's worker on these settings, claiming each job for `job_lease_seconds` from the
    start (`claim_job` then renews it): a worker killed between taking a job and starting it
    must not hold it for arq's four hours either. On SIGTERM (or SIGINT) it takes no more
    jobs, lets those it runs finish for `worker_stop_seconds`, hands back the others and exits."""
    own = worker_settings(settings)
    own["ctx"] = {**own["ctx"], "stopping": asyncio.Event()}
    options: dict[str, Any] = dict(get_kwargs(own))
    worker = StoppingWorker(**options, job_completion_wait=settings.worker_stop_seconds)
    worker.in_progress_timeout_s = settings.job_lease_seconds
    return worker
