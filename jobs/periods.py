"""The month-end job: close each organization's previous month when it is due."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from jobs import effects
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
    return created
