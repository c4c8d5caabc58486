"""Live events fanned out (schema/core/fanout.py): one execution per group of subscribers with the
same operation, variables and scope class, the same frames as each subscriber's own execution
would send, and a personal answer (a signed link) never shared."""

from __future__ import annotations

import asyncio

import pytest
from strawberry.relay import to_base64

import tests.factories as f
from infra import events, links, live_sockets
from models.auth import authenticate
from models.base import Scope
from schema.core import fanout
from tests.conftest import serving
from tests.graphql import LiveClient

WATCH = "subscription { invoiceStatusChanged { status invoice { number total } } }"


@pytest.fixture
def executions(monkeypatch):
    """Every shared execution: (principal's scope, whether it was personal)."""
    seen: list[tuple[str, bool]] = []
    original = fanout.execute

    async def counted(info, sink, event):
        payload, personal = await original(info, sink, event)
        seen.append((info.context.principal.scope.value, personal))
        return payload, personal

    monkeypatch.setattr(fanout, "execute", counted)
    return seen


async def _approved(world):
    period = await f.billing_period(world.org)
    return await f.generated_invoice(world.account, period, number="INV-2024-0001", status="APPROVED")


async def _registered(hub: events.Hub, count: int) -> None:
    """Until the hub holds `count` subscriptions (an event published before would be missed)."""
    for _ in range(200):
        if hub.subscription_count() >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} subscriptions registered")


async def _next_of_all(clients: list[tuple[LiveClient, str]]) -> list[dict]:
    return list(await asyncio.gather(*(live.next(op) for live, op in clients)))


async def test_alike_subscribers_share_one_execution_per_scope_class(live_server, app, redis, world, executions):
    invoice = await _approved(world)
    second_owner = await f.user(world.org, Scope.OWNER, email="second-owner@example.com")
    tokens = [world.tokens["owner"], world.tokens["owner"], await f.token(second_owner),
              world.tokens["viewer"], world.tokens["customer"]]
    sockets = [LiveClient(live_server, token) for token in tokens]
    for live in sockets:
        await live.__aenter__()
    try:
        ops = [(live, await live.subscribe(WATCH)) for live in sockets for _ in range(3)]
        filtered = (sockets[0], await sockets[0].subscribe(
            "subscription($ids: [ID!]) { invoiceStatusChanged(invoiceIds: $ids) { status invoice { number total } } }",
            {"ids": [to_base64("Invoice", str(invoice.id))]},
        ))
        await _registered(app.state.events, len(ops) + 1)
        await events.publish(redis, [invoice])
        messages = await _next_of_all([*ops, filtered])
    finally:
        for live in sockets:
            await live.__aexit__(None, None, None)
    payloads = {str(m["payload"]) for m in messages}
    assert len(payloads) == 1 and messages[0]["payload"]["data"]["invoiceStatusChanged"]["invoice"]["number"] == \
        "INV-2024-0001"
    assert [m["id"] for m in messages] == [op for _, op in ops] + [filtered[1]]
    # Owners (two users, two sockets), the viewer and the customer: one execution per scope
    # class; the operation with variables is a group of its own.
    assert sorted(executions) == sorted([("OWNER", False), ("VIEWER", False), ("CUSTOMER", False), ("OWNER", False)])


async def test_an_answer_that_names_its_user_goes_to_that_user_alone(live_server, app, redis, world, executions,
                                                                     settings):
    invoice = await _approved(world)
    second_owner = await f.user(world.org, Scope.OWNER, email="second-owner@example.com")
    users = [world.users["owner"], second_owner, world.users["owner"]]
    query = "subscription { invoiceStatusChanged { invoice { number csvUrl } } }"
    sockets = [LiveClient(live_server, await f.token(user)) for user in users]
    for live in sockets:
        await live.__aenter__()
    try:
        ops = [(live, await live.subscribe(query)) for live in sockets]
        await _registered(app.state.events, len(ops))
        await events.publish(redis, [invoice])
        messages = await _next_of_all(ops)
    finally:
        for live in sockets:
            await live.__aexit__(None, None, None)
    signed_for = []
    for message in messages:
        url = message["payload"]["data"]["invoiceStatusChanged"]["invoice"]["csvUrl"]
        signed_for.append(links.verify(settings, url.rsplit("/", 1)[1])["u"])
    assert signed_for == [str(user.id) for user in users]
    assert executions == [("OWNER", True)] * 3


