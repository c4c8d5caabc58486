"""Live events to many subscribers: one execution and one encoding per group, per event.

graphql-core runs a subscription's selection once per event per subscriber, and strawberry
then encodes and sends each result on its own. The subscribers of a console screen mostly send
the same operation, so here the subscribers of this process that receive an event with the same
document, variables and *scope class* (organization, scope, and account for a customer) share
one execution of it and one encoded payload.

How each gets it: on a socket of `infra.live_sockets` (the web process's own), the hub hands
the event to `send` for every subscriber waiting for its next event; `send` executes once per
group and writes each subscriber's frame (its operation id around the shared payload) straight
to its socket, in the loop that relays the event: no task wakes per subscriber, no ASGI layer
is crossed per frame. A subscriber it cannot write to so (events still queued for it, a socket
whose client reads too slowly or that compresses its frames) gets the event in its queue, and
its own task sends it through ASGI (`deliver`), reusing the group's payload; a client that does
not read stalls only itself, and is ended by its bounded queue (`infra.events.Subscription`).

What each subscriber receives is decided per subscriber as before: the event reaches it only
if its scope and filters allow (`Hub.dispatch`), and only while its token lives. The shared
execution runs with the scope class alone: a principal that answers the organization, scope and
account, and records any read of who the user is (`user`, `token`) or of the request (the
socket, its connection parameters); such an execution (a signed download link names its user,
for one) is *personal*: its result goes to that subscriber alone, and the others of the group
run their own, as every subscriber did before.

Only operations on a socket of `FanOutHandler` are shared; elsewhere (another transport, a
direct `schema.subscribe`) the resolver yields its events to graphql-core as usual."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import defaultdict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import fields
from functools import lru_cache
from typing import Any, cast

from graphql import DocumentNode, ExecutionResult, GraphQLError, execute_subscription_event, parse
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation

from infra.events import Delivery, Subscription
from infra.live_sockets import FRAMES, LiveSocket, text_frame_header
from models.auth import Principal
from schema.core.context import Context, Info
from schema.core.loaders import Loaders
from schema.core.masking import coded

log = logging.getLogger(__name__)


class FanOutHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """strawberry's graphql-transport-ws handler, whose operations can send a payload shared
    with other subscribers as their own `next` message."""

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        # Each operation runs in a task of its own: the variable is seen by its resolvers only.
        if isinstance(self.websocket, ASGIWebSocketAdapter):
            _sink.set(Sink(self, operation))
        await super().run_operation(operation)


class _Group:
    """A group's key (`Sink.key`) as one object per process, hashed by its identity: grouping
    an event's subscribers reads none of their strings."""

    __slots__ = ("__weakref__",)
    _all: weakref.WeakValueDictionary[tuple, _Group] = weakref.WeakValueDictionary()

    @classmethod
    def of(cls, key: tuple) -> _Group:
        group = cls._all.get(key)
        if group is None:
            group = cls._all[key] = cls()
        return group


class Sink:
    """Where one operation's shared payloads go: its socket, under its id."""

    __slots__ = ("handler", "operation", "prefix", "group", "_principal", "_key", "info", "context", "root", "socket",
                 "head")

    def __init__(self, handler: FanOutHandler, operation: Operation[Context, None]):
        self.handler = handler
        self.operation = operation
        # The message strawberry sends (`{"id", "type", "payload"}`), around a payload encoded once.
        self.prefix = '{"id":' + json.dumps(operation.id) + ',"type":"next","payload":'
        variables = json.dumps(operation.variables or {}, sort_keys=True, separators=(",", ":"))
        self.group = (operation.query, operation.operation_name, variables)
        self._principal: Principal | None = None
        self._key = _Group.of((self.group, None))
        # Set by `attach`, when the hub may send this operation's events (`send`).
        self.info: Info | None = None
        self.context: Context | None = None
        self.root: Callable[[Delivery], Any] | None = None
        self.socket: LiveSocket | None = None
        self.head = self.prefix.encode()

    def key(self, principal: Principal | None) -> _Group:
        """The group this operation shares an execution with when its socket's principal is
        `principal`: its operation, variables and scope class, computed again only when that
        principal changes (each operation on a socket authenticates again, and replaces it)."""
        if principal is not self._principal or principal is None:
            self._principal = principal
            self._key = _Group.of((self.group, scope_class(principal)))
        return self._key

    async def send(self, payload: str) -> None:
        if self.operation.completed:
            return
        websocket = self.handler.websocket
        assert isinstance(websocket, ASGIWebSocketAdapter), "a sink is made for ASGI sockets only"
        try:
            await websocket.ws.send_text(self.prefix + payload + "}")
        except WebSocketDisconnect as exc:  # as strawberry's own send reports it
            raise WebSocketDisconnected from exc


