"""Enqueueing background work: the effects that follow committed transitions (jobs/effects.py),
the sweeper that queues again what they could not, and the scheduler.

Job ids are derived from the row a job works on, so a job that is already queued or running
is never queued twice (arq refuses a second job with the same id). Generation is the
exception: its jobs carry up to GENERATION_BATCH invoices each (generated together), and
the sweeper asks `generations_held` which invoices they cover."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ParamSpec

from arq import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import deserialize_job

from infra import log_context
from infra.broker import QUEUE_NAME

log = logging.getLogger(__name__)
P = ParamSpec("P")

GENERATE = "generate_invoices"
SEND = "send_invoice"
NOTIFY = "notify_customer"
COST_IMPORT = "run_cost_import"
INVITE = "send_invitation"
REMIND = "send_reminder"
CREDIT_NOTE = "issue_credit_note"
XERO_PUSH = "push_to_xero"
XERO_REVOKE = "revoke_xero_tokens"
XERO_PAYMENTS = "read_xero_payments"
COST_SOURCE_SYNC = "sync_cost_source"
VOID_COPY = "print_void_copy"
STATEMENT = "print_statement"
WEBHOOKS = "deliver_webhooks"
WEBHOOK_DISABLED = "notify_webhook_disabled"
# Set when deliveries were queued: a lane that finds it set after its last round goes on.
WEBHOOKS_WAKE = "invoicing:webhooks:wake"


# The keyword argument a job receives with the request that queued it (its id, its
# organization), for its log lines; `jobs.effects.runs_effects` takes it off before the job runs.
CARRIED = "log_context"


async def _enqueue(redis: ArqRedis, function: str, *args: Any, **options: Any) -> Any:
    """arq's `enqueue_job`, with what the job carries of the request under way, if any."""
    if carried := log_context.carried():
        options[CARRIED] = carried
    return await redis.enqueue_job(function, *args, **options)


def send_job_id(invoice_id: Any, attempt: str = "approval") -> str:
    return f"{SEND}:{invoice_id}:{attempt}"


# Invoices per generation job: read, numbered, stored and printed together (jobs/generate.py),
# one job's Redis round trips for all of them.
GENERATION_BATCH = 16


async def enqueue_generation(
    redis: ArqRedis, invoice_ids: Iterable[Any], *, tries: int = 1, defer: float | None = None, batch: int = GENERATION_BATCH,
) -> None:
    """Queue the invoices' generation, `batch` per job; `tries` counts the tries so far
    including this one, `defer` delays it (seconds)."""
    ids = [str(invoice_id) for invoice_id in invoice_ids]
    for start in range(0, len(ids), batch):
        await _enqueue(redis, GENERATE, ids[start:start + batch], tries, _job_id=f"{GENERATE}:{uuid.uuid4().hex}", _defer_by=defer)


async def generations_held(redis: ArqRedis) -> set[str]:
    """The invoices that generation jobs arq holds are for: queued, deferred for a retry or
    running (as `is_held` counts them). A job that ends meanwhile is not counted."""
    job_ids = [job_id for job_id in await redis.zrange(QUEUE_NAME, 0, -1) if job_id.startswith(f"{GENERATE}:".encode())]
    if not job_ids:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.get(job_key_prefix + job_id.decode())
        stored = await pipe.execute()
    return {invoice_id for data in stored if data is not None for invoice_id in deserialize_job(data).args[0]}


async def is_held(redis: ArqRedis, job_id: str) -> bool:
    """Whether arq holds the job: queued (perhaps deferred for a retry) or running under a
    live claim. A job a killed worker was running stays queued and runs again once its claim
    lapses (`job_lease_seconds`), so it counts as held too."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(job_key_prefix + job_id)
        pipe.zscore(QUEUE_NAME, job_id)
        stored, score = await pipe.execute()
    return bool(stored) and score is not None


async def requeue(redis: ArqRedis, function: str, job_id: str, *args: Any) -> bool:
    """Queue a job the sweeper derived from a state row, unless arq already holds it. What is
    left of a job arq no longer runs (its record without a queue entry, its try count) is
    removed first: arq refuses a new job under an id whose record still exists."""
    if await is_held(redis, job_id):
        return False
    await redis.delete(job_key_prefix + job_id, retry_key_prefix + job_id, in_progress_key_prefix + job_id)
    return await _enqueue(redis, function, *args, _job_id=job_id) is not None


async def enqueue_send(redis: ArqRedis, invoice_id: Any, attempt: str = "approval") -> None:
    await _enqueue(redis, SEND, str(invoice_id), _job_id=send_job_id(invoice_id, attempt))


# Send jobs queued at a time: arq queues each with three round trips to Redis (WATCH, the
# check that it is not held, MULTI/EXEC), which an approval of a thousand invoices waits on
# one after another unless they overlap.
SENDS_AT_ONCE = 16


async def enqueue_sends(redis: ArqRedis, invoice_ids: Iterable[Any]) -> None:
    """Queue the approval's send job of each invoice, SENDS_AT_ONCE at a time."""
    ids = list(invoice_ids)
    for start in range(0, len(ids), SENDS_AT_ONCE):
        await asyncio.gather(*(enqueue_send(redis, invoice_id) for invoice_id in ids[start:start + SENDS_AT_ONCE]))