@pytest.mark.parametrize(("role", "deflate"), [("owner", False), ("customer", False), ("owner", True)])
async def test_the_frames_are_those_of_each_subscribers_own_execution(settings, redis, world, role, deflate):
    """The same operations on a server with the fan-out and on one without: the same messages,
    byte for byte once decoded (errors, fragments, aliases and variables included). This is
    what fails if graphql-core's or strawberry's internals that schema/core/fanout.py relies on
    (Executor.build, execute_subscription_event, the transport handler's operations) change.
    With compressed frames (WS_PER_MESSAGE_DEFLATE) the fan-out's frames go through ASGI."""
    from invoicing.app import create_app

    invoice = await _approved(world)
    gid = to_base64("Invoice", str(invoice.id))
    operations = [
        (WATCH, None),
        ("subscription W($ids: [ID!]) { e: invoiceStatusChanged(invoiceIds: $ids) { ...F paymentStatus } }"
         " fragment F on InvoiceStatusEvent { status at invoice { id number amountDue lineItems { position amount } } }",
         {"ids": [gid]}),
        # The timeline is for MSP users: a customer's answer carries a FORBIDDEN error at its path.
        ("subscription { invoiceStatusChanged { invoice { number timeline { kind } account { name } } } }", None),
        ("subscription { invoiceStatusChanged { __typename deliveryStatus invoice { __typename period } } }", None),
    ]
    received = {}
    for shared in (False, True):
        configured = settings.model_copy(update={"subscription_fanout": shared, "ws_per_message_deflate": deflate})
        application = create_app(configured)
        application.state.redis = redis
        try:
            async with serving(application, configured) as address, LiveClient(address, world.tokens[role]) as live:
                ops = [await live.subscribe(query, variables) for query, variables in operations]
                await _registered(application.state.events, len(ops))
                await events.publish(redis, [invoice])
                received[shared] = [await live.next(op) for op in ops]
        finally:
            await application.state.events.close()
    assert received[True] == received[False]
    assert all(m["type"] == "next" for m in received[True])
    timeline = received[True][2]["payload"]
    if role == "customer":
        assert [e["extensions"]["code"] for e in timeline["errors"]] == ["FORBIDDEN"]
    else:
        assert "errors" not in timeline
        assert timeline["data"]["invoiceStatusChanged"]["invoice"]["timeline"] == [{"kind": "GENERATED"}]


async def test_a_subscriber_leaving_while_its_group_executes_does_not_stop_the_others(live_server, app, redis, world,
                                                                                       monkeypatch, written):
    """The one that completed its operation meanwhile gets no frame (its task, cancelled, no
    longer waits); the other gets its own from the relay."""
    invoice = await _approved(world)
    original = fanout.execute
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(info, sink, event):
        started.set()
        await release.wait()
        return await original(info, sink, event)

    monkeypatch.setattr(fanout, "execute", slow)
    async with LiveClient(live_server, world.tokens["owner"]) as leaving, \
            LiveClient(live_server, world.tokens["owner"]) as staying:
        first = await leaving.subscribe(WATCH)
        await asyncio.sleep(0.1)
        kept = await staying.subscribe(WATCH)
        await _registered(app.state.events, 2)
        await events.publish(redis, [invoice])
        await asyncio.wait_for(started.wait(), 5)
        await leaving.ws.send('{"id": "%s", "type": "complete"}' % first)
        await asyncio.sleep(0.2)
        release.set()
        message = await staying.next(kept)
        assert await leaving.drain(first, quiet=0.3) == []
    assert message["payload"]["data"]["invoiceStatusChanged"]["invoice"]["number"] == "INV-2024-0001"
    assert written[0] == 1


