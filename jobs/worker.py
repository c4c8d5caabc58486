"""The arq worker: its settings, start-up and the tasks it runs."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from arq import cron, func

from infra import db
from infra import broker
from infra import links
from infra.embedded import resolve_urls
from jobs import dispatch
from jobs.generate import GENERATION_TIMEOUT, generate_invoice, requeue_stuck
from jobs.imports import IMPORT_TIMEOUT_SECONDS, RUN_COST_IMPORT, run_cost_import
from jobs.overdue import mark_overdue_invoices
from jobs.pdf import PdfRenderer
from jobs.periods import close_due_periods
from jobs.send import notify_customer, send_invoice
from models.auth import purge_tokens
from infra.settings import get_settings

log = logging.getLogger(__name__)


async def startup(ctx: dict) -> None:
    settings = resolve_urls(get_settings())
    ctx["settings"] = settings
    await db.init(settings)
    # One warm browser per worker: starting Chromium costs far more than a render.
    ctx["pdf"] = PdfRenderer(settings)
    await ctx["pdf"].start()


async def shutdown(ctx: dict) -> None:
    if "pdf" in ctx:
        await ctx["pdf"].close()
    await db.close()


async def purge_old_tokens(ctx: dict) -> int:
    """Drop tokens that expired or were revoked more than 30 days ago (kept that long so
    that "token revoked" stays explainable in the meantime)."""
    removed = await purge_tokens(before=datetime.now(timezone.utc) - timedelta(days=30))
    log.info("purged %d old tokens", removed)
    return removed


async def purge_old_exports(ctx: dict) -> int:
    """Delete stored exports once their links have expired."""
    removed = links.purge_exports(ctx["settings"])
    log.info("purged %d old exports", removed)
    return removed


class WorkerSettings:
    # keep_result=0: a finished job leaves no result behind, so the invoice's next job may
    # reuse its id; while one is queued or running, the same id is refused.
    functions = [
        func(generate_invoice, name=dispatch.GENERATE, keep_result=0,
             timeout=GENERATION_TIMEOUT.total_seconds() + 30),
        func(send_invoice, name=dispatch.SEND, keep_result=0, timeout=120),
        func(notify_customer, name=dispatch.NOTIFY, keep_result=0, timeout=120),
        func(run_cost_import, name=RUN_COST_IMPORT, keep_result=0, timeout=IMPORT_TIMEOUT_SECONDS, max_tries=1),
    ]
    cron_jobs = [
        cron(purge_old_tokens, hour={3}, minute={17}, run_at_startup=False),
        cron(purge_old_exports, minute={0, 15, 30, 45}, run_at_startup=False),
        cron(close_due_periods, minute={5}, run_at_startup=True),
        cron(requeue_stuck, second={30}, run_at_startup=False),
        # Hourly rather than daily: midnight comes at a different hour in each organization's
        # time zone, and each invoice turns OVERDUE once, within the hour after its due day.
        cron(mark_overdue_invoices, minute={10}, run_at_startup=True),
    ]
    on_startup = startup
    on_shutdown = shutdown
    queue_name = broker.QUEUE_NAME
    health_check_key = broker.HEALTH_CHECK_KEY
    health_check_interval = broker.HEALTH_CHECK_SECONDS
    redis_settings = broker.redis_settings(resolve_urls(get_settings()))
