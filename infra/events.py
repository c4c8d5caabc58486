"""Live invoice events across processes.

Whoever changes invoices (a web process, the worker, the CLI) publishes their new state on
Redis once the change has committed. Each web process holds one Redis subscription (its
`Hub`) and relays every event to those of its own subscribers whose scope allows it: the
number of Redis connections does not grow with the number of subscribers. Pub/sub is
at-most-once: a client that reconnects re-queries what it shows, then subscribes again."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from models.auth import Principal, live_token_ids
from models.errors import RequestErrorCode
from models.invoices import DeliveryStatus, Invoice, InvoiceStatus, PaymentStatus, is_visible

log = logging.getLogger(__name__)

INVOICE_CHANNEL = "invoicing:events:invoices"
REVOKED_CHANNEL = "invoicing:events:tokens-revoked"


def channel(redis: Redis, name: str) -> str:
    """The channel `name` of the Redis database `redis` uses. Keys live in a database but
    pub/sub channels are server-wide: a deployment (or a test run) on another database of the
    same server must not hear these events. Database 0 keeps the bare name."""
    database = redis.connection_pool.connection_kwargs.get("db") or 0
    return f"{name}@{database}" if database else name


@dataclass(frozen=True)
class InvoiceChange:
    """An invoice's state right after a change, as published (and nothing more: subscribers
    load the invoice itself through their own scope)."""

    invoice_id: str
    organization_id: str
    managed_account_id: str
    status: str
    payment_status: str
    delivery_status: str
    approved: bool
    at: str

    @classmethod
    def of(cls, invoice: Invoice) -> InvoiceChange:
        return cls(
            invoice_id=str(invoice.id), organization_id=str(invoice.organization_id),
            managed_account_id=str(invoice.managed_account_id), status=InvoiceStatus(invoice.status).value,
            payment_status=PaymentStatus(invoice.payment_status).value,
            delivery_status=DeliveryStatus(invoice.delivery_status).value,
            approved=invoice.approved_at is not None, at=invoice.updated_at.isoformat(),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> InvoiceChange:
        data = json.loads(raw)
        return cls(**{f.name: data[f.name] for f in fields(cls)})


async def publish(redis: Redis, invoices: Iterable[Invoice]) -> None:
    """Publish the invoices' state. Call once the change has committed, and before enqueueing
    the job that changes them next, so that subscribers see the changes in order. A Redis
    failure is logged, not raised: the change itself has been made."""
    changes = [InvoiceChange.of(invoice) for invoice in invoices]
    if not changes:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for change in changes:
                pipe.publish(channel(redis, INVOICE_CHANNEL), change.to_json())
            await pipe.execute()
    except RedisError as exc:
        log.warning("could not publish %d invoice events: %r", len(changes), exc)


async def publish_ids(redis: Redis, invoice_ids: Iterable[Any]) -> None:
    """Publish the current state of these invoices (read after the change committed)."""
    ids = [str(i) for i in invoice_ids if i]
    if ids:
        await publish(redis, await Invoice.filter(id__in=ids).order_by("created_at", "id"))


async def publish_revoked(redis: Redis, token_id: Any) -> None:
    """Tell every web process that a token was revoked: its subscriptions end at once."""
    try:
        await redis.publish(channel(redis, REVOKED_CHANNEL), str(token_id))
    except RedisError as exc:
        log.warning("could not publish the revocation of token %s: %r", token_id, exc)


class SubscriptionEnded(Exception):
    """Why the server ended a subscription; `code` goes to the client's error extensions."""

    def __init__(self, code: RequestErrorCode | str, message: str):
        super().__init__(message)
        self.code = RequestErrorCode(code).value
        self.message = message


REVOKED = SubscriptionEnded(RequestErrorCode.UNAUTHENTICATED, "The token was revoked or has expired.")
FELL_BEHIND = SubscriptionEnded(
    RequestErrorCode.FELL_BEHIND, "Too many events were waiting for this client: re-query, then subscribe again."
)
SHUTTING_DOWN = SubscriptionEnded(RequestErrorCode.SHUTTING_DOWN, "The server is restarting: re-query, then subscribe again.")
EVENTS_MISSED = SubscriptionEnded(
    RequestErrorCode.EVENTS_MISSED, "The server lost its event stream for a moment: re-query, then subscribe again."
)


@dataclass(frozen=True)
class Delivery:
    """One event as this process relays it: the change, and the invoice as it is now, read
    once for all the subscribers it goes to. `shared` is theirs to keep what they compute
    once for all of them (schema/core/fanout.py: one execution and encoding per group)."""

    change: InvoiceChange
    invoice: Invoice
    shared: dict = field(default_factory=dict, compare=False, repr=False)


