"""What follows a committed change: its new states published, then the work it calls for queued.

An effect belongs to a transition, not to a caller. The domain records each transition it
commits (`models.outbox.record`); `EFFECTS` says which effect follows which transition, and
the runner runs them once the unit of work around it is over: a mutation (`schema.mutations`),
a job or a scheduled run (`runs_effects`), a command (`following`). A new effect after a
transition is a row of `EFFECTS`; no writer names one.

Effects run after the commit, never inside it: a rolled-back change records nothing, so it is
neither announced nor acted on. Within an effect, events go out before jobs are queued, so that
subscribers see a job's own changes after the change that queued it; effects run in the order
their transitions committed.

None of them raises: the change is committed whatever happens next, so a writer must answer
with it, not with Redis's error. Work that could not be queued is not lost: the state row that
implies it (an invoice GENERATING, a delivery or an import QUEUED) is the outbox, and the
worker's sweeper (`jobs.generate.requeue_stuck`) queues it again once Redis answers. Events
that could not be published are lost; subscribers resynchronize by querying."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from arq import ArqRedis, Retry

from infra import events, log_context, metrics
from infra.settings import get_settings
from jobs import dispatch
from models import webhooks
from models.invoices import DeliveryStatus, Invoice, InvoiceStatus
from models.outbox import Entity, Happened, Transition, collecting
from models.xero.sync import queued_pushes

log = logging.getLogger(__name__)
Job = TypeVar("Job", bound=Callable[..., Awaitable[Any]])
# Redis may be missing (a job a test runs without it): the effect fails, is logged, and the
# sweeper queues its work.
Effect = Callable[[Any, Happened], Awaitable[None]]


async def _publish(redis: ArqRedis, subjects: Iterable[Any]) -> None:
    """Invoices as the writer holds them, or, given ids, as they are once committed."""
    subjects = list(subjects)
    if subjects and isinstance(subjects[0], Invoice):
        await events.publish(redis, subjects)
    else:
        await events.publish_ids(redis, subjects)


async def _announced(redis: ArqRedis, happened: Happened) -> None:
    """Invoices changed state (paid, overdue, generated, sent...): subjects hear of it."""
    await _publish(redis, happened.subjects)


async def _invoice_announced(redis: ArqRedis, happened: Happened) -> None:
    """Something of an invoice's changed (a payment, a credit applied): its new amount due
    and payment status are announced."""
    await _publish(redis, [happened.details["invoice"]])


async def _period_closed(redis: ArqRedis, happened: Happened) -> None:
    """A month closed with these new invoices: announced, and a generation job queued for
    those of auto-invoiced accounts (which start GENERATING)."""
    await events.publish_ids(redis, happened.subjects)
    generating = await Invoice.filter(id__in=list(happened.subjects), status=InvoiceStatus.GENERATING).values_list("id", flat=True)
    await dispatch.enqueue_generation(redis, generating)


async def _generation_requested(redis: ArqRedis, happened: Happened) -> None:
    """Invoices moved to GENERATING: announced, then their generation queued."""
    await events.publish_ids(redis, happened.subjects)
    await dispatch.enqueue_generation(redis, happened.subjects)


async def _approved(redis: ArqRedis, happened: Happened) -> None:
    """Invoices approved: announced, then sent to the customer where approval queued it."""
    invoices: Sequence[Invoice] = happened.subjects
    await events.publish(redis, invoices)
    await dispatch.enqueue_sends(redis, [invoice.id for invoice in invoices if invoice.delivery_status == DeliveryStatus.QUEUED])


async def _resend_requested(redis: ArqRedis, happened: Happened) -> None:
    """An approved invoice is to be e-mailed again: one send job per request (its id is the
    invoice's `updated_at`, which the sweeper finds again)."""
    await events.publish(redis, happened.subjects)
    for invoice in happened.subjects:
        await dispatch.enqueue_send(redis, invoice.id, attempt=str(invoice.updated_at.timestamp()))


async def _voided(redis: ArqRedis, happened: Happened) -> None:
    """Invoices voided: announced, their copies marked VOID printed, the customer told when
    asked for, and those Xero has pushed, to void them there."""
    invoices: Sequence[Invoice] = happened.subjects
    await events.publish(redis, invoices)
    printed = Invoice.filter(id__in=[invoice.id for invoice in invoices], current_revision__pdf_path__isnull=False)
    for invoice_id in await printed.values_list("id", flat=True):
        await dispatch.enqueue_void_copy(redis, invoice_id)
    if happened.details["notify_customer"]:
        for invoice in invoices:
            await dispatch.enqueue_notification(redis, invoice.id, "voided")
    for sync_id in await queued_pushes([invoice.id for invoice in invoices]):
        await dispatch.enqueue_xero_push(redis, sync_id)


async def _refunded(redis: ArqRedis, happened: Happened) -> None:
    """A payment was refunded: announced, and the customer told when asked for."""
    invoice = happened.details["invoice"]
    await events.publish(redis, [invoice])
    if happened.details["notify_customer"]:
        for refund in happened.subjects:
            await dispatch.enqueue_notification(redis, invoice.id, "refunded", refund.id)


async def _credit_note_issued(redis: ArqRedis, happened: Happened) -> None:
    """A credit note was issued: its invoice's new amount due and payment status announced,
    then its PDF printed and (when asked for) e-mailed by one job."""
    await events.publish(redis, [happened.details["invoice"]])
    for credit_note in happened.subjects:
        await dispatch.enqueue_credit_note(redis, credit_note.id)


async def _credit_refunded(redis: ArqRedis, happened: Happened) -> None:
    """A credit note's account credit was paid back: the customer told when asked for."""
    if happened.details["notify_customer"]:
        credit_note = happened.details["credit_note"]
        for entry in happened.subjects:
            await dispatch.enqueue_notification(redis, credit_note.invoice_id, "credit_refunded", entry.id)


async def _tokens_revoked(redis: ArqRedis, happened: Happened) -> None:
    """Tokens stopped working (revoked, their user deactivated) or must be presented again
    (their user's scope changed): their subscriptions end on every web process at once."""
    for token_id in happened.subjects:
        await events.publish_revoked(redis, token_id)


async def _invitation_created(redis: ArqRedis, happened: Happened) -> None:
    """A user was invited (or invited again): the e-mail with its link is queued. If it
    cannot be, the owner sends the invitation again (`resendInvitation`)."""
    for invitation_id in happened.subjects:
        await dispatch.enqueue_invitation(redis, invitation_id)


async def _cost_import_queued(redis: ArqRedis, happened: Happened) -> None:
    """A cost delivery is stored and registered for the background: one import job runs it."""
    for cost_import_id in happened.subjects:
        await dispatch.enqueue_cost_import(redis, cost_import_id)


async def _xero_push_queued(redis: ArqRedis, happened: Happened) -> None:
    """Documents are to be pushed to Xero: one push job each."""
    for sync_id in happened.subjects:
        await dispatch.enqueue_xero_push(redis, sync_id)


async def _xero_disconnected(redis: ArqRedis, happened: Happened) -> None:
    """An organization disconnected Xero: its tokens (sealed) are revoked at Xero by a job."""
    for sealed_tokens in happened.subjects:
        await dispatch.enqueue_xero_revoke(redis, sealed_tokens)


async def _xero_invoices_changed(redis: ArqRedis, happened: Happened) -> None:
    """Xero told us (webhook) that invoices changed there: their payments are read now
    rather than at the next poll."""
    for organization_id in happened.subjects:
        await dispatch.enqueue_xero_payments(redis, organization_id)


async def _webhooks(redis: ArqRedis, happened: Happened) -> None:
    """The transition's events (`models.webhooks.events`) queued to the endpoints of their
    organization that subscribed to them, then the delivery lanes woken. Queued rows outlive a
    Redis failure: the sweeper (`jobs.webhooks.sweep_webhooks`) starts the lanes then."""
    queued = await webhooks.queue_events(await webhooks.events_of(happened), datetime.now(UTC))
    if queued:
        await dispatch.wake_webhook_lanes(redis, get_settings().webhook_lanes)


def _and_webhooks(effect: Effect) -> Effect:
    """The effect, then the same transition's webhooks: live subscribers and endpoints hear of
    a change from its one record. Webhooks are queued even when the effect failed."""

    async def both(redis: ArqRedis, happened: Happened) -> None:
        try:
            await effect(redis, happened)
        finally:
            await _webhooks(redis, happened)

    both.__doc__ = effect.__doc__
    return both


async def _webhooks_queued(redis: ArqRedis, happened: Happened) -> None:
    """Deliveries were queued by hand (a test event, a redelivery): the lanes woken."""
    await dispatch.wake_webhook_lanes(redis, get_settings().webhook_lanes)


async def _webhook_endpoint_disabled(redis: ArqRedis, happened: Happened) -> None:
    """An endpoint failed for too long and was disabled: its owners are e-mailed by a job."""
    for endpoint_id in happened.subjects:
        await dispatch.enqueue_webhook_disabled(redis, endpoint_id)


# Which effect follows which transition. The subjects are what the transition's record names:
# rows, or ids where the effect reads their committed state.
EFFECTS: dict[tuple[Entity, Transition], Effect] = {
    (Entity.INVOICE, Transition.CHANGED): _announced,
    (Entity.INVOICE, Transition.GENERATION_REQUESTED): _generation_requested,
    (Entity.INVOICE, Transition.GENERATED): _and_webhooks(_announced),
    (Entity.INVOICE, Transition.APPROVED): _and_webhooks(_approved),
    (Entity.INVOICE, Transition.RESEND_REQUESTED): _resend_requested,
    (Entity.INVOICE, Transition.DELIVERED): _and_webhooks(_announced),
    (Entity.INVOICE, Transition.VOIDED): _and_webhooks(_voided),
    (Entity.INVOICE, Transition.OVERDUE): _and_webhooks(_announced),
    (Entity.INVOICE, Transition.REISSUED): _and_webhooks(_generation_requested),
    (Entity.PERIOD, Transition.CLOSED): _and_webhooks(_period_closed),
    (Entity.PAYMENT, Transition.RECORDED): _and_webhooks(_invoice_announced),
    (Entity.PAYMENT, Transition.REFUNDED): _and_webhooks(_refunded),
    (Entity.CREDIT_NOTE, Transition.ISSUED): _and_webhooks(_credit_note_issued),
    (Entity.CREDIT_NOTE, Transition.APPLIED): _invoice_announced,
    (Entity.CREDIT_NOTE, Transition.CREDIT_REFUNDED): _credit_refunded,
    (Entity.CREDIT_NOTE, Transition.DELIVERED): _invoice_announced,
    (Entity.COST_IMPORT, Transition.QUEUED): _cost_import_queued,
    (Entity.COST_IMPORT, Transition.COMPLETED): _webhooks,
    (Entity.COST_IMPORT, Transition.FAILED): _webhooks,
    (Entity.COST_SOURCE, Transition.FAILING): _webhooks,
    (Entity.TOKEN, Transition.REVOKED): _tokens_revoked,
    (Entity.USER, Transition.SCOPE_CHANGED): _tokens_revoked,
    (Entity.USER, Transition.DEACTIVATED): _tokens_revoked,
    (Entity.INVITATION, Transition.CREATED): _invitation_created,
    (Entity.XERO_SYNC, Transition.QUEUED): _xero_push_queued,
    (Entity.XERO_CONNECTION, Transition.DISCONNECTED): _xero_disconnected,
    (Entity.XERO_CONNECTION, Transition.INVOICES_CHANGED): _xero_invoices_changed,
    (Entity.WEBHOOK_DELIVERY, Transition.QUEUED): _webhooks_queued,
    (Entity.WEBHOOK_ENDPOINT, Transition.DISABLED): _webhook_endpoint_disabled,
}


def _merged(happened: Sequence[Happened]) -> list[Happened]:
    """Consecutive records of one transition with the same details (a month closed for each
    of several organizations, a bulk action done invoice by invoice) run as one effect: one
    announcement, jobs queued in batches."""
    merged: list[Happened] = []
    for one in happened:
        last = merged[-1] if merged else None
        if last and (last.entity, last.transition, last.details) == (one.entity, one.transition, one.details):
            merged[-1] = Happened(one.entity, one.transition, last.subjects + one.subjects, one.details)
        else:
            merged.append(one)
    return merged


async def run(redis: ArqRedis | None, happened: Sequence[Happened]) -> None:
    """Run each transition's effect, in the order they committed; log, never raise, when one
    fails (Redis down): see the module's docstring."""
    for one in _merged(happened):
        try:
            await EFFECTS[(one.entity, one.transition)](redis, one)
        except Exception:  # any failure: the change stands, the sweeper queues its work
            log.exception("%s %s: not published or queued; the sweeper will queue its work", one.entity, one.transition)


@contextlib.asynccontextmanager
async def following(redis: ArqRedis | None) -> AsyncIterator[None]:
    """A unit of work (a mutation, a command): the effects of the transitions committed within
    it run once it is over, also when it ends in an error (what committed stands)."""
    with collecting() as happened:
        try:
            yield
        finally:
            await run(redis, happened)


def runs_effects(job: Job) -> Job:
    """A job or a scheduled run is a unit of work: the effects of what it committed run once it
    is over, on the worker's Redis (`ctx["redis"]`). It is also where every job is seen from
    outside: its lines carry its id, its function and the request that queued it, and its
    time and outcome are counted (`infra.metrics`)."""

    @functools.wraps(job)
    async def unit_of_work(ctx: dict, *args: Any, **kwargs: Any) -> Any:
        carried = {name: value for name, value in (kwargs.pop(dispatch.CARRIED, None) or {}).items()
                   if name in log_context.CARRIED}
        timer, outcome = metrics.Timer(), "failed"
        with log_context.bound(job_id=ctx.get("job_id"), function=job.__name__, **carried):
            try:
                async with following(ctx.get("redis")):
                    result = await job(ctx, *args, **kwargs)
                outcome = "ok"
                return result
            except Retry:
                outcome = "retried"
                raise
            except asyncio.CancelledError:
                outcome = "cancelled"
                raise
            finally:
                metrics.JOBS.labels(job.__name__, outcome).observe(timer.seconds)
                log.info("%s %s in %.3f s", job.__name__, outcome, timer.seconds)

    return cast(Job, unit_of_work)
