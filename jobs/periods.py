"""The month-end job: close each organization's previous month when it is due, and push its
approved invoices to Xero when it asks for that at rollover."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from jobs import effects
from jobs.xero import push_at_rollover
from models.billing_periods import close_period, periods_to_close
from models.invoices.lifecycle import Actor

log = logging.getLogger(__name__)
SCHEDULER = Actor.system("scheduler")


async def close_due_periods(ctx: dict) -> int:
    created = 0
    for organization_id, month in await periods_to_close(datetime.now(UTC)):
        ids = await close_period(organization_id, month, SCHEDULER)
        await effects.invoice_ids_changed(ctx["redis"], ids)
        log.info("closed %s for organization %s: %d invoices ready", month, organization_id, len(ids))
        created += len(ids)
        pushed = await push_at_rollover(ctx["redis"], organization_id, SCHEDULER)
        if pushed:
            log.info("organization %s: %d approved invoices queued for Xero at rollover", organization_id, pushed)
    return created
