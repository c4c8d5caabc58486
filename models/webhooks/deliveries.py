"""Queueing events to endpoints and keeping count of the attempts: which deliveries are due,
what an attempt's outcome does to its delivery (the retry schedule) and to its endpoint
(disabled once it has failed for WEBHOOK_DISABLE_AFTER_HOURS with no success between).

The clock is an argument (`now`) everywhere: the schedule is tested without waiting."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from models.outbox import Entity, Transition, record
from models.webhooks.events import Event, body
from models.webhooks.tables import DeliveryState, WebhookDelivery, WebhookEndpoint, WebhookEvent

# The wait before each retry after a failed attempt: exponential back-off over about three
# days (eleven attempts in all, the last 70 h 42 min after the first).
RETRY_DELAYS: tuple[timedelta, ...] = tuple(
    timedelta(seconds=s)
    for s in (
        30,
        120,
        600,
        1800,
        3600,
        3 * 3600,
        6 * 3600,
        12 * 3600,
        24 * 3600,
        24 * 3600,
    )
)
# How long a lane holds a delivery it took before another may take it (a worker that died).
CLAIM = timedelta(minutes=2)
# What an attempt keeps of the answer.
RESPONSE_EXCERPT = 512


async def queue_events(events: Sequence[Event], now: datetime) -> list[Any]:
    """Store each event and one delivery of it per enabled endpoint of its organization that
    subscribed to its type; the ids of the deliveries, due now."""
    organizations = {event.organization_id for event in events}
    if not organizations:
        return []
    endpoints = await WebhookEndpoint.filter(organization_id__in=list(organizations), enabled=True).only("id", "organization_id", "events")
    rows: list[WebhookEvent] = []
    deliveries: list[WebhookDelivery] = []
    for event in events:
        targets = [e for e in endpoints if e.organization_id == event.organization_id and event.type in e.events]
        if not targets:
            continue
        row = WebhookEvent(
            id=uuid.uuid4(),
            organization_id=event.organization_id,
            type=event.type,
            payload=body(event.type, now, event.data),
            created_at=now,
        )
        rows.append(row)
        deliveries += [
            WebhookDelivery(id=uuid.uuid4(), endpoint_id=target.id, event_id=row.id, next_attempt_at=now, created_at=now)
            for target in targets
        ]
    if deliveries:
        async with in_transaction() as connection:
            await WebhookEvent.bulk_create(rows, using_db=connection)
            await WebhookDelivery.bulk_create(deliveries, using_db=connection)
    return [delivery.id for delivery in deliveries]


async def queue_test(endpoint: WebhookEndpoint, event: Event, now: datetime) -> WebhookDelivery:
    """A test event to one endpoint (whatever it subscribed to)."""
    async with in_transaction() as connection:
        row = await WebhookEvent.create(
            organization_id=endpoint.organization_id,
            type=event.type,
            payload=body(event.type, now, event.data),
            created_at=now,
            using_db=connection,
        )
        delivery = await WebhookDelivery.create(
            endpoint_id=endpoint.id, event_id=row.id, next_attempt_at=now, created_at=now, using_db=connection
        )
    record(Entity.WEBHOOK_DELIVERY, Transition.QUEUED, [delivery.id])
    return delivery


async def redeliver(delivery: WebhookDelivery, now: datetime) -> WebhookDelivery:
    """The delivery due again now, with the same `webhook-id` and body; its retries start over."""
    await WebhookDelivery.filter(id=delivery.id).update(state=DeliveryState.PENDING, attempts=0, next_attempt_at=now)
    record(Entity.WEBHOOK_DELIVERY, Transition.QUEUED, [delivery.id])
    return await WebhookDelivery.get(id=delivery.id)


_CLAIM_DUE = """
WITH due AS (
    SELECT d2.id, d2.next_attempt_at AS due_at FROM webhook_deliveries AS d2
    JOIN webhook_endpoints AS e ON e.id = d2.endpoint_id
    WHERE d2.state = 'PENDING' AND d2.next_attempt_at <= $1 AND e.enabled
    ORDER BY d2.next_attempt_at
    LIMIT $3
    FOR UPDATE OF d2 SKIP LOCKED
), claimed AS (
    UPDATE webhook_deliveries AS d SET next_attempt_at = $2 FROM due WHERE d.id = due.id
    RETURNING d.id, d.endpoint_id, d.event_id, due.due_at, d.next_attempt_at AS held_until
)
SELECT claimed.id, claimed.endpoint_id, claimed.event_id, claimed.due_at, claimed.held_until, event.payload
FROM claimed JOIN webhook_events AS event ON event.id = claimed.event_id
"""


@dataclass(frozen=True)
class Due:
    """A delivery taken for an attempt, with what the attempt needs, when it fell due and
    until when it is held (`release_claims` gives it back as it was)."""

    delivery_id: Any
    endpoint: WebhookEndpoint
    message_id: str
    payload: str
    due_at: datetime
    held_until: datetime


async def claim_due(now: datetime, limit: int) -> list[Due]:
    """Take up to `limit` deliveries due at `now` (of enabled endpoints), oldest first; each
    is held for CLAIM, so that two lanes (or two workers) never attempt one at once. One
    statement takes them with their bodies, one more reads their endpoints (as they are now:
    a URL changed or a secret rotated since the event counts)."""
    async with in_transaction() as connection:
        rows = await connection.execute_query_dict(_CLAIM_DUE, [now, now + CLAIM, limit])
    if not rows:
        return []
    endpoints = {e.id: e for e in await WebhookEndpoint.filter(id__in=list({row["endpoint_id"] for row in rows}))}
    return [
        Due(
            row["id"],
            endpoints[row["endpoint_id"]],
            WebhookEvent.message_id_of(row["event_id"]),
            row["payload"],
            row["due_at"],
            row["held_until"],
        )
        for row in rows
        if row["endpoint_id"] in endpoints
    ]


_RELEASE = """
UPDATE webhook_deliveries AS d SET next_attempt_at = r.due_at
FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS r(id, due_at, held_until)
WHERE d.id = r.id AND d.state = 'PENDING' AND d.next_attempt_at = r.held_until
"""


async def release_claims(claimed: Sequence[Due]) -> None:
    """Give deliveries taken but not attempted back, due when they were (one statement): the
    next lane, of this worker or another, takes them at once rather than after CLAIM. One
    whose claim lapsed and was taken again since is left to its new holder."""
    if claimed:
        await WebhookDelivery._meta.db.execute_query(
            _RELEASE, [[due.delivery_id for due in claimed], [due.due_at for due in claimed], [due.held_until for due in claimed]]
        )


async def any_due(now: datetime) -> bool:
    return await WebhookDelivery.filter(state=DeliveryState.PENDING, next_attempt_at__lte=now, endpoint__enabled=True).exists()


@dataclass(frozen=True)
class Outcome:
    """What an attempt met: an answer's status (None: none came), how long it took, the
    first bytes of the answer, or why there was no answer (in our words)."""

    status_code: int | None
    duration_ms: int
    response: str = ""
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Attempted:
    """One attempt made: its delivery, what came of it, and when it ended."""

    delivery_id: Any
    outcome: Outcome
    at: datetime


_LOG_ATTEMPTS = """
INSERT INTO webhook_attempts (id, delivery_id, at, status_code, duration_ms, response, error)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::smallint[], $5::int[], $6::text[], $7::text[])
"""
# Each delivery moves on by its outcome: DELIVERED on a 2xx; else due again after the next
# wait of RETRY_DELAYS ($2, in seconds), or FAILED when they ran out.
_MOVE_ON = """
UPDATE webhook_deliveries AS d SET
    attempts = d.attempts + 1,
    last_status = o.status,
    state = CASE WHEN o.ok THEN 'DELIVERED' WHEN d.attempts + 1 > cardinality($2::int[]) THEN 'FAILED' ELSE d.state END,
    delivered_at = CASE WHEN o.ok THEN o.at ELSE d.delivered_at END,
    next_attempt_at = CASE WHEN o.ok OR d.attempts + 1 > cardinality($2::int[]) THEN NULL
        ELSE o.at + make_interval(secs => ($2::int[])[d.attempts + 1]) END
