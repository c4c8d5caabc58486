"""The generation job: compute, number, render HTML, print the PDF, store the revision.

Failures a person must fix (no billing profile, no exchange rate) end in ERROR at once with
the reason; anything else, a generation that hangs past GENERATION_TIMEOUT included, is
retried with a growing delay, then ends in ERROR too. A job whose worker was killed stays in
Redis and arq runs it again once the job's claim lapses (`job_lease_seconds`, renewed while
its worker lives: jobs/worker.py); a sweeper re-enqueues invoices left GENERATING whose job
is gone (never queued, Redis down or emptied), so none stays stuck."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from arq import Retry
from tortoise.expressions import Q

from infra import storage
from jobs import effects
from jobs.rendering import TEMPLATE_VERSION, render_invoice_html
from jobs.xero import requeue_stalled_pushes
from models.costs import CostImport, CostImportState
from models.credit_notes import CreditNote
from models.errors import DomainError
from models.invoices import DeliveryStatus, Invoice, InvoiceStatus
from models.invoices.actions import fail_generation
from models.invoices.generation import build_view, compute, load_context, load_invoice, store_revision
from models.invoices.lifecycle import Actor
from models.invoices.numbering import ensure_number
from models.invoices.tables import InvoiceRevision

log = logging.getLogger(__name__)
WORKER = Actor.system("worker")
MAX_TRIES = 4
# What the sweeper waits for when the worker's settings do not say (`stuck_after_seconds`).
STUCK_AFTER = timedelta(minutes=1)
GIVE_UP_AFTER = timedelta(minutes=30)
# Shorter than the job's arq timeout (jobs/worker.py), so that our error path runs first.
GENERATION_TIMEOUT = timedelta(seconds=90)


async def generate_invoice(ctx: dict, invoice_id: str) -> str:
    invoice = await load_invoice(invoice_id)
    if invoice is None or invoice.status != InvoiceStatus.GENERATING:
        return "nothing to do"
    try:
        # Inside arq's own timeout: arq cancels a job at its limit without our error path, so a
        # generation that hangs (a stuck browser) stops here first and is retried or ends in ERROR.
        async with asyncio.timeout(GENERATION_TIMEOUT.total_seconds()):
            return await _generate(ctx, invoice_id, invoice)
    except DomainError as exc:
        await _fail(ctx, invoice_id, exc.message)
        return "failed"
    except Exception as exc:
        if ctx.get("job_try", 1) < MAX_TRIES:
            log.warning("generating %s failed (try %s), retrying: %r", invoice_id, ctx.get("job_try"), exc)
            raise Retry(defer=2 * ctx.get("job_try", 1)) from exc
        log.exception("generating %s failed for good", invoice_id)
        await _fail(
            ctx, invoice_id,
            f"Generation failed {MAX_TRIES} times ({type(exc).__name__}). Regenerate to try "
            "again; if it keeps failing, the worker's log has the details.",
        )
        return "failed"


async def _generate(ctx: dict, invoice_id: str, invoice: Invoice) -> str:
    gen = await load_context(invoice_id, invoice)
    draft = await compute(gen)
    assert draft.issue_date is not None, "a computed draft has its dates"
    number = await ensure_number(invoice_id, draft.issue_date.year)
    view = build_view(gen, draft, number, TEMPLATE_VERSION)
    # Printed with other invoices of its organization when several wait (jobs/pdf.py).
    pdf = await ctx["pdf"].render(render_invoice_html(view), group=str(gen.organization.id))
    revision = await InvoiceRevision.filter(invoice_id=invoice_id).count() + 1
    path = f"invoices/{gen.organization.id}/{number}-r{revision}.pdf"
    # Off the event loop: an fsync that waits for the disk would stall every other job's
    # queries and renders.
    sha256 = await asyncio.to_thread(storage.save, ctx["settings"], path, pdf)
    stored = await store_revision(
        invoice_id, draft, view, {"path": path, "sha256": sha256, "size": len(pdf)}, WORKER
    )
    if not stored:
        return "superseded"
    await effects.invoice_ids_changed(ctx["redis"], [invoice_id])
    return "generated"


async def _fail(ctx: dict, invoice_id: Any, message: str) -> None:
    if failed := await fail_generation(invoice_id, message, WORKER):
        await effects.invoices_changed(ctx["redis"], [failed])


async def requeue_stuck(ctx: dict) -> int:
    """The sweeper: queue again the work that committed states imply but arq does not hold
    (jobs/effects.py tells why a job can be missing). Invoices GENERATING, approved invoices
    whose delivery is QUEUED, cost imports and Xero pushes QUEUED and credit notes without their PDF or with
    their e-mail QUEUED, each for a while (a writer queues its job
    right after its commit), get their job unless it is queued or running; one generating for
    half an hour goes to ERROR instead of looping. Answers how many invoices were GENERATING."""
    now = datetime.now(UTC)
    settings = ctx.get("settings")
    stuck_after = timedelta(seconds=settings.stuck_after_seconds) if settings else STUCK_AFTER
    stuck = Invoice.filter(status=InvoiceStatus.GENERATING)
    for invoice_id in await stuck.filter(updated_at__lt=now - GIVE_UP_AFTER).values_list("id", flat=True):
        await _fail(ctx, invoice_id, "Generation did not finish in 30 minutes. Regenerate to try again.")
    ids = await stuck.filter(updated_at__lt=now - stuck_after).values_list("id", flat=True)
    await effects.generation_stalled(ctx["redis"], ids)
    unsent = await Invoice.filter(
        status=InvoiceStatus.APPROVED, delivery_status=DeliveryStatus.QUEUED, updated_at__lt=now - stuck_after
    )
    await effects.delivery_stalled(ctx["redis"], unsent)
    imports = await CostImport.filter(
        state=CostImportState.QUEUED, created_at__lt=now - stuck_after
    ).values_list("id", flat=True)
    await effects.cost_import_stalled(ctx["redis"], imports)
    credit_notes = await CreditNote.filter(
        Q(pdf_path__isnull=True) | Q(delivery_status=DeliveryStatus.QUEUED), created_at__lt=now - stuck_after
    ).values_list("id", flat=True)
    await effects.credit_note_stalled(ctx["redis"], credit_notes)
    await requeue_stalled_pushes(ctx["redis"], stuck_after)
    if ids or unsent or imports or credit_notes:
        log.info("sweeper: %d generating, %d deliveries, %d imports, %d credit notes checked",
                 len(ids), len(unsent), len(imports), len(credit_notes))
    return len(ids)
