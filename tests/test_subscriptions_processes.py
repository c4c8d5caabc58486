"""Live events across processes: two web processes and a worker process, each its own
operating-system process, meeting only through PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest
from strawberry.relay import to_base64

import tests.factories as f
from infra import events
from models import Invoice
from tests.conftest import free_port
from tests.graphql import LiveClient, gql

ROOT = Path(__file__).resolve().parent.parent
WATCH = """subscription($invoices: [ID!]) { invoiceStatusChanged(invoiceIds: $invoices) {
  status paymentStatus deliveryStatus invoice { number account { name } } } }"""
BULK = """mutation($ids: [ID!]!) { %s(ids: $ids) { __typename
  ... on InvoiceActionResults { results { invoice { status } error { code message } } } } }"""


async def _until(condition, timeout: float = 60, what: str = "condition"):
    for _ in range(int(timeout / 0.1)):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def mailbox():
    """The SMTP server the worker process sends to, for the module's tests."""
    from aiosmtpd.controller import Controller

    from tests.conftest import Mailbox

    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield f"smtp://127.0.0.1:{port}", box
    controller.stop()


@pytest.fixture(scope="module")
def processes(settings, mailbox):
    """Web process A, web process B and a worker, started as `invoicing` runs them, once for
    the module (each test has its own data: the tables are emptied between tests)."""
    env = settings.child_environment() | {
        "SMTP_URL": mailbox[0], "ALLOWED_ORIGINS": json.dumps(["http://127.0.0.1:8000"]),
    }
    ports = [free_port(), free_port()]
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "invoicing.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--ws", "infra.live_sockets:LiveSocket",
             "--ws-per-message-deflate", "false"],
            cwd=ROOT, env=env,
        )
        for port in ports
    ]
    started.append(subprocess.Popen([sys.executable, "-m", "invoicing", "worker"], cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL))
    try:
        deadline = time.monotonic() + 60
        # Ready when both answer /healthz with the worker's heartbeat seen.
        while not all(_ready(port) for port in ports):
            assert time.monotonic() < deadline, "the web processes and the worker did not start"
            time.sleep(0.1)
        yield [f"127.0.0.1:{port}" for port in ports]
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
    except (httpx.TransportError, ValueError):
        return False


async def _probes(world) -> list[Invoice]:
    """August's approved invoices, one for each account a subscriber may see, that nothing
    under test touches: published as they are, they show that the web process (which the
    test cannot look into) holds every subscription; published as VOIDED, they mark the end
    of a stream, after everything published before them."""
    mine, foreign = await f.billing_period(world.org, date(2024, 8, 1)), await f.billing_period(world.foreign_org, date(2024, 8, 1))
    return [await f.generated_invoice(account, period, number=f"PROBE-{n}", status="APPROVED")
            for n, (account, period) in enumerate(((world.account, mine), (world.other_account, mine),
                                                  (world.foreign_account, foreign)), start=1)]


async def _publish_probes(redis, probes: list[Invoice], status: str) -> None:
    for probe in probes:
        change = {**json.loads(events.InvoiceChange.of(probe).to_json()), "status": status}
        await redis.publish(events.channel(redis, events.INVOICE_CHANNEL), json.dumps(change))


def _probe_status(message: dict, probes: list[Invoice]) -> str | None:
    """The status of a probe's event, None for any other message."""
    event = message["payload"]["data"]["invoiceStatusChanged"]
    invoice = event["invoice"]
    ids = {to_base64("Invoice", str(probe.id)) for probe in probes}
    numbers = {probe.number for probe in probes}
    return event["status"] if invoice.get("id") in ids or invoice.get("number") in numbers else None


async def _until_subscribed(redis, probes: list[Invoice], subscribers: list[tuple[LiveClient, str]]) -> None:
    """Probes published again and again until every subscriber has received one; whatever
    they received until then is dropped (nothing else is published yet)."""
    heard = [False] * len(subscribers)
    other: list[dict] = []
    for _ in range(200):
        await _publish_probes(redis, probes, "APPROVED")
        await asyncio.sleep(0.1)
        for index, (live, op) in enumerate(subscribers):
            inbox = live.inbox[op]
            while not inbox.empty():
                message = inbox.get_nowait()
                probe = _probe_status(message, probes) is not None
                heard[index] = heard[index] or probe
                if not probe:
                    other.append(message)
        if all(heard):
            return
    raise AssertionError(f"subscribers {[i for i, h in enumerate(heard) if not h]} never received the probes; {other[:3]}")


