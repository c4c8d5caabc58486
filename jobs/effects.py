"""What follows a committed change: its new states published, then the work it calls for queued.

Every writer (the API, the command line, the worker and the scheduler) calls one of these once
its transaction has committed, never inside it: a rolled-back change must neither be announced
nor acted on. Events go out before jobs are queued, so that subscribers see a job's own changes
after the change that queued it.

None of them raises: the change is committed whatever happens next, so a writer must answer
with it, not with Redis's error. Work that could not be queued is not lost: the state row that
implies it (an invoice GENERATING, a delivery or an import QUEUED) is the outbox, and the
worker's sweeper (`jobs.generate.requeue_stuck`) queues it again once Redis answers. Events
that could not be published are lost; subscribers resynchronize by querying."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ParamSpec

from arq import ArqRedis

from infra import events
from jobs import dispatch
from models.credit_notes import CreditNote, CreditUseEntry
from models.invoices import DeliveryStatus, Invoice, InvoiceStatus
from models.payments import Refund

log = logging.getLogger(__name__)
P = ParamSpec("P")


def _after_commit(effect: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """Log, never raise, when an effect fails (Redis down): see the module's docstring."""

    @functools.wraps(effect)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await effect(*args, **kwargs)
        except Exception:  # any failure: the change stands, the sweeper queues its work
            log.exception("%s: not published or queued; the sweeper will queue its work", effect.__name__)

    return guarded


@_after_commit
async def invoices_changed(redis: ArqRedis, invoices: Iterable[Invoice]) -> None:
    """Invoices changed state (paid, overdue, failed...): subscribers hear of it."""
    await events.publish(redis, invoices)


@_after_commit
async def invoice_ids_changed(redis: ArqRedis, invoice_ids: Iterable[Any]) -> None:
    """As `invoices_changed`, for a writer that holds only ids (a closed month's new
    invoices, a job's invoice): their state is read after the commit."""
    await events.publish_ids(redis, invoice_ids)


@_after_commit
async def period_closed(redis: ArqRedis, invoice_ids: Sequence[Any]) -> None:
    """A month closed with these new invoices: announced, and a generation job queued for
    those of auto-invoiced accounts (which start GENERATING)."""
    await events.publish_ids(redis, invoice_ids)
    generating = await Invoice.filter(id__in=list(invoice_ids), status=InvoiceStatus.GENERATING).values_list("id", flat=True)
    await dispatch.enqueue_generation(redis, generating)


@_after_commit
async def generation_requested(redis: ArqRedis, invoice_ids: Sequence[Any]) -> None:
    """Invoices moved to GENERATING: announced, then their generation queued."""
    await events.publish_ids(redis, invoice_ids)
    await dispatch.enqueue_generation(redis, invoice_ids)


@_after_commit
async def generation_stalled(redis: ArqRedis, invoice_ids: Sequence[Any]) -> None:
    """Invoices GENERATING for a while: their generation is queued again unless a job arq
    holds is for them. Nothing changed, so nothing is announced."""
    if not invoice_ids:
        return
    held = await dispatch.generations_held(redis)
    await dispatch.enqueue_generation(redis, [invoice_id for invoice_id in invoice_ids if str(invoice_id) not in held])


@_after_commit
async def generation_retried(redis: ArqRedis, invoice_ids: Sequence[Any], tries: int, defer: float) -> None:
    """Invoices whose generation failed for a reason that may pass: queued again, `defer`
    seconds later. Nothing changed, so nothing is announced."""
    await dispatch.enqueue_generation(redis, invoice_ids, tries=tries, defer=defer)


@_after_commit
async def delivery_stalled(redis: ArqRedis, invoices: Sequence[Invoice]) -> None:
    """Approved invoices whose delivery stayed QUEUED: their send job is queued again unless
    arq holds the approval's or the last resend's (whose id is the invoice's `updated_at`,
    as `resend_requested` gave it). Sending checks nothing more, so a held job is never doubled."""
    for invoice in invoices:
        if await dispatch.is_held(redis, dispatch.send_job_id(invoice.id)):
            continue
        attempt = str(invoice.updated_at.timestamp())
        await dispatch.requeue(redis, dispatch.SEND, dispatch.send_job_id(invoice.id, attempt), str(invoice.id))


@_after_commit
async def invoices_approved(redis: ArqRedis, invoices: Sequence[Invoice]) -> None:
    """Invoices approved: announced, then sent to the customer where approval queued it."""
    await events.publish(redis, invoices)
    for invoice in invoices:
        if invoice.delivery_status == DeliveryStatus.QUEUED:
            await dispatch.enqueue_send(redis, invoice.id)


@_after_commit
async def resend_requested(redis: ArqRedis, invoice: Invoice) -> None:
    """An approved invoice is to be e-mailed again: one send job per request."""
    await events.publish(redis, [invoice])
    await dispatch.enqueue_send(redis, invoice.id, attempt=str(invoice.updated_at.timestamp()))


