"""The month-end job: close each organization's previous month when it is due, and push its
approved invoices to Xero when it asks for that at rollover."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from jobs.effects import runs_effects
from jobs.xero import push_at_rollover
from models.actors import Actor
from models.billing_periods import close_period, periods_to_close
from models.invoices.actions import auto_send_due

log = logging.getLogger(__name__)
SCHEDULER = Actor.system("scheduler")


@runs_effects
async def close_due_periods(ctx: dict, now: datetime | None = None) -> int:
    """Close every month that has ended in its organization's time zone (`now` defaults to
    the current time) and whose cost data is complete, or whose latest close day has come:
    then it closes early, recorded as the scheduler's. Auto-invoiced accounts' invoices start
    generating."""
    created = 0
    for organization_id, month in await periods_to_close(now or datetime.now(UTC)):
        ids = await close_period(organization_id, month, SCHEDULER, force=True)
        log.info("closed %s for organization %s: %d invoices ready", month, organization_id, len(ids))
        created += len(ids)
        pushed = await push_at_rollover(ctx["redis"], organization_id, SCHEDULER)
        if pushed:
            log.info("organization %s: %d approved invoices queued for Xero at rollover", organization_id, pushed)
    return created


@runs_effects
async def send_due_invoices(ctx: dict, now: datetime | None = None) -> int:
    """Approve and send auto-invoiced invoices whose review time is over."""
    approved = await auto_send_due(now or datetime.now(UTC))
    if approved:
        log.info("%d auto-invoiced invoices approved and sent", len(approved))
    return len(approved)
