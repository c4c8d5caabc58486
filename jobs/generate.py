"""The generation job: compute, number, render HTML, print the PDF, store the revision.

A job carries up to GENERATION_BATCH invoices (jobs/dispatch.py), generated together: read,
numbered and stored with a few statements for all of them rather than a dozen each, printed
several per Chromium print job; each invoice keeps its own outcome.

Failures a person must fix (no billing profile, no exchange rate) end in ERROR at once with
the reason; anything else, a generation that hangs past GENERATION_TIMEOUT included, is
queued again with a growing delay, then ends in ERROR too. A job whose worker was killed stays in
Redis and arq runs it again once the job's claim lapses (`job_lease_seconds`, renewed while
its worker lives: jobs/worker.py); a sweeper re-enqueues invoices left GENERATING whose job
is gone (never queued, Redis down or emptied), so none stays stuck."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import Q

from infra import storage
from jobs import dispatch
from jobs.effects import runs_effects
from jobs.invoice_templates import render_own
from jobs.locales import page_label
from jobs.rendering import TEMPLATE_VERSION, render_invoice_html
from jobs.xero import requeue_stalled_pushes
from models.actors import Actor
from models.costs import CostImport, CostImportState
from models.credit_notes import CreditNote
from models.errors import DomainError, GenerationFailed, TemplateRejected
from models.invoice_templates import InvoiceTemplate, active_templates
from models.invoices import DeliveryStatus, Invoice, InvoiceStatus
from models.invoices.actions import fail_generation
from models.invoices.generation.compute import computed
from models.invoices.generation.inputs import fetch_inputs, load_contexts, load_invoices, revision_counts
from models.invoices.generation.store import Generated, store_revisions
from models.invoices.generation.view import build_view
from models.invoices.numbering import ensure_numbers
from models.outbox import Entity, Transition, record

log = logging.getLogger(__name__)
WORKER = Actor.system("worker")
MAX_TRIES = 4
# What the sweeper waits for when the worker's settings do not say (`stuck_after_seconds`).
STUCK_AFTER = timedelta(minutes=1)
GIVE_UP_AFTER = timedelta(minutes=30)
# A job's time once its turn came (shorter than arq's timeout, jobs/worker.py, so that our own
# error path runs first).
GENERATION_TIMEOUT = timedelta(seconds=90)
# Generation jobs a worker runs at a time: one printed while the next is read and stored.
GENERATIONS_AT_ONCE = 3


@runs_effects
async def generate_invoices(ctx: dict, invoice_ids: list[str], tries: int = 1) -> dict[str, str]:
    """Generate a job's invoices together (dispatch.enqueue_generation queues them
    GENERATION_BATCH at a time): what became of each, "generated", "superseded" (regenerated
    meanwhile), "nothing to do" (not GENERATING), "failed" (ERROR, with the reason) or
    "retrying". An invoice that cannot be generated fails alone; those whose failure may pass
    (the whole batch's, when printing hangs past GENERATION_TIMEOUT) are queued again, in a
    job of their own, until their MAX_TRIES-th try. `tries` counts this one; a job run again
    because its worker died counts once more."""
    tries += ctx.get("job_try", 1) - 1
    # A worker generates GENERATIONS_AT_ONCE jobs at a time (jobs/worker.py): the time limit
    # starts with this job's turn.
    async with ctx.get("generations") or contextlib.nullcontext():
        try:
            async with asyncio.timeout(GENERATION_TIMEOUT.total_seconds()):
                outcomes = await _generate(ctx, invoice_ids)
        except Exception as exc:
            outcomes = [exc] * len(invoice_ids)
    results: dict[str, str] = {}
    again = []
    for invoice_id, outcome in zip(invoice_ids, outcomes, strict=True):
        if isinstance(outcome, str):
            results[invoice_id] = outcome
        elif isinstance(outcome, DomainError):
            await fail_generation(invoice_id, outcome.message, WORKER)
            results[invoice_id] = "failed"
        elif tries < MAX_TRIES:
            log.warning("generating %s failed (try %s), retrying: %r", invoice_id, tries, outcome)
            again.append(invoice_id)
            results[invoice_id] = "retrying"
        else:
            log.error("generating %s failed for good", invoice_id, exc_info=outcome)
            await fail_generation(
                invoice_id,
                f"Generation failed {MAX_TRIES} times ({type(outcome).__name__}). Regenerate to try "
                "again; if it keeps failing, the worker's log has the details.", WORKER,
            )
            results[invoice_id] = "failed"
    if again:
        await dispatch.retry_generation(ctx["redis"], again, tries + 1, 2 * tries)
    return results


async def _generate(ctx: dict, ids: list[str]) -> list[str | BaseException]:
    """Generate the invoices that are GENERATING among `ids`: each one's outcome, in order.
    They are read, numbered and stored with a few statements for all of them, and printed
    several per Chromium print job (jobs/pdf.py)."""
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
    computations = []
    for gen in contexts:
        try:
            computations.append((gen, computed(gen)))
        except DomainError as exc:
            outcomes[str(gen.invoice.id)] = exc
        # Between two invoices' work the event loop runs: the browser's answers to the other
        # jobs' print jobs get through, so its pages are handed their next one without delay.
        await asyncio.sleep(0)
    numbers = await ensure_numbers(
        [(gen.invoice.id, computation.issue_date.year) for gen, computation in computations if computation.issue_date]
    )
    revisions = await revision_counts([gen.invoice.id for gen, _ in computations])
    # An organization's own template, when it chose one (models/invoice_templates.py).
    own = await active_templates({gen.organization.id for gen, _ in computations})
    printing: list[list[Any]] = []
    for gen, computation in computations:
        template = own.get(gen.organization.id)
        try:
            view = build_view(
                gen, computation, numbers[str(gen.invoice.id)], template.template_version if template else TEMPLATE_VERSION
            )
        except DomainError as exc:
            outcomes[str(gen.invoice.id)] = exc
            continue
        path = f"invoices/{gen.organization.id}/{view['number']}-r{revisions.get(gen.invoice.id, 0) + 1}.pdf"
        html = render_invoice_html(view) if template is None else None
        printing.append([gen, computation, view, path, html, page_label(view["locale"])])
        await asyncio.sleep(0)
    printing = await _print_own(printing, own, outcomes)
    # Printed with other invoices of their organization (jobs/pdf.py), handed over together.
    pdfs = await asyncio.gather(
        *(ctx["pdf"].render(html, group=str(gen.organization.id), page_label=label) for gen, _, _, _, html, label in printing),
        return_exceptions=True,
    )
    printed = []
    for (gen, computation, view, path, _, _), pdf in zip(printing, pdfs, strict=True):
        if isinstance(pdf, BaseException):
            outcomes[str(gen.invoice.id)] = pdf
        else:
            printed.append(Generated(gen.invoice.id, computation, view, {"path": path, "size": len(pdf), "pdf": pdf}))
    # Off the event loop: an fsync that waits for the disk would stall every other job's
    # queries and renders.
    await asyncio.to_thread(_save, ctx["settings"], printed)
    stored = await store_revisions(printed, WORKER)
    for one, outcome in zip(printed, stored, strict=True):
        outcomes[str(one.invoice_id)] = outcome if isinstance(outcome, BaseException) else (
            "superseded" if outcome is None else "generated"
        )
    record(Entity.INVOICE, Transition.GENERATED, [
        one.invoice_id for one, outcome in zip(printed, stored, strict=True) if isinstance(outcome, Invoice)
    ])
    return [outcomes[invoice_id] for invoice_id in ids]


async def _print_own(printing: list[list[Any]], own: dict[Any, InvoiceTemplate], outcomes: dict) -> list[list[Any]]:
    """The HTML of the views printed with their organization's template: each template's views in
    one child process (jobs/invoice_templates.py); when that fails, each view on its own, so that
    an invoice the template cannot print fails alone, with the line and the reason."""
    groups: dict[Any, list[list[Any]]] = {}
    for item in printing:
        if item[4] is None:
            groups.setdefault(item[0].organization.id, []).append(item)
    for organization_id, items in groups.items():
        template = own[organization_id]
        try:
            for item, html in zip(items, await render_own(template.source, [item[2] for item in items]), strict=True):
                item[4] = html
        except TemplateRejected:
            for item in items:
                try:
                    (item[4],) = await render_own(template.source, [item[2]])
                except TemplateRejected as exc:
                    outcomes[str(item[0].invoice.id)] = GenerationFailed(
                        f"The invoice template {template.name!r} (version {template.version}) cannot print this invoice: "
                        f"{exc.message}. Activate another template (or the product's), then regenerate."
                    )
    return [item for item in printing if item[4] is not None]


def _save(settings: Any, printed: list[Generated]) -> None:
    """Store each PDF, recording its SHA-256 in place of its bytes."""
    for one in printed:
        one.pdf["sha256"] = storage.save(settings, one.pdf["path"], one.pdf.pop("pdf"))


@runs_effects
async def requeue_stuck(ctx: dict) -> int:
    """The sweeper: queue again the work that committed states imply but arq does not hold
    (jobs/effects.py tells why a job can be missing). Invoices GENERATING, approved invoices
    whose delivery is QUEUED, cost imports and Xero pushes QUEUED and credit notes without their PDF or with
    their e-mail QUEUED, voided invoices without their VOID copy, each for a while (a writer queues its job
    right after its commit), get their job unless it is queued or running; one generating for
    half an hour goes to ERROR instead of looping. Answers how many invoices were GENERATING."""
    now = datetime.now(UTC)
    settings = ctx.get("settings")
    stuck_after = timedelta(seconds=settings.stuck_after_seconds) if settings else STUCK_AFTER
    stuck = Invoice.filter(status=InvoiceStatus.GENERATING)
    for invoice_id in await stuck.filter(updated_at__lt=now - GIVE_UP_AFTER).values_list("id", flat=True):
        await fail_generation(invoice_id, "Generation did not finish in 30 minutes. Regenerate to try again.", WORKER)
    ids = await stuck.filter(updated_at__lt=now - stuck_after).values_list("id", flat=True)
    await dispatch.requeue_generations(ctx["redis"], ids)
    unsent = await Invoice.filter(
        status=InvoiceStatus.APPROVED, delivery_status=DeliveryStatus.QUEUED, updated_at__lt=now - stuck_after
    )
    await dispatch.requeue_sends(ctx["redis"], unsent)
    imports = await CostImport.filter(
        state=CostImportState.QUEUED, created_at__lt=now - stuck_after
    ).values_list("id", flat=True)
    await dispatch.requeue_jobs(ctx["redis"], dispatch.COST_IMPORT, dispatch.cost_import_job_id, imports)
    credit_notes = await CreditNote.filter(
        Q(pdf_path__isnull=True) | Q(delivery_status=DeliveryStatus.QUEUED), created_at__lt=now - stuck_after
    ).values_list("id", flat=True)
    await dispatch.requeue_jobs(ctx["redis"], dispatch.CREDIT_NOTE, dispatch.credit_note_job_id, credit_notes)
    void_copies = await Invoice.filter(
        status=InvoiceStatus.VOIDED, void_pdf_path__isnull=True, current_revision__pdf_path__isnull=False,
        updated_at__lt=now - stuck_after,
    ).values_list("id", flat=True)
    await dispatch.requeue_jobs(ctx["redis"], dispatch.VOID_COPY, dispatch.void_copy_job_id, void_copies)
    await requeue_stalled_pushes(ctx["redis"], stuck_after)
    if ids or unsent or imports or credit_notes:
        log.info("sweeper: %d generating, %d deliveries, %d imports, %d credit notes checked",
                 len(ids), len(unsent), len(imports), len(credit_notes))
    return len(ids)