async def _until_end(redis, probes: list[Invoice], subscribers: list[tuple[LiveClient, str]]) -> list[list[dict]]:
    """Each subscriber's messages up to the end marker, probes left out."""
    await _publish_probes(redis, probes, "VOIDED")
    received = []
    for live, op in subscribers:
        messages = []
        while True:
            message = await live.next(op, timeout=60)
            status = _probe_status(message, probes)
            if status == "VOIDED":
                break
            if status is None:
                messages.append(message)
        received.append(messages)
    return received


def _events(messages: list[dict]) -> list[tuple]:
    out = []
    for message in messages:
        assert message["type"] == "next", message
        event = message["payload"]["data"]["invoiceStatusChanged"]
        # Keyed by customer: the invoice is loaded as it is on arrival, numbered or not yet.
        out.append((event["invoice"]["account"]["name"], event["status"], event["deliveryStatus"]))
    return out


async def test_events_of_another_web_process_and_of_the_worker_arrive_in_order(processes, mailbox, world, redis):
    web_a, web_b = processes
    mailbox[1].messages.clear()
    for account in (world.account, world.other_account):
        account.billing_emails = [f"ap@{account.name.lower()}.example"]
        await account.save()
    world.foreign_account.billing_profile = await f.billing_profile(world.foreign_org)
    await world.foreign_account.save()
    period = await f.billing_period(world.org)
    mine = await f.invoice(world.account, period)
    theirs = await f.invoice(world.other_account, period)
    foreign = await f.invoice(world.foreign_account, await f.billing_period(world.foreign_org))
    ids = [to_base64("Invoice", str(i.id)) for i in (mine, theirs)]
    probes = await _probes(world)
    probed = [to_base64("Invoice", str(probe.id)) for probe in probes]
    # MSP users watch these invoices only: the worker closes last month on start-up, and
    # those new invoices are theirs to see too.
    watched = {"owner": {"invoices": ids + probed[:2]}, "viewer": {"invoices": ids + probed[:2]},
               "foreign_owner": {"invoices": [to_base64("Invoice", str(foreign.id)), probed[2]]}}
    clients = {role: LiveClient(web_a, world.tokens[role]) for role in world.ROLES}
    for live in clients.values():
        await live.__aenter__()
    try:
        ops = {role: await live.subscribe(WATCH, watched.get(role)) for role, live in clients.items()}
        await _until_subscribed(redis, probes, [(live, ops[role]) for role, live in clients.items()])
        async with httpx.AsyncClient(base_url=f"http://{web_b}") as b:
            owner, foreign_owner = world.tokens["owner"], world.tokens["foreign_owner"]
            generated = await gql(b, BULK % "generateInvoices", {"ids": ids}, token=owner)
            assert [r["invoice"]["status"] for r in generated["data"]["generateInvoices"]["results"]] == ["GENERATING"] * 2
            await gql(b, BULK % "generateInvoices", {"ids": [to_base64("Invoice", str(foreign.id))]}, token=foreign_owner)

            async def generated_all() -> bool:
                return await Invoice.filter(status="AWAITING_APPROVAL").count() == 3
            await _until(generated_all, what="generation")
            # The month has no costs: its zero total is a warning the approval acknowledges.
            approve = """mutation($ids: [ID!]!) { approveInvoices(ids: $ids, acknowledge: [ZERO_TOTAL]) {
              ... on InvoiceActionResults { results { invoice { status } error { code } } } } }"""
            approved = await gql(b, approve, {"ids": ids[:1]}, token=owner)
            assert approved["data"]["approveInvoices"]["results"][0]["invoice"]["status"] == "APPROVED", approved

            async def sent() -> bool:
                return (await Invoice.get(id=mine.id)).delivery_status == "SENT"
            await _until(sent, what="the e-mail")
            # The worker publishes once the change has committed: the database says SENT a
            # moment before the event leaves. The end marker goes out once it has arrived.
            seen: list[dict] = []

            async def heard_sent() -> bool:
                inbox = clients["customer"].inbox[ops["customer"]]
                while not inbox.empty():
                    seen.append(inbox.get_nowait())
                return (world.account.name, "APPROVED", "SENT") in _events(seen)
            await _until(heard_sent, what="the customer's SENT event")
        ended = await _until_end(redis, probes, [(live, ops[role]) for role, live in clients.items()])
        ended[list(clients).index("customer")][:0] = [m for m in seen if _probe_status(m, probes) is None]
        got = {role: _events(messages) for role, messages in zip(clients, ended)}
    finally:
        for live in clients.values():
            await live.__aexit__(None, None, None)

    number, other_number = world.account.name, world.other_account.name
    mine_seen = [e for e in got["owner"] if e[0] == number]
    assert mine_seen == [
        (number, "GENERATING", "NOT_SENT"), (number, "AWAITING_APPROVAL", "NOT_SENT"),
        (number, "APPROVED", "QUEUED"), (number, "APPROVED", "SENT"),
    ]
    assert [e for e in got["owner"] if e[0] != number] == [
        (other_number, "GENERATING", "NOT_SENT"), (other_number, "AWAITING_APPROVAL", "NOT_SENT"),
    ]
    assert sorted(got["viewer"]) == sorted(got["owner"])
    assert got["customer"] == [(number, "APPROVED", "QUEUED"), (number, "APPROVED", "SENT")]
    assert got["other_customer"] == []
    assert [e[1] for e in got["foreign_owner"]] == ["GENERATING", "AWAITING_APPROVAL"]
    assert len(mailbox[1].messages) == 1


