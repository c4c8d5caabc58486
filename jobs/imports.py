"""The background import of a registered cost delivery."""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any

from infra import metrics, storage
from infra.settings import Settings
from jobs.effects import runs_effects
from models.costs import ImportReport, run_import
from models.errors import CostFileRejected, DomainError

log = logging.getLogger(__name__)

# A 10-million-row month takes minutes; the whole import is one transaction.
IMPORT_TIMEOUT_SECONDS = 4 * 3600


# Imports a worker runs at once; more wait for a turn. Each holds a large file's batches in
# memory and a core busy, while the worker runs dozens of jobs at once for a month close.
IMPORTS_AT_ONCE = 2


@runs_effects
async def run_cost_import(ctx: dict, cost_import_id: str) -> dict:
    """Run the delivery's import. A refused delivery is a result, not a retry: the import
    ends FAILED with its reason, which a later identical run would give again."""
    try:
        async with ctx.get("imports") or contextlib.nullcontext():
            report = await counted_import(cost_import_id, ctx["settings"])
    except CostFileRejected as refused:
        log.info("cost import %s refused: %s", cost_import_id, refused.message)
        return {"state": "FAILED", "message": refused.message}
    except DomainError as error:
        log.info("cost import %s not run: %s", cost_import_id, error)
        return {"state": "SKIPPED", "message": str(error)}
    return {"state": "DONE", "rows": report.rows}


async def counted_import(cost_import_id: Any, settings: Settings) -> ImportReport:
    """`run_import` of a delivery in storage, its rows and time counted by outcome (an upload's
    and a sync's alike)."""
    timer, outcome = metrics.Timer(), "failed"
    try:
        report = await run_import(cost_import_id, fetch=functools.partial(storage.local_copy, settings))
        outcome = "done"
    except DomainError as error:
        outcome = "failed" if isinstance(error, CostFileRejected) else "skipped"
        raise
    finally:
        metrics.COST_IMPORTS.labels(outcome).observe(timer.seconds)
    metrics.COST_IMPORT_ROWS.inc(report.rows)
    return report