async def enqueue_notification(redis: ArqRedis, invoice_id: Any, notice: str, refund_id: Any = None) -> None:
    """Queue a notice to the customer (`voided`; `refunded` with the refund's id;
    `credit_refunded` with the credit note's refund entry's id): one job per void and per
    refund."""
    key = f"{NOTIFY}:{invoice_id}:{notice}" + (f":{refund_id}" if refund_id else "")
    await _enqueue(redis, NOTIFY, str(invoice_id), notice, str(refund_id) if refund_id else None, _job_id=key)


def cost_import_job_id(cost_import_id: Any) -> str:
    return f"{COST_IMPORT}:{cost_import_id}"


async def enqueue_cost_import(redis: ArqRedis, cost_import_id: Any) -> None:
    """Queue a registered cost delivery's import, once (the job id is the import's)."""
    await _enqueue(redis, COST_IMPORT, str(cost_import_id), _job_id=cost_import_job_id(cost_import_id))


def cost_source_sync_job_id(source_id: Any) -> str:
    return f"{COST_SOURCE_SYNC}:{source_id}"


async def enqueue_cost_source_sync(redis: ArqRedis, source_id: Any) -> bool:
    """Queue a cost source's sync unless one is queued or running; whether it was queued."""
    return await requeue(redis, COST_SOURCE_SYNC, cost_source_sync_job_id(source_id), str(source_id))


async def enqueue_invitation(redis: ArqRedis, invitation_id: Any) -> None:
    """Queue the e-mail of an invitation's link, once per invitation."""
    await _enqueue(redis, INVITE, str(invitation_id), _job_id=f"{INVITE}:{invitation_id}")


async def enqueue_reminder(redis: ArqRedis, invoice_id: Any, step: int, as_of: str) -> None:
    """Queue one step's payment reminder of an invoice, found due at `as_of` (ISO time),
    once (the job id is the invoice's and the step's)."""
    await _enqueue(redis, REMIND, str(invoice_id), step, as_of, _job_id=f"{REMIND}:{invoice_id}:{step}")


def credit_note_job_id(credit_note_id: Any) -> str:
    return f"{CREDIT_NOTE}:{credit_note_id}"


async def enqueue_credit_note(redis: ArqRedis, credit_note_id: Any) -> None:
    """Queue an issued credit note's PDF and e-mail, once (the job id is the credit note's)."""
    await _enqueue(redis, CREDIT_NOTE, str(credit_note_id), _job_id=credit_note_job_id(credit_note_id))


def void_copy_job_id(invoice_id: Any) -> str:
    return f"{VOID_COPY}:{invoice_id}"


async def enqueue_void_copy(redis: ArqRedis, invoice_id: Any) -> None:
    """Queue the printing of a voided invoice's copy marked VOID, once per invoice."""
    await _enqueue(redis, VOID_COPY, str(invoice_id), _job_id=void_copy_job_id(invoice_id))


def statement_job_id(path: str) -> str:
    return f"{STATEMENT}:{path}"


async def enqueue_statement(redis: ArqRedis, path: str, account_id: Any, start: str, end: str) -> None:
    """Print the statement that will be kept at `path` (queued once while it waits or runs)."""
    await _enqueue(redis, STATEMENT, str(account_id), start, end, _job_id=statement_job_id(path))


def xero_push_job_id(sync_id: Any) -> str:
    return f"{XERO_PUSH}:{sync_id}"


async def enqueue_xero_push(redis: ArqRedis, sync_id: Any) -> None:
    """Queue a document's push to Xero, once while one is queued or retrying (the job id is
    its sync's)."""
    await _enqueue(redis, XERO_PUSH, str(sync_id), _job_id=xero_push_job_id(sync_id))