_sink: ContextVar[Sink | None] = ContextVar("fanout_sink", default=None)


def attach(info: Info, subscription: Subscription, root: Callable[[Delivery], Any]) -> None:
    """Let the hub send `subscription`'s events (`send`), each executed on `root(delivery)`, when
    its operation runs on a `FanOutHandler` socket that `infra.live_sockets` serves; elsewhere
    its resolver sends them, through `deliver` or as usual."""
    sink = _sink.get()
    if sink is None:
        return
    websocket = sink.handler.websocket
    assert isinstance(websocket, ASGIWebSocketAdapter), "a sink is made for ASGI sockets only"
    socket = (websocket.ws.scope.get("extensions") or {}).get(FRAMES)
    if isinstance(socket, LiveSocket):
        sink.info, sink.context, sink.root, sink.socket = info, info.context, root, socket
        subscription.sink = sink


class ClassPrincipal(Principal):
    """A principal as far as its scope class goes: organization, scope and account. Reading
    who it is (`user`, `token`) marks it `touched`: what was computed may then be that user's
    alone."""

    __slots__ = ("_of", "touched")

    def __init__(self, principal: Principal):  # the base's slots stay unset: see `user`
        self._of = principal
        self.touched = False

    @property
    def user(self):  # type: ignore[override]
        self.touched = True
        return self._of.user

    @property
    def token(self):  # type: ignore[override]
        self.touched = True
        return self._of.token

    @property
    def scope(self):
        return self._of.scope

    @property
    def organization_id(self):
        return self._of.organization_id

    @property
    def managed_account_id(self):
        return self._of.managed_account_id

    @property
    def is_msp_user(self) -> bool:
        return self._of.is_msp_user


# What tells one connection from another in a context: reading any of them makes a result personal.
PERSONAL_FIELDS = frozenset({"request", "response", "bearer", "connection_params", "auth_error"})


class SharedContext(Context):
    """A subscriber's context as its scope class sees it, with fresh dataloaders."""

    def __getattribute__(self, name: str) -> Any:
        if name in PERSONAL_FIELDS:
            object.__setattr__(self, "touched", True)
        return object.__getattribute__(self, name)

    @classmethod
    def of(cls, context: Context) -> SharedContext:
        values = {f.name: object.__getattribute__(context, f.name) for f in fields(Context)}
        principal = values["principal"]
        shared = cls(**{**values, "principal": ClassPrincipal(principal) if principal is not None else None,
                        "loaders": Loaders()})
        object.__setattr__(shared, "touched", False)
        return shared

    @property
    def personal(self) -> bool:
        principal = object.__getattribute__(self, "principal")
        return object.__getattribute__(self, "touched") or (principal is not None and principal.touched)


def scope_class(principal: Principal | None) -> tuple | None:
    """What the scoped queries and scope checks read of a principal (models/*: visible_*)."""
    if principal is None:
        return None
    account = principal.managed_account_id
    return (str(principal.organization_id), principal.scope.value, str(account) if account else None)


@lru_cache(maxsize=256)
def _document(query: str) -> DocumentNode:
    # The text is a subscriber's own, already parsed and validated when it subscribed.
    return parse(query)


class _Shared:
    """One group's answer to one event: the encoded payload, or None when the execution was
    personal (each subscriber of the group then runs its own)."""

    __slots__ = ("payload", "ready")

    def __init__(self) -> None:
        self.payload: str | None = None
        self.ready = asyncio.get_running_loop().create_future()