class Subscription:
    """One subscriber's pending events. Bounded: a client that does not keep up is ended
    with FELL_BEHIND instead of growing the server's memory."""

    # Each event reads a few of these for every subscriber: kept in the object itself.
    __slots__ = ("hub", "principal", "token_id", "account_ids", "invoice_ids", "limit", "ended", "_pending",
                 "visibility", "_expires_at", "_waiter", "_expiry", "sink")

    def __init__(self, hub: Hub, principal: Principal, account_ids: set[str] | None,
                 invoice_ids: set[str] | None, limit: int):
        self.hub = hub
        self.principal = principal
        self.token_id = str(principal.presented_token.id)
        self.account_ids = account_ids
        self.invoice_ids = invoice_ids
        self.limit = limit
        self.ended: SubscriptionEnded | None = None
        self._pending: deque[Delivery] = deque()
        # All that `wants` reads, the organization aside (the hub's first index): subscribers
        # alike in it want the same events, so the hub asks one of them per event.
        self.visibility = (
            principal.scope, principal.managed_account_id,
            None if account_ids is None else frozenset(account_ids),
            None if invoice_ids is None else frozenset(invoice_ids),
        )
        self._expires_at = principal.presented_token.expires_at.timestamp()
        # Woken through one future per wait and ended by one timer at the token's expiry: a
        # fan-out to thousands of subscribers sets a result per subscriber, and nothing more
        # (no task or timer per wait, as `asyncio.wait_for` would make).
        self._waiter: asyncio.Future[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        # Set by whoever can send this subscriber's events without waking its task
        # (schema/core/fanout.py); the hub hands them to its `send` while the subscriber is idle.
        self.sink: Any = None

    def idle(self, now: float) -> bool:
        """Waiting for its next event, with none pending and its token alive: an event sent to
        it now, by someone else than its own task, cannot overtake another one. Not idle either
        once its task is cancelled (its operation completed, its socket closed): cancelling the
        task cancels the future it waits on at once."""
        waiter = self._waiter
        return (waiter is not None and not waiter.done() and not self._pending and self.ended is None
                and self._expires_at > now)

    def wants(self, change: InvoiceChange) -> bool:
        if self.account_ids is not None and change.managed_account_id not in self.account_ids:
            return False
        if self.invoice_ids is not None and change.invoice_id not in self.invoice_ids:
            return False
        return is_visible(self.principal, change.organization_id, change.managed_account_id,
                          change.status, change.approved)

    def offer(self, delivery: Delivery) -> None:
        if self.ended:
            return
        if len(self._pending) >= self.limit:
            self.end(FELL_BEHIND)
            return
        self._pending.append(delivery)
        self._wake()

    def end(self, reason: SubscriptionEnded) -> None:
        if self.ended is None:
            self.ended = reason
            self._pending.clear()
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self.hub.forget(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Delivery:
        while True:
            # Checked before every event too: a busy stream may deliver past the expiry before
            # the timer runs.
            if self._expires_at <= time.time():
                self.end(REVOKED)
            if self.ended:
                raise SubscriptionEnded(self.ended.code, self.ended.message)
            if self._pending:
                return self._pending.popleft()
            loop = asyncio.get_running_loop()
            if self._expiry is None:
                self._expiry = loop.call_later(max(self._expires_at - time.time(), 0), self.end, REVOKED)
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


def _discard(index: dict[Any, set[Subscription]], key: Any, subscription: Subscription) -> None:
    """`subscription` out of `index[key]`, and the key out of the index once nobody is left."""
    subs = index.get(key)
    if subs is not None:
        subs.discard(subscription)
        if not subs:
            del index[key]


# Sends an event to idle subscribers that have a sink, and answers those it could not send to.
Sender = Callable[[Delivery, list[Subscription]], Awaitable[list[Subscription]]]


class Hub:
    """This process's one Redis subscription, fanned out to its local subscribers, indexed by
    organization, then by what decides which events they want (`Subscription.visibility`):
    an event is matched once per such class of its organization's subscribers, not once each.

    With a `send`, an event goes to each idle subscriber with a sink through it, from the loop
    that relays the event, and to the others through their queues, each sent by its own task.
    The relay awaits `send` before the next event: each subscriber gets its events in order."""

    def __init__(self, *, queue_size: int, recheck_seconds: float, send: Sender | None = None):
        self.queue_size = queue_size
        self.recheck_seconds = recheck_seconds
        self.send = send
        self._by_organization: dict[str, dict[tuple, set[Subscription]]] = defaultdict(lambda: defaultdict(set))
        self._by_token: dict[str, set[Subscription]] = defaultdict(set)
        self._tasks: list[asyncio.Task] = []
        self._pubsub: PubSub | None = None
        self._lock = asyncio.Lock()

    async def subscribe(self, redis: Redis, principal: Principal, *, account_ids: Iterable[Any] | None = None,
                        invoice_ids: Iterable[Any] | None = None) -> Subscription:
        """A new subscription; events published from now on reach it. Close it when done."""
        await self._start(redis)
        subscription = Subscription(
            self, principal,
            None if account_ids is None else {str(i) for i in account_ids},
            None if invoice_ids is None else {str(i) for i in invoice_ids},
            self.queue_size,
        )
        self.add(subscription)
        return subscription

    def add(self, subscription: Subscription) -> None:
        """Relay events to `subscription` from now on (`subscribe` made it)."""
        self._by_organization[str(subscription.principal.organization_id)][subscription.visibility].add(subscription)
        self._by_token[subscription.token_id].add(subscription)

    def subscription_count(self) -> int:
        """How many subscriptions this process serves now."""
        return sum(len(subs) for classes in self._by_organization.values() for subs in classes.values())

    def forget(self, subscription: Subscription) -> None:
        organization = str(subscription.principal.organization_id)
        classes = self._by_organization.get(organization, {})
        _discard(classes, subscription.visibility, subscription)
        if not classes:
            self._by_organization.pop(organization, None)
        _discard(self._by_token, subscription.token_id, subscription)

    async def _start(self, redis: Redis) -> None:
        async with self._lock:
            if self._pubsub is not None:
                return
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            # Subscribed before the first subscriber is registered: nothing published after
            # `subscribe()` returns is missed.
            await pubsub.subscribe(channel(redis, INVOICE_CHANNEL), channel(redis, REVOKED_CHANNEL))
            self._pubsub = pubsub
            self._tasks = [asyncio.create_task(self._relay()), asyncio.create_task(self._recheck())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._end_all(SHUTTING_DOWN)
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None

    async def _relay(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None, "started by `_start`, once it has subscribed"
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except RedisError as exc:
                # redis-py reconnects and subscribes again on the next read; what was published
                # meanwhile is gone, so the current subscribers are told to re-query.
                log.warning("event subscription lost (%r); reconnecting", exc)
                self._end_all(EVENTS_MISSED)
                await asyncio.sleep(1)
                continue
            if message is not None and message["type"] == "message":
                await self.dispatch(message["channel"], message["data"])

    def _end_all(self, reason: SubscriptionEnded) -> None:
        for classes in list(self._by_organization.values()):
            for subs in list(classes.values()):
                for subscription in list(subs):
                    subscription.end(reason)

    async def dispatch(self, name: bytes | str, data: bytes | str) -> None:
        name = name.decode() if isinstance(name, bytes) else name
        data = data.decode() if isinstance(data, bytes) else data
        if name.partition("@")[0] == REVOKED_CHANNEL:
            for subscription in list(self._by_token.get(data, ())):
                subscription.end(REVOKED)
            return
        try:
            change = InvoiceChange.from_json(data)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed invoice event: %.200r", data)
            return
        subscribers: list[Subscription] = []
        for subs in self._by_organization.get(change.organization_id, {}).values():
            if next(iter(subs)).wants(change):  # any one answers for its class (never empty: `forget`)
                subscribers += [s for s in subs if s.ended is None]
        if not subscribers:
            return
        try:
            invoice = await Invoice.get_or_none(id=change.invoice_id)
        except Exception:  # the database is away: these subscribers miss an event, so they re-query
            log.exception("could not read invoice %s for its event", change.invoice_id)
            invoice = None
        if invoice is None:
            for subscription in subscribers:
                subscription.end(EVENTS_MISSED)
            return
        delivery = Delivery(change, invoice)
        queued = subscribers
        if self.send is not None:
            now = time.time()
            direct: list[Subscription] = []
            queued = []
            for subscription in subscribers:
                (direct if subscription.sink is not None and subscription.idle(now) else queued).append(subscription)
            if direct:
                queued += await self.send(delivery, direct)
        for subscription in queued:
            subscription.offer(delivery)

    async def _recheck(self) -> None:
        """Revocations travel by pub/sub, which can lose a message while a connection is
        down; every so often the tokens behind live subscriptions are checked again (one
        query for all of them), and deactivated users are caught the same way."""
        while True:
            await asyncio.sleep(self.recheck_seconds)
            try:
                await self.recheck()
            except Exception:  # a failed check must not stop the next one
                log.exception("re-checking subscription tokens failed")

    async def recheck(self) -> None:
        held = list(self._by_token)
        if not held:
            return
        valid = await live_token_ids(held)
        for token_id in held:
            if token_id not in valid:
                for subscription in list(self._by_token.get(token_id, ())):
                    subscription.end(REVOKED)