async def test_no_event_crosses_accounts_or_organizations_across_many_tries(processes, world, redis):
    """Hundreds of changes of every kind, published as any process publishes them: each
    subscriber, on either web process, receives exactly the ones its scope allows."""
    period = await f.billing_period(world.org)
    invoices = {
        "account": await f.invoice(world.account, period),
        "other_account": await f.invoice(world.other_account, period),
        "foreign_account": await f.invoice(world.foreign_account, await f.billing_period(world.foreign_org)),
    }
    query = "subscription($ids: [ID!]) { invoiceStatusChanged(invoiceIds: $ids) { status invoice { id } } }"
    gids = {which: to_base64("Invoice", str(invoice.id)) for which, invoice in invoices.items()}
    # Customers watch everything; MSP users these invoices (the worker's start-up close of last
    # month makes invoices of its own).
    probes = await _probes(world)
    probed = [to_base64("Invoice", str(probe.id)) for probe in probes]
    watched = {"owner": [gids["account"], gids["other_account"], *probed[:2]],
               "viewer": [gids["account"], gids["other_account"], *probed[:2]],
               "foreign_owner": [gids["foreign_account"], probed[2]]}
    roles = list(world.ROLES)
    clients = [LiveClient(web, world.tokens[role]) for web in processes for role in roles]
    for live in clients:
        await live.__aenter__()
    try:
        ops = [await live.subscribe(query, {"ids": watched.get(roles[index % len(roles)])})
               for index, live in enumerate(clients)]
        await _until_subscribed(redis, probes, list(zip(clients, ops)))
        rng = random.Random(7)
        published = []
        for _ in range(300):
            which = rng.choice(list(invoices))
            change = events.InvoiceChange.of(invoices[which])
            status = rng.choice(["READY_TO_INVOICE", "GENERATING", "AWAITING_APPROVAL", "ERROR", "APPROVED", "VOIDED"])
            approved = status in ("APPROVED", "VOIDED") and rng.random() < 0.9
            published.append((which, status, approved))
            await redis.publish(events.channel(redis, events.INVOICE_CHANNEL), json.dumps({
                **json.loads(change.to_json()), "status": status, "approved": approved,
            }))
        received = await _until_end(redis, probes, list(zip(clients, ops)))
    finally:
        for live in clients:
            await live.__aexit__(None, None, None)

    def allowed(role: str) -> list[str]:
        return [
            status for which, status, approved in published
            if (role in ("owner", "viewer") and which != "foreign_account")
            or (role == "foreign_owner" and which == "foreign_account")
            or (role == "customer" and which == "account" and approved)
            or (role == "other_customer" and which == "other_account" and approved)
        ]

    for index, messages in enumerate(received):
        role = roles[index % len(roles)]
        assert [m["payload"]["data"]["invoiceStatusChanged"]["status"] for m in messages] == allowed(role), role
    customer_ids = {
        m["payload"]["data"]["invoiceStatusChanged"]["invoice"]["id"]
        for index, messages in enumerate(received) if roles[index % len(roles)] == "customer" for m in messages
    }
    assert customer_ids == {to_base64("Invoice", str(invoices["account"].id))}
