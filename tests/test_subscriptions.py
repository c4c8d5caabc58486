"""Live invoice events over graphql-transport-ws, in one web process: scopes, filters, the end
of a subscription (revoked or expired token, a client that falls behind) and the caps."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime, timedelta

import pytest
import websockets
from strawberry.relay import to_base64

import tests.factories as f
from infra import events
from models import Invoice
from models.auth import Token, authenticate
from models.invoices import is_visible
from tests.conftest import serving
from tests.graphql import LiveClient, gql, subscribed

WATCH = """subscription($accounts: [ID!], $invoices: [ID!]) {
  invoiceStatusChanged(accountIds: $accounts, invoiceIds: $invoices) {
    status paymentStatus deliveryStatus at invoice { id number status }
  }
}"""
APPROVE = """mutation($ids: [ID!]!) { approveInvoices(ids: $ids) { __typename
  ... on InvoiceActionResults { results { invoice { status } error { code } } } } }"""
REVOKE = "mutation { revokeToken { __typename } }"


def _gid(invoice: Invoice) -> str:
    return to_base64("Invoice", str(invoice.id))


async def _invoices(world):
    period = await f.billing_period(world.org)
    mine = await f.generated_invoice(world.account, period, number="INV-2024-0001")
    theirs = await f.generated_invoice(world.other_account, period, number="INV-2024-0002")
    foreign = await f.generated_invoice(
        world.foreign_account, await f.billing_period(world.foreign_org), number="INV-2024-0001"
    )
    return mine, theirs, foreign


def _statuses(messages: list[dict]) -> list[tuple[str, str]]:
    return [
        (m["payload"]["data"]["invoiceStatusChanged"]["invoice"]["number"],
         m["payload"]["data"]["invoiceStatusChanged"]["status"])
        for m in messages if m["type"] == "next"
    ]


async def test_each_scope_receives_only_what_it_may_see(live_server, client, world, app):
    mine, theirs, foreign = await _invoices(world)
    clients = {role: LiveClient(live_server, world.tokens[role]) for role in world.ROLES}
    for live in clients.values():
        await live.__aenter__()
    try:
        ops = {role: await live.subscribe(WATCH) for role, live in clients.items()}
        await subscribed(app, len(ops))
        approved = await gql(client, APPROVE, {"ids": [_gid(mine), _gid(theirs)]}, token=world.tokens["owner"])
        assert [r["invoice"]["status"] for r in approved["data"]["approveInvoices"]["results"]] == ["APPROVED"] * 2
        await gql(client, APPROVE, {"ids": [_gid(foreign)]}, token=world.tokens["foreign_owner"])
        drained = await asyncio.gather(*(live.drain(ops[role]) for role, live in clients.items()))
        got = {role: _statuses(messages) for role, messages in zip(clients, drained)}
    finally:
        for live in clients.values():
            await live.__aexit__(None, None, None)
    both = [("INV-2024-0001", "APPROVED"), ("INV-2024-0002", "APPROVED")]
    assert got["owner"] == both and got["viewer"] == both
    assert got["customer"] == [("INV-2024-0001", "APPROVED")]
    assert got["other_customer"] == [("INV-2024-0002", "APPROVED")]
    assert got["foreign_owner"] == [("INV-2024-0001", "APPROVED")]


async def test_a_customer_sees_nothing_before_approval_and_filters_narrow(live_server, client, redis, world, app):
    mine, theirs, _ = await _invoices(world)
    async with LiveClient(live_server, world.tokens["customer"]) as customer, \
            LiveClient(live_server, world.tokens["owner"]) as owner:
        everything = await customer.subscribe(WATCH)
        only_theirs = await owner.subscribe(WATCH, {"invoices": [_gid(theirs)]})
        only_mine = await owner.subscribe(WATCH, {"accounts": [to_base64("ManagedAccount", str(world.account.id))]})
        malformed = await owner.subscribe(WATCH, {"invoices": ["not-an-id"]})
        await subscribed(app, 4)
        # A draft changing (here: published as the worker would) reaches MSP users only.
        await events.publish(redis, [mine, theirs])
        await gql(client, APPROVE, {"ids": [_gid(mine)]}, token=world.tokens["owner"])
        assert _statuses(await customer.drain(everything)) == [("INV-2024-0001", "APPROVED")]
        assert _statuses(await owner.drain(only_theirs)) == [("INV-2024-0002", "AWAITING_APPROVAL")]
        assert _statuses(await owner.drain(only_mine)) == [
            ("INV-2024-0001", "AWAITING_APPROVAL"), ("INV-2024-0001", "APPROVED"),
        ]
        assert await owner.drain(malformed, quiet=0.1) == []


async def test_the_invoice_of_an_event_is_loaded_once_for_every_subscriber(live_server, redis, world, app):
    mine, _, _ = await _invoices(world)
    async with LiveClient(live_server, world.tokens["owner"]) as owner:
        ops = [await owner.subscribe(WATCH) for _ in range(5)]
        await subscribed(app, 5)
        loads = []
        original = events.Invoice.get_or_none
        events.Invoice.get_or_none = lambda **kw: loads.append(kw) or original(**kw)
        try:
            await events.publish(redis, [mine])
            for op in ops:
                assert _statuses([await owner.next(op)]) == [("INV-2024-0001", "AWAITING_APPROVAL")]
        finally:
            events.Invoice.get_or_none = original
    assert len(loads) == 1


async def test_one_redis_subscription_per_process(live_server, redis, world, app):
    async with LiveClient(live_server, world.tokens["owner"]) as a, LiveClient(live_server, world.tokens["viewer"]) as b:
        for live in (a, b, a, b):
            await live.subscribe(WATCH)
        await subscribed(app, 4)
        name = events.channel(redis, events.INVOICE_CHANNEL)
        assert dict(await redis.pubsub_numsub(name)) == {name.encode(): 1}


async def test_revoking_the_token_ends_its_subscriptions(live_server, client, world, app):
    session = await f.token(world.users["customer"])
    async with LiveClient(live_server, session) as customer, \
            LiveClient(live_server, world.tokens["customer"]) as other_session:
        op = await customer.subscribe(WATCH)
        kept = await other_session.subscribe(WATCH)
        await subscribed(app, 2)
        assert (await gql(client, REVOKE, token=session))["data"]["revokeToken"]["__typename"] == "TokenRevoked"
        message = await customer.next(op)
        assert _ended_with(message, "UNAUTHENTICATED")
        # The socket stays open, but nothing runs on it any more.
        again = await customer.subscribe(WATCH)
        refused = await customer.next(again)
        assert (await customer.drain(op, quiet=0.2))[-1]["type"] == "complete"
        assert _ended_with(refused, "UNAUTHENTICATED")
        assert await other_session.drain(kept, quiet=0.1) == []


def _ended_with(message: dict, code: str) -> bool:
    errors = message["payload"] if message["type"] == "error" else message["payload"].get("errors", [])
    return any(e.get("extensions", {}).get("code") == code for e in errors)


# Long enough for a busy machine to subscribe well within it: each test first sees the
# subscription served, then waits for its end, however long the expiry takes to come.
TOKEN_LIFETIME = timedelta(seconds=5)


async def test_an_expiring_token_ends_the_subscription(live_server, world, app):
    app.state.events.recheck_seconds = 3600  # the token's own timer ends it, not the periodic check
    raw = await f.token(world.users["viewer"], lifetime=TOKEN_LIFETIME)
    async with LiveClient(live_server, raw) as viewer:
        op = await viewer.subscribe(WATCH)
        await subscribed(app, 1)
        message = await viewer.next(op, timeout=60)
        assert _ended_with(message, "UNAUTHENTICATED")


async def test_a_token_expiring_during_a_busy_stream_ends_the_subscription(live_server, redis, world, app):
    app.state.events.recheck_seconds = 3600  # the token's own checks end it, not the periodic one
    mine, _, _ = await _invoices(world)
    raw = await f.token(world.users["viewer"], lifetime=TOKEN_LIFETIME)
    expires_at = (await authenticate(raw)).presented_token.expires_at.timestamp()
    published: list[float] = []
    async with LiveClient(live_server, raw) as viewer:
        op = await viewer.subscribe(WATCH)
        await subscribed(app, 1)
        async with asyncio.timeout(60):
            # One event at a time, each awaited, until the stream ends: the n-th message
            # answers the n-th event.
            while True:
                published.append(time.time())
                await events.publish(redis, [mine])
                message = await viewer.next(op)
                if message["type"] != "next" or message["payload"].get("errors"):
                    break
                await asyncio.sleep(0.05)
        assert _ended_with(message, "UNAUTHENTICATED")
        if message["type"] == "next":
            # The protocol's last word on the operation: nothing can follow it.
            assert (await viewer.next(op))["type"] == "complete"
    delivered = published[:-1]
    assert delivered, "events flowed until the expiry"
    assert all(at < expires_at for at in delivered), "no event published after the expiry was delivered"


async def test_the_periodic_check_ends_subscriptions_of_tokens_revoked_unseen(live_server, app, world):
    async with LiveClient(live_server, world.tokens["viewer"]) as viewer:
        op = await viewer.subscribe(WATCH)
        await subscribed(app, 1)
        # Revoked behind the service's back: no revocation event is published.
        await Token.filter(user_id=world.users["viewer"].id).update(revoked_at=datetime.now(UTC))
        await app.state.events.recheck()
        assert _ended_with(await viewer.next(op), "UNAUTHENTICATED")


async def test_a_subscriber_that_does_not_read_is_ended_not_buffered(world):
    hub = events.Hub(queue_size=3, recheck_seconds=60)
    principal = await authenticate(world.tokens["owner"])
    subscription = events.Subscription(hub, principal, None, None, hub.queue_size)
    hub.add(subscription)
    mine, _, _ = await _invoices(world)
    change = events.InvoiceChange.of(mine).to_json()
    for _ in range(1000):
        await hub.dispatch(events.INVOICE_CHANNEL, change)
    assert subscription.ended is not None and subscription.ended.code == "FELL_BEHIND"
    assert len(subscription._pending) == 0
    with pytest.raises(events.SubscriptionEnded):
        await subscription.__anext__()


async def test_an_event_is_matched_once_per_class_of_alike_subscribers(world, monkeypatch):
    """Subscribers alike in scope, account and filters want the same events: the hub asks one
    of each class, and each class still gets only what its members may see."""
    hub = events.Hub(queue_size=10, recheck_seconds=60)
    mine, theirs, foreign = await _invoices(world)
    await Invoice.filter(id__in=[mine.id, theirs.id]).update(status="APPROVED", approved_at=datetime.now(UTC))
    principals = {role: await authenticate(world.tokens[role]) for role in world.ROLES}

    def subscriber(role, accounts=None, invoices=None):
        subscription = events.Subscription(hub, principals[role], accounts, invoices, hub.queue_size)
        hub.add(subscription)
        return subscription

    owners = [subscriber("owner") for _ in range(3)]
    viewer, customer, other_customer, foreign_owner = (subscriber(role) for role in world.ROLES[1:])
    owner_of_theirs = subscriber("owner", accounts={str(world.other_account.id)})
    owner_of_mine = subscriber("owner", invoices={str(mine.id)})
    asked = []
    monkeypatch.setattr(events, "is_visible", lambda *args: asked.append(args) or is_visible(*args))
    await hub.dispatch(events.INVOICE_CHANNEL, events.InvoiceChange.of(await Invoice.get(id=mine.id)).to_json())
    got = {s for s in (*owners, viewer, customer, other_customer, foreign_owner, owner_of_theirs, owner_of_mine)
           if s._pending}
    assert got == {*owners, viewer, customer, owner_of_mine}
    # owner, viewer, customer, other customer, owner of another account's invoice: the owner
    # class without filters asked once for its three; the filtered-out class not at all.
    assert len(asked) == 5
    await hub.dispatch(events.INVOICE_CHANNEL, events.InvoiceChange.of(foreign).to_json())
    assert [len(s._pending) for s in (foreign_owner, *owners)] == [1, 1, 1, 1]


async def test_caps_on_operations_per_socket_and_message_size(settings, redis, world):
    from invoicing.app import create_app

    capped = settings.model_copy(update={"subscriptions_per_connection": 2, "ws_max_message_bytes": 4096})
    application = create_app(capped)
    application.state.redis = redis
    try:
        async with serving(application, capped) as address, LiveClient(address, world.tokens["owner"]) as owner:
            first, second, third = [await owner.subscribe(WATCH) for _ in range(3)]
            refused = await owner.next(third)
            assert refused["type"] == "error" and "limit" in refused["payload"][0]["message"]
            await owner.ws.send(json.dumps({"id": "big", "type": "subscribe", "payload": {
                "query": WATCH, "variables": {"invoices": ["x" * 5000]}}}))
            assert await asyncio.wait_for(owner.closed, 5) == 1009
    finally:
        await application.state.events.close()


async def test_subscribing_needs_a_token_in_connection_init(live_server):
    async with websockets.connect(
        f"ws://{live_server}/graphql", subprotocols=["graphql-transport-ws"], origin="http://127.0.0.1:8000"
    ) as ws:
        # A subscribe before connection_init is refused with 4401.
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": WATCH}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4401


PAY = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) { __typename
  ... on PaymentRecorded { payment { id } } } }"""
