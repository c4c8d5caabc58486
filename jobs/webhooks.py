"""Delivering webhooks: lanes that take the deliveries due, sign and post each (`infra.webhooks`),
and record what came of it (`models.webhooks`); the sweeper that starts a lane when deliveries
fell due (a retry's time came, or a lane stopped as one was queued); and the e-mail to the
owners of an endpoint that was disabled.

A lane is one arq job (`deliver_webhooks`; one at a time per lane, which holds the lane's lock,
WEBHOOK_LANES of them): it holds one of the worker's job slots whatever the traffic, so the
other work keeps the rest. It claims due deliveries in batches, posts up to WEBHOOK_CONCURRENCY
at once over kept-alive connections, at most PER_ENDPOINT of them to one endpoint (a slow
endpoint does not hold the others up), and writes their attempts in batches. It stops when
nothing is due and no new delivery was announced meanwhile (`WAKE`, set by the effect before it
starts the lanes).

The worker's other jobs (generation, e-mail, imports) come first, for its time as well as its
slots: while it runs any (`OtherJobs`, which `jobs.worker` tells as each starts and ends), the
lanes post nothing. They finish the posts in flight, log them, give back the deliveries they
took but did not post (`release_claims`: nothing of theirs is held while they wait, so nothing
lapses into a second post), and wait on the moment the worker runs none, with no polling and
no statement meanwhile. So that webhooks are late but never starved, a worker that has run
other jobs for WEBHOOK_BUSY_MAX_WAIT_SECONDS without a break lets its lanes post again,
WEBHOOK_CONCURRENCY_BUSY at once each, until it runs none (`lane_limit`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from standardwebhooks import Webhook

from infra.settings import Settings
from infra.webhooks import Sender
from jobs import dispatch
from jobs.effects import runs_effects
from jobs.mailer import MailError, organization_sender, render_webhook_disabled_email, send_mail
from models.auth import User
from models.base import Scope
from models.organizations import Organization
from models.webhooks import (
    Attempted,
    Due,
    Outcome,
    WebhookEndpoint,
    any_due,
    claim_due,
    record_attempts,
    release_claims,
    signing_secrets,
)

log = logging.getLogger(__name__)
PER_ENDPOINT = 4
# A lane's lock outlives a worker that died holding it by this much at most (renewed each round).
LANE_LOCK_SECONDS = 120
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
# Attempts are written in batches: this many, or after this long, whichever comes first.
FLUSH_SIZE = 200
FLUSH_SECONDS = 0.5
Clock = Callable[[], datetime]
# Deliveries a lane may have in flight now (0: post nothing).
Limit = Callable[[], int]


class OtherJobs:
    """The jobs a worker runs now but the lanes and their sweeper (`jobs.worker` tells it as
    each starts and ends), and since when it has run some without a break. `idle` is set while
    it runs none: a waiting lane wakes on it."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.idle = asyncio.Event()
        self.idle.set()
        self._busy_since = 0.0

    def __bool__(self) -> bool:
        return bool(self.ids)

    def started(self, job_id: str) -> None:
        if not self.ids:
            self._busy_since = time.monotonic()
            self.idle.clear()
        self.ids.add(job_id)

    def ended(self, job_id: str) -> None:
        self.ids.discard(job_id)
        if not self.ids:
            self.idle.set()

    def busy_for(self) -> float:
        """Seconds the worker has run other jobs without a break (0 while it runs none)."""
        return time.monotonic() - self._busy_since if self.ids else 0.0

    async def until_idle(self, timeout: float) -> None:
        """Until the worker runs no other job, `timeout` seconds at most."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.idle.wait()


def lane_limit(settings: Settings, others: OtherJobs | None) -> Limit:
    """Deliveries a lane may have in flight: WEBHOOK_CONCURRENCY while the worker runs no other
    job; none while it does, until it has run them for WEBHOOK_BUSY_MAX_WAIT_SECONDS without a
    break, then WEBHOOK_CONCURRENCY_BUSY. Without `others` (a lane outside a worker): always
    WEBHOOK_CONCURRENCY."""

    def limit() -> int:
        if not others:
            return settings.webhook_concurrency
        return settings.webhook_concurrency_busy if others.busy_for() >= settings.webhook_busy_max_wait_seconds else 0

    return limit


def _now() -> datetime:
    return datetime.now(UTC)


def signed_headers(signers: list[Webhook], message_id: str, payload: str) -> dict[str, str]:
    """The Standard Webhooks headers: the message's id, the time of this attempt, and one
    signature per secret valid now (the new and the previous one after a rotation)."""
    at = datetime.now(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signer.sign(message_id, at, payload) for signer in signers),
    }


async def deliver_due(settings: Settings, sender: Sender, clock: Clock = _now, limit: Limit | None = None) -> int:
    """Attempt every delivery due at `clock()` until none is, or until `limit()` is 0; how many
    were attempted. The clock decides what is due and when a retry is; the signature's
    timestamp is the real time.

    Deliveries are claimed in batches (one statement each), posted up to `limit()` at once
    (WEBHOOK_CONCURRENCY unless told: `lane_limit`), at most PER_ENDPOINT to one endpoint, and
    their attempts written in batches (`record_attempts`: a few statements per batch, not per
    attempt) every FLUSH_SECONDS or FLUSH_SIZE attempts. Once `limit()` is 0 it claims no more,
    lets the posts in flight end, logs them and returns; a delivery whose turn at its endpoint
    comes after that is not posted but given back, due as it was (`release_claims`)."""
    if limit is None:
        limit = lane_limit(settings, None)
    endpoint_turns: dict[object, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(PER_ENDPOINT))
    disable_after = timedelta(hours=settings.webhook_disable_after_hours)
    in_flight: set[asyncio.Task] = set()
    # One signer per secret while this runs (a rotated secret is another key, so another signer).
    signers: dict[str, Webhook] = {}
    done: list[Attempted] = []
    unposted: list[Due] = []
    attempted, flushed_at = 0, time.monotonic()

    async def attempt(due: Due, signing: list[Webhook] | None) -> None:
        async with endpoint_turns[due.endpoint.id]:
            if not limit():
                unposted.append(due)
                return
            if signing:
                outcome = await sender.post(due.endpoint.url, signed_headers(signing, due.message_id, due.payload), due.payload)
            else:
                outcome = Outcome(None, 0, error="the signing secret cannot be read with this server's key: rotate it")
        done.append(Attempted(due.delivery_id, outcome, clock()))

    async def flush() -> None:
        nonlocal flushed_at
        batch = done[:]
        done.clear()
        flushed_at = time.monotonic()
        await record_attempts(batch, disable_after)

    try:
        while True:
            most = limit()
            room = most - len(in_flight)
            # Claim in batches (a quarter of the room at least) rather than one as each ends.
            if room > 0 and (room * 4 >= most or not in_flight):
                claimed = await claim_due(clock(), room)
                attempted += len(claimed)
                in_flight |= {asyncio.create_task(attempt(due, signing)) for due, signing in _signing(settings, claimed, clock(), signers)}
            if done and (len(done) >= FLUSH_SIZE or not in_flight or time.monotonic() - flushed_at >= FLUSH_SECONDS):
                await flush()
            if not in_flight:
                return attempted - len(unposted)
            ended, in_flight = await asyncio.wait(in_flight, timeout=FLUSH_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            for task in ended:
                if task.exception() is not None:
                    log.error("a webhook attempt failed", exc_info=task.exception())
    finally:
        for task in in_flight:
            task.cancel()
        if done:
            await flush()
        await release_claims(unposted)


def _signing(settings: Settings, claimed: list[Due], now: datetime, signers: dict[str, Webhook]) -> list[tuple[Due, list[Webhook] | None]]:
    """Each delivery with the signers of the secrets valid now, unsealed once per endpoint and
    batch; `signers` keeps one per secret."""
    found: dict[object, list[Webhook] | None] = {}
    for due in claimed:
        if due.endpoint.id not in found:
            secrets = signing_secrets(settings, due.endpoint, now)
            found[due.endpoint.id] = [signers.get(s) or signers.setdefault(s, Webhook(s)) for s in secrets] or None
    return [(due, found[due.endpoint.id]) for due in claimed]


@runs_effects
async def deliver_webhooks(ctx: dict, lane: int) -> int:
    """One lane: unless another job holds it, deliver what is due, again while new deliveries
    are announced (WAKE) or after waiting for its turn (the worker ran other jobs); then let the
    lane go and look once more (`dispatch._kick_webhook_lanes` says why that order loses
    nothing). A lane that starts while the worker runs other jobs waits before its first claim."""
    settings, redis = ctx["settings"], ctx["redis"]
    lock, token = dispatch.webhook_lane_lock(lane), uuid.uuid4().hex
    await redis.delete(dispatch.webhook_lane_kick(lane))
    attempted = 0
    others: OtherJobs | None = ctx.get("other_jobs")
    allowed = lane_limit(settings, others)
    # Whether the round stopped for other jobs rather than for want of deliveries due (they
    # may have ended since: the lane goes on all the same).
    yielded = False

    def limit() -> int:
        nonlocal yielded
        most = allowed()
        yielded = yielded or not most
        return most

    async with Sender(settings, connections=settings.webhook_concurrency) as sender:
        while await redis.set(lock, token, nx=True, ex=LANE_LOCK_SECONDS):
            try:
                while True:
                    await redis.delete(dispatch.WEBHOOKS_WAKE)
                    yielded = False
                    attempted += await deliver_due(settings, sender, limit=limit)
                    await redis.expire(lock, LANE_LOCK_SECONDS)
                    if yielded and others is not None:
                        await _await_turn(others, allowed, settings, redis, lock)
                        continue
                    if not await redis.exists(dispatch.WEBHOOKS_WAKE):
                        break
            finally:
                await redis.eval(_RELEASE, 1, lock, token)
            if not await redis.exists(dispatch.WEBHOOKS_WAKE):
                break
    return attempted


async def _await_turn(others: OtherJobs, allowed: Limit, settings: Settings, redis: Any, lock: str) -> None:
    """Until `allowed()` lets the lane post again: the worker runs no other job, or has run them
    for WEBHOOK_BUSY_MAX_WAIT_SECONDS without a break; the lane's lock renewed meanwhile (the
    wait may outlast it)."""
    while not allowed():
        left = settings.webhook_busy_max_wait_seconds - others.busy_for()
        await others.until_idle(min(left, LANE_LOCK_SECONDS / 3))
        await redis.expire(lock, LANE_LOCK_SECONDS)


@runs_effects
async def sweep_webhooks(ctx: dict) -> bool:
    """Cron: start the lanes when deliveries are due (retries whose time came, or deliveries
    queued as a lane was stopping); whether any were. It looks while the worker runs other jobs
    too (one indexed EXISTS every ten seconds): a lane it starts may be taken by another worker,
    idle, and one taken by this worker waits for its turn before it claims anything."""
    if not await any_due(_now()):
        return False
    await dispatch.start_webhook_lanes(ctx["redis"], ctx["settings"].webhook_lanes)
    return True


@runs_effects
async def notify_webhook_disabled(ctx: dict, endpoint_id: str) -> str:
    """E-mail the organization's owners that the endpoint was disabled, and why."""
    endpoint = await WebhookEndpoint.get_or_none(id=endpoint_id)
    if endpoint is None or endpoint.enabled or endpoint.disabled_at is None:
        return "not disabled"
    organization = await Organization.get(id=endpoint.organization_id)
    owners = await User.filter(organization_id=organization.id, scope=Scope.OWNER, is_active=True).values_list("email", flat=True)
    if not owners:
        return "no owner"
    at = endpoint.disabled_at.astimezone(ZoneInfo(organization.timezone))
    subject, text = render_webhook_disabled_email(
        {
            "organization_name": organization.name,
            "url": endpoint.url,
            "description": endpoint.description,
            "disabled_at": f"{at:%Y-%m-%d %H:%M} ({organization.timezone})",
            "reason": endpoint.disabled_reason or "",
        }
    )
    try:
        await send_mail(
            ctx["settings"], to=[str(owner) for owner in owners], subject=subject, text=text, **organization_sender(organization)
        )
    except MailError as exc:
        log.error("the notice of webhook endpoint %s disabled was not sent: %s", endpoint_id, type(exc).__name__)
        return "failed"
    return "sent"