FROM unnest($1::uuid[], $3::smallint[], $4::bool[], $5::timestamptz[]) AS o(id, status, ok, at)
WHERE d.id = o.id
RETURNING d.id, d.endpoint_id, d.state
"""
# Each endpoint's failing streak after the batch: ended ($2 null: its last attempt succeeded),
# started anew ($3: a success came earlier in the batch) or started unless it had ($2).
_STREAKS = """
UPDATE webhook_endpoints AS e SET failing_since = CASE WHEN s.restart THEN s.since ELSE coalesce(e.failing_since, s.since) END
FROM unnest($1::uuid[], $2::timestamptz[], $3::bool[]) AS s(id, since, restart)
WHERE e.id = s.id AND e.failing_since IS DISTINCT FROM (CASE WHEN s.restart THEN s.since ELSE coalesce(e.failing_since, s.since) END)
"""
_DISABLE = """
UPDATE webhook_endpoints AS e SET enabled = false, disabled_at = f.at, disabled_reason = f.reason
FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS f(id, at, reason)
WHERE e.id = f.id AND e.enabled AND e.failing_since <= f.at - make_interval(secs => $4)
RETURNING e.id
"""


async def record_attempts(done: Sequence[Attempted], disable_after: timedelta) -> dict[Any, DeliveryState]:
    """Log a batch of attempts and move their deliveries on, in one transaction of a few
    statements whatever its size; each delivery's state after it. The endpoints' failing
    streaks start or end with them (in the order the attempts ended); a streak as long as
    `disable_after` disables the endpoint, and its pending deliveries fail."""
    if not done:
        return {}
    async with in_transaction() as connection:
        await connection.execute_query(
            _LOG_ATTEMPTS,
            [
                [uuid.uuid4() for _ in done],
                [a.delivery_id for a in done],
                [a.at for a in done],
                [a.outcome.status_code for a in done],
                [a.outcome.duration_ms for a in done],
                [a.outcome.response[:RESPONSE_EXCERPT] for a in done],
                [a.outcome.error for a in done],
            ],
        )
        moved = await connection.execute_query_dict(
            _MOVE_ON,
            [
                [a.delivery_id for a in done],
                [int(delay.total_seconds()) for delay in RETRY_DELAYS],
                [a.outcome.status_code for a in done],
                [a.outcome.succeeded for a in done],
                [a.at for a in done],
            ],
        )
        endpoint_of = {row["id"]: row["endpoint_id"] for row in moved}
        disabled = await _streaks(connection, done, endpoint_of, disable_after)
    if disabled:
        record(Entity.WEBHOOK_ENDPOINT, Transition.DISABLED, disabled)
    return {row["id"]: DeliveryState(row["state"]) for row in moved}


async def _streaks(connection: Any, done: Sequence[Attempted], endpoint_of: dict, disable_after: timedelta) -> list[Any]:
    """Each endpoint's streak after the batch (one statement), then those failing for
    `disable_after` disabled (one more); the ids disabled."""
    streaks: dict[Any, tuple[datetime | None, bool]] = {}  # endpoint: (failing since, restarted)
    last_failure: dict[Any, Attempted] = {}
    for attempt in done:
        endpoint = endpoint_of.get(attempt.delivery_id)
        if endpoint is None:
            continue
        since, restarted = streaks.get(endpoint, (None, False))
        if attempt.outcome.succeeded:
            streaks[endpoint] = (None, True)
            last_failure.pop(endpoint, None)
        else:
            streaks[endpoint] = (since or attempt.at, restarted)
            last_failure[endpoint] = attempt
    if streaks:
        ids = list(streaks)
        await connection.execute_query(_STREAKS, [ids, [streaks[e][0] for e in ids], [streaks[e][0] is None or streaks[e][1] for e in ids]])
    if not last_failure:
        return []
    ids = list(last_failure)
    rows = await connection.execute_query_dict(
        _DISABLE,
        [
            ids,
            [last_failure[e].at for e in ids],
            [f"Every attempt failed for {_hours(disable_after)}; the last: {_why(last_failure[e].outcome)}." for e in ids],
            disable_after.total_seconds(),
        ],
    )
    disabled = [row["id"] for row in rows]
    for endpoint_id in disabled:
        await _fail_pending(connection, endpoint_id)
    return disabled


async def record_attempt(delivery_id: Any, outcome: Outcome, now: datetime, disable_after: timedelta) -> DeliveryState:
    """One attempt's log and its delivery moved on (`record_attempts` of one)."""
    return (await record_attempts([Attempted(delivery_id, outcome, now)], disable_after))[delivery_id]


async def _fail_pending(connection: Any, endpoint_id: Any) -> None:
    """A disabled endpoint's deliveries still pending fail (redeliver them once it is enabled)."""
    await (
        WebhookDelivery.filter(endpoint_id=endpoint_id, state=DeliveryState.PENDING)
        .using_db(connection)
        .update(state=DeliveryState.FAILED, next_attempt_at=None)
    )


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} hours"


def _why(outcome: Outcome) -> str:
    return outcome.error or f"HTTP {outcome.status_code}"