async def send(delivery: Delivery, subscriptions: list[Subscription]) -> list[Subscription]:
    """The hub's `send` (`infra.events.Hub`): `delivery` executed once per group of these idle,
    attached subscribers and written to each one's socket. Answers those it did not write to;
    the hub queues the event for them, and their tasks find the group's payload in
    `delivery.shared` (or, after a personal or failed execution, run their own)."""
    groups: dict[_Group, list[Subscription]] = defaultdict(list)
    for subscription in subscriptions:
        sink = subscription.sink
        groups[sink.key(sink.context.principal)].append(subscription)
    left: list[Subscription] = []
    if len(groups) == 1:
        [(key, members)] = groups.items()
        await _send_group(delivery, key, members, left)
    else:  # the groups' executions may read the database: at once
        await asyncio.gather(*(_send_group(delivery, key, members, left) for key, members in groups.items()))
    return left


async def _send_group(delivery: Delivery, key: _Group, members: list[Subscription], left: list[Subscription]) -> None:
    first = members[0].sink
    entry = delivery.shared[key] = _Shared()
    try:
        payload, personal = await execute(first.info, first, first.root(delivery))
        if not personal:
            entry.payload = payload
    except Exception:
        # Each then runs its own, in its own task: a failure ends its operation as without the fan-out.
        left.extend(members)
        return
    finally:
        entry.ready.set_result(None)
    tail = (payload + "}").encode()  # each member's message: its head, then this
    if personal:  # the first member's alone; the others run their own
        left.extend(members[1:])
        members = members[:1]
    size = len(tail)
    headers: dict[int, bytes] = {}  # frame headers by message length: heads differ by their ids only
    now = time.time()
    for subscription in members:
        sink = subscription.sink
        if subscription.idle(now):  # still: the execution may have waited for the database
            head = sink.head
            length = len(head) + size
            header = headers.get(length)
            if header is None:
                header = headers[length] = text_frame_header(length)
            if sink.socket.write_frame(header + head + tail):
                continue
        left.append(subscription)


async def deliver(info: Info, shared: dict, event: Callable[[], Any]) -> bool:
    """Send the event to the subscriber whose resolver `info` belongs to, executing its
    operation once per group: `shared` is the event's cache in this process, `event()` makes
    the root value to execute on. False when the operation does not run on a `FanOutHandler`
    socket: then yield the event as usual."""
    sink = _sink.get()
    if sink is None:
        return False
    key = sink.key(info.context.principal)
    entry = shared.get(key)
    if entry is None:
        entry = shared[key] = _Shared()
        try:
            payload, personal = await execute(info, sink, event())
        except BaseException:
            entry.ready.set_result(None)  # the others run their own
            raise
        if not personal:
            entry.payload = payload
        entry.ready.set_result(None)
        await sink.send(payload)
        return True
    if not entry.ready.done():
        # Shielded: a subscriber that leaves meanwhile must not cancel the others' wait.
        await asyncio.shield(entry.ready)
    payload = entry.payload
    if payload is None:
        payload, _ = await execute(info, sink, event())
    await sink.send(payload)
    return True


async def execute(info: Info, sink: Sink, event: Any) -> tuple[str, bool]:
    """The encoded `next` payload of the operation for `event`, as graphql-core's own event
    execution answers it (tests/test_subscriptions_fanout.py compares them), and whether it
    was personal."""
    context = SharedContext.of(info.context)
    operation = sink.operation
    executor = info.schema.execution_context_class.build(
        info.schema._schema, _document(operation.query), root_value=event, context_value=context,
        raw_variable_values=operation.variables, operation_name=operation.operation_name,
    )
    if isinstance(executor, list):  # cannot happen for an operation that subscribed; kept apart
        result = ExecutionResult(None, errors=executor)
    else:
        outcome = execute_subscription_event(executor)
        result = cast(ExecutionResult, await outcome if executor.is_awaitable(outcome) else outcome)
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        info.schema.process_errors(result.errors)
        production = context.settings.environment == "production"
        errors: list[GraphQLError] = [coded(error, production) for error in result.errors]
        payload["errors"] = [error.formatted for error in errors]
    encoded = sink.handler.view.encode_json(payload)
    return encoded.decode() if isinstance(encoded, bytes) else encoded, context.personal
