"""The generation job: compute, number, render HTML, print the PDF, store the revision.

Jobs that run at the same time are generated together (`Generations`): a month's invoices
are read, numbered and stored with a few statements per batch rather than a dozen per invoice,
and printed several per Chromium print job; each job keeps its own outcome.

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
from models.invoices.generation import (
    Generated,
    build_view,
    computed,
    fetch_inputs,
    load_contexts,
    load_invoices,
    revision_counts,
    store_revisions,
)
from models.invoices.lifecycle import Actor
from models.invoices.numbering import ensure_numbers

log = logging.getLogger(__name__)
WORKER = Actor.system("worker")
MAX_TRIES = 4
# What the sweeper waits for when the worker's settings do not say (`stuck_after_seconds`).
STUCK_AFTER = timedelta(minutes=1)
GIVE_UP_AFTER = timedelta(minutes=30)
# Shorter than the job's arq timeout (jobs/worker.py), so that our error path runs first.
GENERATION_TIMEOUT = timedelta(seconds=90)


async def generate_invoice(ctx: dict, invoice_id: str) -> str:
    try:
        return await generations(ctx).generate(ctx, invoice_id)
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


def generations(ctx: dict) -> Generations:
    """The worker's generations (made at its start-up), or one for this job alone."""
    return ctx.get("generations") or Generations(batch_size=1)


class Generations:
    """Generates together the invoices whose jobs run at the same time: the jobs that start
    within `wait` seconds of each other (up to `batch_size`) are loaded, computed, numbered
    and stored with a few statements for all of them, and printed together (jobs/pdf.py).
    Each job still gets its own outcome: an invoice that cannot be generated fails alone.
    A batch runs under GENERATION_TIMEOUT, inside arq's own timeout, so that a generation that
    hangs (a stuck browser) stops there first and each of its jobs is retried or ends in ERROR."""

    def __init__(self, batch_size: int = 16, wait: float = 0.1) -> None:
        self.batch_size = batch_size
        self.wait = wait
        self.batches = 0
        self._waiting: list[tuple[str, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    async def generate(self, ctx: dict, invoice_id: Any) -> str:
        """What became of the invoice: "generated", "superseded" (regenerated meanwhile) or
        "nothing to do" (not GENERATING); raises what made it fail."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((str(invoice_id), future))
        if len(self._waiting) >= self.batch_size:
            self._start(ctx)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.wait, self._start, ctx)
        return await future

    def _start(self, ctx: dict) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            batch, self._waiting = self._waiting[:self.batch_size], self._waiting[self.batch_size:]
            task = asyncio.create_task(self._run(ctx, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, ctx: dict, batch: list[tuple[str, asyncio.Future]]) -> None:
        self.batches += 1
        try:
            async with asyncio.timeout(GENERATION_TIMEOUT.total_seconds()):
                outcomes = await _generate(ctx, [invoice_id for invoice_id, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


async def _generate(ctx: dict, ids: list[str]) -> list[str | BaseException]:
    """Generate the invoices that are GENERATING among `ids`: each one's outcome, in order."""
    outcomes: dict[str, str | BaseException] = dict.fromkeys(ids, "nothing to do")
    invoices = [
        invoice for invoice in await load_invoices(list(dict.fromkeys(ids)))
        if invoice.status == InvoiceStatus.GENERATING
    ]
    contexts = []
    for invoice, found in zip(invoices, await load_contexts(invoices), strict=True):
        if isinstance(found, DomainError):
            outcomes[str(invoice.id)] = found
        else:
            contexts.append(found)
    await fetch_inputs(contexts)
    drafts = []
    for gen in contexts:
        try:
            drafts.append((gen, computed(gen)))
        except DomainError as exc:
            outcomes[str(gen.invoice.id)] = exc
    numbers = await ensure_numbers([(gen.invoice.id, draft.issue_date.year) for gen, draft in drafts if draft.issue_date])
    revisions = await revision_counts([gen.invoice.id for gen, _ in drafts])
    printing = []
    for gen, draft in drafts:
        try:
            view = build_view(gen, draft, numbers[str(gen.invoice.id)], TEMPLATE_VERSION)
        except DomainError as exc:
            outcomes[str(gen.invoice.id)] = exc
            continue
        path = f"invoices/{gen.organization.id}/{view['number']}-r{revisions.get(gen.invoice.id, 0) + 1}.pdf"
        printing.append((gen, draft, view, path))
    # Printed with other invoices of their organization (jobs/pdf.py).
    pdfs = await asyncio.gather(
        *(ctx["pdf"].render(render_invoice_html(view), group=str(gen.organization.id)) for gen, _, view, _ in printing),
        return_exceptions=True,
    )
    printed = []
    for (gen, draft, view, path), pdf in zip(printing, pdfs, strict=True):
        if isinstance(pdf, BaseException):
            outcomes[str(gen.invoice.id)] = pdf
        else:
            printed.append(Generated(gen.invoice.id, draft, view, {"path": path, "size": len(pdf), "pdf": pdf}))
    # Off the event loop: an fsync that waits for the disk would stall every other job's
    # queries and renders.
    await asyncio.to_thread(_save, ctx["settings"], printed)
    stored = await store_revisions(printed, WORKER)
    for one, outcome in zip(printed, stored, strict=True):
        outcomes[str(one.invoice_id)] = outcome if isinstance(outcome, BaseException) else (
            "superseded" if outcome is None else "generated"
        )
    await effects.invoice_ids_changed(
        ctx["redis"], [one.invoice_id for one, outcome in zip(printed, stored, strict=True) if isinstance(outcome, Invoice)]
    )
    return [outcomes[invoice_id] for invoice_id in ids]


def _save(settings: Any, printed: list[Generated]) -> None:
    """Store each PDF, recording its SHA-256 in place of its bytes."""
    for one in printed:
        one.pdf["sha256"] = storage.save(settings, one.pdf["path"], one.pdf.pop("pdf"))


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