async def enqueue_xero_revoke(redis: ArqRedis, sealed_tokens: str) -> None:
    """Queue the revocation at Xero of a disconnected organization's tokens (sealed)."""
    await _enqueue(redis, XERO_REVOKE, sealed_tokens)


async def enqueue_xero_payments(redis: ArqRedis, organization_id: Any) -> None:
    """Queue a read of an organization's Xero payments, once while one is queued."""
    await _enqueue(redis, XERO_PAYMENTS, str(organization_id), _job_id=f"{XERO_PAYMENTS}:{organization_id}")


def webhook_lane_lock(lane: int) -> str:
    """Held by the lane's running job (`jobs.webhooks.deliver_webhooks`)."""
    return f"{WEBHOOKS}:{lane}:lock"


def webhook_lane_kick(lane: int) -> str:
    """Set from a lane's job being queued until it starts: one queued job per lane."""
    return f"{WEBHOOKS}:{lane}:kick"


async def _kick_webhook_lanes(redis: ArqRedis, lanes: int) -> None:
    """WAKE set first, then a job queued for each lane that no job holds or is about to: a
    lane that stops checks WAKE after it let its lock go, so that either it goes on or this
    sees its lock free and queues the next."""
    await redis.set(WEBHOOKS_WAKE, "1")
    for lane in range(lanes):
        if await redis.exists(webhook_lane_lock(lane)):
            continue
        if await redis.set(webhook_lane_kick(lane), "1", nx=True, px=10_000):
            await redis.enqueue_job(WEBHOOKS, lane, _job_id=f"{WEBHOOKS}:{lane}:{uuid.uuid4().hex}")


async def wake_webhook_lanes(redis: ArqRedis, lanes: int) -> None:
    """Deliveries were queued: the lanes running go on, the others start."""
    await _kick_webhook_lanes(redis, lanes)


async def enqueue_webhook_disabled(redis: ArqRedis, endpoint_id: Any) -> None:
    """Queue the e-mail telling the owners that the endpoint was disabled."""
    await redis.enqueue_job(WEBHOOK_DISABLED, str(endpoint_id))


def _logged(requeue: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """The sweeper's and a retry's queueing logs, never raises, when Redis fails: the state
    rows still imply the work, and the next sweep queues it."""

    @functools.wraps(requeue)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await requeue(*args, **kwargs)
        except Exception:  # any failure: the next sweep tries again
            log.exception("%s: not queued; the sweeper will try again", requeue.__name__)

    return guarded


@_logged
async def retry_generation(redis: ArqRedis, invoice_ids: Sequence[Any], tries: int, defer: float) -> None:
    """Invoices whose generation failed for a reason that may pass: queued again, `defer`
    seconds later."""
    await enqueue_generation(redis, invoice_ids, tries=tries, defer=defer)


@_logged
async def requeue_generations(redis: ArqRedis, invoice_ids: Sequence[Any]) -> None:
    """Invoices GENERATING for a while: their generation is queued again unless a job arq
    holds is for them."""
    if not invoice_ids:
        return
    held = await generations_held(redis)
    await enqueue_generation(redis, [invoice_id for invoice_id in invoice_ids if str(invoice_id) not in held])


@_logged
async def requeue_sends(redis: ArqRedis, invoices: Sequence[Any]) -> None:
    """Approved invoices whose delivery stayed QUEUED: their send job is queued again unless
    arq holds the approval's or the last resend's (whose id is the invoice's `updated_at`, as
    a resend's effect gave it). Sending checks nothing more, so a held job is never doubled."""
    for invoice in invoices:
        if await is_held(redis, send_job_id(invoice.id)):
            continue
        await requeue(redis, SEND, send_job_id(invoice.id, str(invoice.updated_at.timestamp())), str(invoice.id))


@_logged
async def requeue_jobs(redis: ArqRedis, function: str, job_id: Callable[[Any], str], row_ids: Sequence[Any]) -> None:
    """Rows (cost imports, credit notes, Xero pushes) still waiting for their job: queued
    again unless arq holds it (the job does only what is left to do)."""
    for row_id in row_ids:
        await requeue(redis, function, job_id(row_id), str(row_id))


@_logged
async def start_webhook_lanes(redis: ArqRedis, lanes: int) -> None:
    """Deliveries are due (the sweeper found them): the lanes not running start."""
    await _kick_webhook_lanes(redis, lanes)