@pytest.fixture
def written(monkeypatch):
    """How many messages the fan-out wrote straight to a socket (`LiveSocket.write_frame`)."""
    counted = [0]
    original = live_sockets.LiveSocket.write_frame

    def counting(socket, frame):
        done = original(socket, frame)
        counted[0] += done
        return done

    monkeypatch.setattr(live_sockets.LiveSocket, "write_frame", counting)
    return counted


async def test_waiting_subscribers_get_their_frames_from_the_relay(live_server, app, redis, world, written,
                                                                   executions):
    """Waiting subscribers are written to by the relay, one execution per group, without their
    tasks."""
    invoice = await _approved(world)
    async with LiveClient(live_server, world.tokens["owner"]) as owner, \
            LiveClient(live_server, world.tokens["customer"]) as customer:
        ops = [(owner, await owner.subscribe(WATCH)), (owner, await owner.subscribe(WATCH)),
               (customer, await customer.subscribe(WATCH))]
        await _registered(app.state.events, 3)
        await asyncio.sleep(0.2)  # each waits for its first event
        for _ in range(2):
            await events.publish(redis, [invoice])
            messages = await _next_of_all(ops)
            assert [m["payload"]["data"]["invoiceStatusChanged"]["invoice"]["number"] for m in messages] == \
                ["INV-2024-0001"] * 3
    assert written[0] == 6
    assert sorted(executions) == [("CUSTOMER", False), ("CUSTOMER", False), ("OWNER", False), ("OWNER", False)]


async def test_a_socket_whose_transport_paused_gets_its_event_through_asgi_once_it_resumes(live_server, app, redis,
                                                                                            world, written):
    """A transport holding more than its high-water mark unsent (`pause_writing`) is not written
    to by the relay; the event waits in the subscriber's queue, and its task sends it through
    ASGI once the transport drains (`resume_writing`)."""
    invoice = await _approved(world)
    async with LiveClient(live_server, world.tokens["owner"]) as live:
        op = await live.subscribe(WATCH)
        await _registered(app.state.events, 1)
        await asyncio.sleep(0.2)  # it waits for its first event
        [socket] = {s.sink.socket for classes in app.state.events._by_organization.values()
                    for subs in classes.values() for s in subs}
        socket.pause_writing()
        await events.publish(redis, [invoice])
        assert await live.drain(op, quiet=0.3) == []
        socket.resume_writing()
        message = await live.next(op)
        await events.publish(redis, [invoice])
        again = await live.next(op)
    assert [m["payload"]["data"]["invoiceStatusChanged"]["invoice"]["number"] for m in (message, again)] == \
        ["INV-2024-0001"] * 2
    assert written[0] == 1  # the second, written by the relay again


async def test_the_hub_sends_only_to_subscribers_waiting_with_nothing_queued(world):
    """An event the relay sends itself never overtakes one still queued for its subscriber."""
    sent: list[list[events.Subscription]] = []

    async def send(delivery, subscriptions):
        sent.append(list(subscriptions))
        return []

    hub = events.Hub(queue_size=10, recheck_seconds=60, send=send)
    principal = await authenticate(world.tokens["owner"])
    waiting, behind, plain = (events.Subscription(hub, principal, None, None, hub.queue_size) for _ in range(3))
    for subscription in (waiting, behind, plain):
        hub.add(subscription)
    waiting.sink = behind.sink = object()
    invoice = await _approved(world)
    change = events.InvoiceChange.of(invoice)
    earlier = events.Delivery(change, invoice)
    behind.offer(earlier)
    next_event = asyncio.create_task(waiting.__anext__())
    await asyncio.sleep(0)  # it waits
    await hub.dispatch(events.INVOICE_CHANNEL, change.to_json())
    assert sent == [[waiting]] and not next_event.done()
    assert [d is earlier for d in behind._pending] == [True, False] and len(plain._pending) == 1
    next_event.cancel()


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
def test_a_written_frame_is_what_websockets_itself_frames(length):
    from websockets.frames import Frame, Opcode

    data = b"x" * length
    assert live_sockets.text_frame_header(length) + data == Frame(Opcode.TEXT, data).serialize(
        mask=False, extensions=[])
