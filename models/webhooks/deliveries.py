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
from models.webhooks.tables import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

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
UPDATE webhook_deliveries AS d SET next_attempt_at = $2
FROM (
    SELECT d2.id FROM webhook_deliveries AS d2
    JOIN webhook_endpoints AS e ON e.id = d2.endpoint_id
    WHERE d2.state = 'PENDING' AND d2.next_attempt_at <= $1 AND e.enabled
    ORDER BY d2.next_attempt_at
    LIMIT $3
    FOR UPDATE OF d2 SKIP LOCKED
) AS due
WHERE d.id = due.id
RETURNING d.id
"""


@dataclass(frozen=True)
class Due:
    """A delivery taken for an attempt, with what the attempt needs."""

    delivery_id: Any
    endpoint: WebhookEndpoint
    message_id: str
    payload: str


async def claim_due(now: datetime, limit: int) -> list[Due]:
    """Take up to `limit` deliveries due at `now` (of enabled endpoints), oldest first; each
    is held for CLAIM, so that two lanes (or two workers) never attempt one at once."""
    async with in_transaction() as connection:
        rows = await connection.execute_query_dict(_CLAIM_DUE, [now, now + CLAIM, limit])
    if not rows:
        return []
    deliveries = await WebhookDelivery.filter(id__in=[row["id"] for row in rows]).select_related("endpoint", "event")
    return [Due(d.id, d.endpoint, d.event.message_id, d.event.payload) for d in deliveries]


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


async def record_attempt(delivery_id: Any, outcome: Outcome, now: datetime, disable_after: timedelta) -> DeliveryState:
    """Log the attempt and move its delivery on: DELIVERED on a 2xx; else due again after the
    next wait of RETRY_DELAYS, or FAILED when they ran out. The endpoint's failing streak
    starts or ends with it; a streak as long as `disable_after` disables the endpoint."""
    async with in_transaction() as connection:
        delivery = await WebhookDelivery.filter(id=delivery_id).select_for_update().using_db(connection).get()
        attempts = delivery.attempts + 1
        await WebhookAttempt.create(
            delivery_id=delivery_id,
            at=now,
            status_code=outcome.status_code,
            duration_ms=outcome.duration_ms,
            response=outcome.response[:RESPONSE_EXCERPT],
            error=outcome.error,
            using_db=connection,
        )
        columns: dict[str, Any] = {"attempts": attempts, "last_status": outcome.status_code}
        if outcome.succeeded:
            columns.update(state=DeliveryState.DELIVERED, delivered_at=now, next_attempt_at=None)
        elif attempts > len(RETRY_DELAYS):
            columns.update(state=DeliveryState.FAILED, next_attempt_at=None)
        else:
            columns.update(next_attempt_at=now + RETRY_DELAYS[attempts - 1])
        await WebhookDelivery.filter(id=delivery_id).using_db(connection).update(**columns)
        endpoints = WebhookEndpoint.filter(id=delivery.endpoint_id).using_db(connection)
        if outcome.succeeded:
            await endpoints.filter(failing_since__not_isnull=True).update(failing_since=None)
            disabled = False
        else:
            await endpoints.filter(failing_since__isnull=True).update(failing_since=now)
            disabled = bool(
                await endpoints.filter(enabled=True, failing_since__lte=now - disable_after).update(
                    enabled=False,
                    disabled_at=now,
                    disabled_reason=f"Every attempt failed for {_hours(disable_after)}; the last: {_why(outcome)}.",
                )
            )
            if disabled:
                await _fail_pending(connection, delivery.endpoint_id)
    if disabled:
        record(Entity.WEBHOOK_ENDPOINT, Transition.DISABLED, [delivery.endpoint_id])
    return DeliveryState(columns.get("state", DeliveryState.PENDING))


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