REFUND = """mutation($input: RefundPaymentInput!) { refundPayment(input: $input) { __typename } }"""
VOID = """mutation($ids: [ID!]!) { voidInvoices(ids: $ids, notifyCustomer: false) { __typename } }"""
MONEY = """subscription { invoiceStatusChanged { status paymentStatus invoice { number amountPaid amountDue } } }"""


async def test_payments_refunds_and_voids_are_pushed_to_the_customer_too(live_server, client, world, app):
    period = await f.billing_period(world.org)
    paid = await f.generated_invoice(world.account, period, number="INV-2024-0001", status="APPROVED")
    voided = await f.generated_invoice(world.account, await f.billing_period(world.org, month=date(2024, 10, 1)),
                                       number="INV-2024-0002", status="APPROVED")
    owner = world.tokens["owner"]
    async with LiveClient(live_server, world.tokens["customer"]) as customer, \
            LiveClient(live_server, world.tokens["other_customer"]) as other:
        mine, theirs = await customer.subscribe(MONEY), await other.subscribe(MONEY)
        await subscribed(app, 2)
        recorded = await gql(client, PAY, {"input": {
            "invoiceId": _gid(paid), "amount": "10.25", "paidOn": "2024-10-02", "method": "BANK_TRANSFER"}}, token=owner)
        payment_id = recorded["data"]["recordPayment"]["payment"]["id"]
        await gql(client, REFUND, {"input": {"paymentId": payment_id, "amount": "10.25", "refundedOn": "2024-10-03",
                                             "notifyCustomer": False}}, token=owner)
        await gql(client, VOID, {"ids": [_gid(voided)]}, token=owner)
        seen = [m["payload"]["data"]["invoiceStatusChanged"] for m in await customer.drain(mine)]
        assert await other.drain(theirs, quiet=0.1) == []
    assert [(e["invoice"]["number"], e["status"], e["paymentStatus"]) for e in seen] == [
        # Partly paid, long after its due date: still overdue.
        ("INV-2024-0001", "APPROVED", "OVERDUE"),
        ("INV-2024-0001", "APPROVED", "REFUNDED"),
        ("INV-2024-0002", "VOIDED", "UNPAID"),
    ]
    assert seen[-1]["invoice"]["amountDue"] == "0.00"


async def test_losing_the_event_stream_tells_subscribers_to_re_query(live_server, redis, world, app):
    mine, _, _ = await _invoices(world)
    async with LiveClient(live_server, world.tokens["owner"]) as owner:
        before = await owner.subscribe(WATCH)
        await subscribed(app, 1)
        # Only this app's own subscription: other processes on the server keep theirs.
        own = app.state.events._pubsub.connection._writer.get_extra_info("sockname")
        assert await redis.client_kill_filter(_type="pubsub", addr=f"{own[0]}:{own[1]}") == 1
        assert _ended_with(await owner.next(before), "EVENTS_MISSED")
        # The process subscribes again by itself: a new subscription gets events.
        after = await owner.subscribe(WATCH)
        name = events.channel(redis, events.INVOICE_CHANNEL)
        async with asyncio.timeout(30):
            while dict(await redis.pubsub_numsub(name))[name.encode()] != 1:  # noqa: ASYNC110 (Redis signals nothing)
                await asyncio.sleep(0.1)
        await events.publish(redis, [mine])
        assert _statuses([await owner.next(after)]) == [("INV-2024-0001", "AWAITING_APPROVAL")]