@_after_commit
async def invoices_voided(redis: ArqRedis, invoices: Sequence[Invoice], *, notify_customer: bool) -> None:
    """Invoices voided: announced, and the customer told when asked for."""
    await events.publish(redis, invoices)
    if notify_customer:
        for invoice in invoices:
            await dispatch.enqueue_notification(redis, invoice.id, "voided")


@_after_commit
async def refund_recorded(redis: ArqRedis, invoice: Invoice, refund: Refund, *, notify_customer: bool) -> None:
    """A payment was refunded: announced, and the customer told when asked for."""
    await events.publish(redis, [invoice])
    if notify_customer:
        await dispatch.enqueue_notification(redis, invoice.id, "refunded", refund.id)


@_after_commit
async def credit_refunded(
    redis: ArqRedis, credit_note: CreditNote, entry: CreditUseEntry, *, notify_customer: bool,
) -> None:
    """A credit note's account credit was paid back: the customer told when asked for."""
    if notify_customer:
        await dispatch.enqueue_notification(redis, credit_note.invoice_id, "credit_refunded", entry.id)


@_after_commit
async def credit_note_issued(redis: ArqRedis, invoice: Invoice, credit_note: CreditNote) -> None:
    """A credit note was issued: its invoice's new amount due and payment status announced,
    then its PDF printed and (when asked for) e-mailed by one job."""
    await events.publish(redis, [invoice])
    await dispatch.enqueue_credit_note(redis, credit_note.id)


@_after_commit
async def credit_note_stalled(redis: ArqRedis, credit_note_ids: Sequence[Any]) -> None:
    """Credit notes still without their PDF, or whose e-mail is still QUEUED: their job is
    queued again unless arq holds it (it does only what is left to do)."""
    for credit_note_id in credit_note_ids:
        await dispatch.requeue(
            redis, dispatch.CREDIT_NOTE, dispatch.credit_note_job_id(credit_note_id), str(credit_note_id)
        )


@_after_commit
async def token_revoked(redis: ArqRedis, token_id: Any) -> None:
    """A token was revoked: every web process ends its subscriptions at once."""
    await events.publish_revoked(redis, token_id)


@_after_commit
async def tokens_revoked(redis: ArqRedis, token_ids: Iterable[Any]) -> None:
    """Several tokens stopped working at once (a user deactivated) or must be presented
    again (a user's scope changed): their subscriptions end on every web process."""
    for token_id in token_ids:
        await events.publish_revoked(redis, token_id)


@_after_commit
async def invitation_created(redis: ArqRedis, invitation_id: Any) -> None:
    """A user was invited (or invited again): the e-mail with its link is queued. If it
    cannot be, the owner sends the invitation again (`resendInvitation`)."""
    await dispatch.enqueue_invitation(redis, invitation_id)


@_after_commit
async def cost_import_requested(redis: ArqRedis, cost_import_id: Any) -> None:
    """A cost delivery is stored and registered: one import job runs it."""
    await dispatch.enqueue_cost_import(redis, cost_import_id)


@_after_commit
async def cost_import_stalled(redis: ArqRedis, cost_import_ids: Sequence[Any]) -> None:
    """Cost deliveries registered but still QUEUED: their import job is queued again unless
    arq holds it."""
    for cost_import_id in cost_import_ids:
        await dispatch.requeue(
            redis, dispatch.COST_IMPORT, dispatch.cost_import_job_id(cost_import_id), str(cost_import_id)
        )


@_after_commit
async def xero_push_requested(redis: ArqRedis, sync_ids: Sequence[Any]) -> None:
    """Documents are to be pushed to Xero: one push job each."""
    for sync_id in sync_ids:
        await dispatch.enqueue_xero_push(redis, sync_id)


@_after_commit
async def xero_push_stalled(redis: ArqRedis, sync_ids: Sequence[Any]) -> None:
    """Pushes still QUEUED a while after their request: queued again unless arq holds them."""
    for sync_id in sync_ids:
        await dispatch.requeue(redis, dispatch.XERO_PUSH, dispatch.xero_push_job_id(sync_id), str(sync_id))


@_after_commit
async def xero_disconnected(redis: ArqRedis, sealed_tokens: str | None) -> None:
    """An organization disconnected Xero: its tokens (sealed) are revoked at Xero by a job."""
    if sealed_tokens:
        await dispatch.enqueue_xero_revoke(redis, sealed_tokens)


@_after_commit
async def xero_invoices_changed(redis: ArqRedis, organization_ids: Sequence[Any]) -> None:
    """Xero told us (webhook) that invoices changed there: their payments are read now
    rather than at the next poll."""
    for organization_id in organization_ids:
        await dispatch.enqueue_xero_payments(redis, organization_id)
