"""The overdue job: invoices whose due date has passed in their organization's time zone
become OVERDUE."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from jobs.effects import runs_effects
from jobs.periods import SCHEDULER
from models.payments import mark_overdue

log = logging.getLogger(__name__)


@runs_effects
async def mark_overdue_invoices(ctx: dict, now: datetime | None = None) -> int:
    """Idempotent: an invoice already OVERDUE (or paid, refunded, voided) is left alone.
    `now` defaults to the current time."""
    changed = await mark_overdue(now or datetime.now(UTC), SCHEDULER)
    if changed:
        log.info("%d invoices are now overdue", len(changed))
    return len(changed)
