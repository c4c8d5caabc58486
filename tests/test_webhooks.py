"""Webhooks against a real receiver on loopback that verifies every signature with
`standardwebhooks`: each event type once per change, retries (on a controlled clock) and
disabling, organization isolation, refused URLs, rotation, and the scope matrix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from infra.webhooks import Sender
from jobs import dispatch
from jobs.effects import following
from jobs.mailer import RecipientOutcome
from jobs.webhooks import PER_ENDPOINT, OtherJobs, deliver_due, lane_limit, notify_webhook_disabled
from models import CostSource, User
from models.actors import Actor
from models.auth import Principal
from models.billing_periods.closing import close_period
from models.cost_sources import CostSourceKind, CostSourceState, record_sync
from models.costs import import_costs, register_delivery, run_import
from models.credit_notes.operations import create_credit_note
from models.credit_notes.tables import CreditMode
from models.errors import CostFileRejected
from models.invoices.actions import approve, reissue, void
from models.invoices.delivery import record_delivery
from models.payments.ledger import record_payment, refund_payment
from models.payments.overdue import mark_overdue
from models.payments.tables import PaymentMethod
from models.webhooks import (
    CLAIM,
    EVENT_TYPES,
    RETRY_DELAYS,
    Attempted,
    DeliveryState,
    Event,
    Outcome,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    claim_due,
    node_id,
    queue_events,
    record_attempts,
    release_claims,
)
from models.webhooks import test_event as webhook_test_event
from tests import factories
from tests.conftest import serving
from tests.graphql import gql
from tests.webhook_receiver import Receiver

SAMPLE = Path(__file__).parent / "data" / "focus-1.0-sample.csv"
CREATE = """mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) {
  __typename ... on WebhookEndpointCreated { secret webhookEndpoint { id url events enabled } }
  ... on UserError { code field message } } }"""
ENDPOINTS = """{ webhookEndpoints { totalCount edges { node { id url enabled events
  deliveries { edges { node { id eventType state attempts eventId
    attemptLog { statusCode durationMs response error } } } } } } } }"""


@pytest.fixture
def hooks(settings):
    """The server's settings with the receiver reachable: loopback and http:// allowed."""
    return settings.model_copy(
        update={
            "webhook_private_addresses": True,
            "webhook_allow_http": True,
            "webhook_timeout_seconds": 1.0,
        }
    )


@pytest.fixture
async def receiver(settings):
    found = Receiver()
    async with serving(found.app, settings) as address:
        found.address = address
        yield found


@pytest.fixture
async def hooks_client(hooks, redis):
    from invoicing.app import create_app

    application = create_app(hooks)
    application.state.redis = redis
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as http:
        yield http
    await application.state.events.close()


async def add_endpoint(client, token, receiver, path, events=None) -> tuple[str, str]:
    result = await gql(
        client, CREATE, {"input": {"url": receiver.url(path), "events": events or list(EVENT_TYPES), "description": path}}, token
    )
    answer = result["data"]["createWebhookEndpoint"]
    assert answer["__typename"] == "WebhookEndpointCreated", answer
    receiver.secrets[path].append(answer["secret"])
    return answer["webhookEndpoint"]["id"], answer["secret"]


async def deliver(settings, at: datetime | None = None, limit=None) -> int:
    async with Sender(settings) as sender:
        return await deliver_due(settings, sender, (lambda: at) if at else (lambda: datetime.now(UTC)), limit)


async def _refund(owner, invoice):
    from models import Payment

    payment = await Payment.filter(invoice_id=invoice.id).order_by("created_at").first()
    return await refund_payment(owner, payment.id, amount=Decimal("1.00"), refunded_on=date.today())


def types_of(received) -> list[str]:
    return sorted(one.type for one in received)


async def approved_invoice(world, number: str, **kw):
    """An approved invoice of the world's account, each of a month of its own (numbered by it)."""
    month = date(2024, int(number[-2:]), 1)
    period = await factories.billing_period(world.org, month)
    return await factories.generated_invoice(world.account, period, number=number, status="APPROVED", **kw)


async def test_each_event_type_is_delivered_once_per_change_signed(world, redis, hooks, hooks_client, receiver, tmp_path):
    await add_endpoint(hooks_client, world.tokens["owner"], receiver, "all")
    owner = Principal(await User.get(id=world.users["owner"].id), None)
    overdue = await approved_invoice(world, "INV-2024-0001")
    async with following(redis):
        await mark_overdue(datetime.now(UTC), Actor.system("test"))
    paid = await approved_invoice(world, "INV-2024-0002")
    credited = await approved_invoice(world, "INV-2024-0003")
    voided = await approved_invoice(world, "INV-2024-0004")
    awaiting = await factories.generated_invoice(
        world.other_account, await factories.billing_period(world.org, date(2024, 12, 1)), number="INV-2024-0012"
    )
    source = await CostSource.create(organization=world.org, name="exports", kind=CostSourceKind.AWS_S3, bucket="b", credentials="sealed")
    changes = [
        lambda: record_payment(owner, paid.id, amount=Decimal("10.00"), paid_on=date.today(), method=PaymentMethod.BANK_TRANSFER),
        lambda: record_payment(owner, paid.id, amount=paid.total - Decimal("10.00"), paid_on=date.today(), method=PaymentMethod.CARD),
        lambda: _refund(owner, paid),
        lambda: create_credit_note(owner, credited.id, reason="Goodwill", mode=CreditMode.FULL, notify_customer=False),
        lambda: void(owner, [voided.id], reason="Wrong account", notify_customer=False),
        lambda: reissue(owner, voided.id),
        lambda: record_delivery(paid.id, [], "no billing e-mail"),
        lambda: approve(owner, [awaiting.id], notify_customer=False),
        lambda: record_delivery(awaiting.id, [RecipientOutcome("billing@contoso.example", True, "250 OK")], None),
        lambda: import_costs(world.org.id, SAMPLE.read_bytes(), filename="costs.csv"),
        lambda: record_sync(source.id, state=CostSourceState.FAILING, error="denied"),
        lambda: record_sync(source.id, state=CostSourceState.FAILING, error="denied again"),
        lambda: close_period(world.org.id, date(2024, 11, 1), Actor.system("test"), force=True),
    ]
    for change in changes:  # each a unit of work of its own, as a mutation, a job or a command is
        async with following(redis):
            await change()
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"not,focus\n1,2\n")
    refused = await register_delivery(world.org.id, [bad], filename="bad.csv")
    with pytest.raises(CostFileRejected):
        async with following(redis):
            await run_import(refused.id)
    attempted = await deliver(hooks)
    received = receiver.at("all")
    assert all(one.verified for one in received)
    assert types_of(received) == sorted(
        [
            "invoice.overdue",
            "payment.recorded",
            "payment.recorded",
            "invoice.partially_paid",
            "invoice.paid",
            "payment.refunded",
            "credit_note.issued",
            "invoice.voided",
            "invoice.reissued",
            "invoice.delivery_failed",
            "invoice.approved",
            "invoice.sent",
            "cost_import.completed",
            "cost_import.failed",
            "cost_source.failing",
            "billing_period.closed",
        ]
    )
    assert attempted == len(received) == 16
    assert len({one.headers["webhook-id"] for one in received}) == 16
    by_type = {one.type: one.json for one in received}
    assert by_type["invoice.overdue"]["data"]["invoice"]["id"] == node_id("Invoice", overdue.id)
    assert by_type["invoice.overdue"]["data"]["invoice"]["paymentStatus"] == "OVERDUE"
    assert (
        by_type["invoice.paid"]["data"]["invoice"] | {"amountDue": "0.00", "paymentStatus": "PAID"}
        == by_type["invoice.paid"]["data"]["invoice"]
    )
    assert by_type["invoice.reissued"]["data"]["invoice"]["replaces"] == node_id("Invoice", voided.id)
    assert by_type["cost_source.failing"]["data"]["costSource"]["lastError"] == "denied"
    assert set(by_type["credit_note.issued"]["data"]) == {"creditNote", "invoice"}
    # The body is the stable JSON the API's names make: sorted keys, no spaces.
    body = received[0].body.decode()
    assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    assert await deliver(hooks) == 0


async def test_the_worker_delivers_after_commit_events_of_generation_approval_and_a_test(
    world,
    redis,
    hooks,
    hooks_client,
    receiver,
    smtp,
):
    """End to end through the worker: the lanes deliver what the mutations' and jobs' effects queued."""
    from jobs.worker import shared
    from tests.workers import running

    endpoint_id, _ = await add_endpoint(hooks_client, world.tokens["owner"], receiver, "live")
    worker_settings = hooks.model_copy(update={"smtp_url": smtp[0]})
    ctx = {"settings": worker_settings, **await shared(worker_settings)}
    try:
        async with running(redis, ctx):
            answer = await gql(
                hooks_client,
                "mutation($id: ID!) { sendTestWebhook(endpointId: $id) { __typename "
                "... on WebhookDeliveryQueued { delivery { eventType state } } } }",
                {"id": endpoint_id},
                world.tokens["owner"],
            )
            assert answer["data"]["sendTestWebhook"] == {
                "__typename": "WebhookDeliveryQueued",
                "delivery": {"eventType": "webhook.test", "state": "PENDING"},
            }
            await receiver.wait_for("live", 1)
            closed = await gql(
                hooks_client,
                'mutation { closeBillingPeriod(month: "2024-09", force: true) { __typename '
                "... on BillingPeriodClosed { invoices { id } } } }",
                None,
                world.tokens["owner"],
            )
            ids = [one["id"] for one in closed["data"]["closeBillingPeriod"]["invoices"]]
            assert len(ids) == 2
            await gql(
                hooks_client, "mutation($ids: [ID!]) { generateInvoices(ids: $ids) { __typename } }", {"ids": ids}, world.tokens["owner"]
            )
            received = await receiver.wait_for("live", 1 + 1 + 2 * 2, timeout=90)
    finally:
        await ctx["pdf"].close()
    assert all(one.verified for one in received)
    # Zero totals: each generated invoice awaits approval with a warning (ZERO_TOTAL).
    assert types_of(received) == sorted(
        ["webhook.test", "billing_period.closed", *["invoice.generated"] * 2, *["invoice.awaiting_approval_with_warnings"] * 2]
    )


async def test_an_endpoint_answering_500_then_200_gets_the_event_twice_and_both_attempts_are_logged(
    world,
    redis,
    hooks,
    hooks_client,
    receiver,
):
    await add_endpoint(hooks_client, world.tokens["owner"], receiver, "flaky", ["payment.recorded"])
    receiver.answers["flaky"] = [500, 200]
    invoice = await approved_invoice(world, "INV-2024-0005")
    owner = Principal(await User.get(id=world.users["owner"].id), None)
    async with following(redis):
        await record_payment(owner, invoice.id, amount=Decimal("5.00"), paid_on=date.today(), method=PaymentMethod.CASH)
    start = datetime.now(UTC)
    assert await deliver(hooks, start) == 1
    assert await deliver(hooks, start + RETRY_DELAYS[0] - timedelta(seconds=1)) == 0
    assert await deliver(hooks, start + RETRY_DELAYS[0]) == 1
    received = receiver.at("flaky")
    assert [one.verified for one in received] == [True, True]
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"]
    assert received[0].body == received[1].body
    answer = await gql(hooks_client, ENDPOINTS, None, world.tokens["viewer"])
    (delivery,) = answer["data"]["webhookEndpoints"]["edges"][0]["node"]["deliveries"]["edges"]
    assert delivery["node"]["state"] == "DELIVERED" and delivery["node"]["attempts"] == 2
    log = delivery["node"]["attemptLog"]
    assert [(a["statusCode"], a["response"], a["error"]) for a in log] == [(500, "ok", None), (200, "ok", None)]
    assert all(a["durationMs"] >= 0 for a in log)
    assert delivery["node"]["eventId"] == received[0].headers["webhook-id"]


async def test_an_endpoint_that_never_answers_is_retried_on_the_schedule_then_disabled_and_owners_emailed(
    world,
    redis,
    hooks,
    hooks_client,
    receiver,
    smtp,
):
    endpoint_id, _ = await add_endpoint(hooks_client, world.tokens["owner"], receiver, "silent", ["payment.recorded"])
    receiver.answers["silent"] = ["hang"] * 20
    invoice = await approved_invoice(world, "INV-2024-0006")
    owner = Principal(await User.get(id=world.users["owner"].id), None)
    async with following(redis):
        await record_payment(owner, invoice.id, amount=Decimal("5.00"), paid_on=date.today(), method=PaymentMethod.CASH)
    quick = hooks.model_copy(update={"webhook_timeout_seconds": 0.2})
    now = datetime.now(UTC)
    waits = []
    async with following(redis):
        for _ in range(len(RETRY_DELAYS) + 1):
            assert await deliver(quick, now) == 1
            delivery = await WebhookDelivery.get()
            if delivery.next_attempt_at is None:
                break
            waits.append(delivery.next_attempt_at - now)
            assert await deliver(quick, delivery.next_attempt_at - timedelta(seconds=1)) == 0
            now = delivery.next_attempt_at
    assert tuple(waits) == RETRY_DELAYS
    delivery = await WebhookDelivery.get()
    assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, len(RETRY_DELAYS) + 1)
    endpoint = await WebhookEndpoint.get()
    assert not endpoint.enabled and "timed out" in endpoint.disabled_reason
    assert len(receiver.at("silent")) == len(RETRY_DELAYS) + 1
    assert await notify_webhook_disabled({"settings": hooks.model_copy(update={"smtp_url": smtp[0]})}, str(endpoint.id)) == "sent"
    ((recipients, message),) = smtp[1].messages
    assert recipients == [world.users["owner"].email]
    assert receiver.url("silent") in message["Subject"]
    # Disabled: nothing more is attempted, whatever falls due.
    async with following(redis):
        await record_payment(owner, invoice.id, amount=Decimal("1.00"), paid_on=date.today(), method=PaymentMethod.CASH)
    assert await deliver(quick, now + timedelta(days=10)) == 0


async def test_an_endpoint_of_another_organization_never_sees_these_events(world, redis, hooks, hooks_client, receiver):
    await add_endpoint(hooks_client, world.tokens["owner"], receiver, "ours")
    await add_endpoint(hooks_client, world.tokens["foreign_owner"], receiver, "theirs")
    invoice = await approved_invoice(world, "INV-2024-0007")
    foreign = await factories.generated_invoice(
        world.foreign_account, await factories.billing_period(world.foreign_org), number="INV-2024-0001", status="APPROVED"
    )
    async with following(redis):
        await record_payment(
            Principal(await User.get(id=world.users["owner"].id), None),
            invoice.id,
            amount=Decimal("2.00"),
            paid_on=date.today(),
            method=PaymentMethod.CASH,
        )
        await record_payment(
            Principal(await User.get(id=world.users["foreign_owner"].id), None),
            foreign.id,
            amount=Decimal("3.00"),
            paid_on=date.today(),
            method=PaymentMethod.CASH,
        )
    await deliver(hooks)
    ours, theirs = receiver.at("ours"), receiver.at("theirs")
    assert types_of(ours) == types_of(theirs) == ["invoice.partially_paid", "payment.recorded"]
    assert {one.json["data"]["invoice"]["id"] for one in ours} == {node_id("Invoice", invoice.id)}
    assert {one.json["data"]["invoice"]["id"] for one in theirs} == {node_id("Invoice", foreign.id)}
    assert all(one.verified for one in ours + theirs)
    # Each endpoint's signature is its own: a receiver holding the other secret rejects it.
    assert receiver.secrets["ours"] != receiver.secrets["theirs"]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest",
        "https://[::1]/hook",
        "https://localhost/hook",
        "http://example.com/hook",
        "ftp://example.com/hook",
        "https://user:pw@example.com/",
    ],
)
async def test_urls_refused_when_the_setting_is_off(world, client, url):
    result = await gql(client, CREATE, {"input": {"url": url, "events": ["invoice.paid"]}}, world.tokens["owner"])
    answer = result["data"]["createWebhookEndpoint"]
    assert (answer["__typename"], answer["code"], answer["field"]) == ("ValidationError", "INVALID", "url")
    assert await WebhookEndpoint.all().count() == 0


async def test_a_name_that_resolves_to_loopback_and_a_redirect_are_refused_at_delivery(
    world,
    redis,
    settings,
    hooks,
    hooks_client,
    receiver,
):
    """Checked again at each delivery, to the address connected to: an endpoint accepted while the
    setting allowed it is refused once it does not; a redirect is an answer, never followed."""
    await add_endpoint(hooks_client, world.tokens["owner"], receiver, "named", ["payment.recorded"])
    await WebhookEndpoint.filter(url=receiver.url("named")).update(url=receiver.url("named").replace("127.0.0.1", "localhost"))
    await add_endpoint(hooks_client, world.tokens["owner"], receiver, "moved", ["payment.recorded"])
    receiver.answers["moved"] = ["redirect"]
    invoice = await approved_invoice(world, "INV-2024-0008")
    async with following(redis):
        await record_payment(
            Principal(await User.get(id=world.users["owner"].id), None),
            invoice.id,
            amount=Decimal("2.00"),
            paid_on=date.today(),
            method=PaymentMethod.CASH,
        )
    strict = settings.model_copy(update={"webhook_allow_http": True})
    named = await WebhookDelivery.get(endpoint__url__contains="localhost")
    await WebhookDelivery.exclude(id=named.id).update(next_attempt_at=datetime.now(UTC) + timedelta(hours=1))
    assert await deliver(strict) == 1
    assert receiver.at("named") == []
    attempt = await named.attempt_log.all().get()
    assert (attempt.status_code, attempt.error) == (None, "refused: the host is on a loopback, private or link-local address")
    await WebhookDelivery.filter(endpoint__url__contains="moved").update(next_attempt_at=datetime.now(UTC))
    assert await deliver(hooks) == 1
    assert len(receiver.at("moved")) == 1 and receiver.at("redirected") == []
    moved = await WebhookDelivery.get(endpoint__url__contains="moved")
    assert (moved.state, moved.last_status) == (DeliveryState.PENDING, 302)


async def test_after_a_rotation_both_secrets_sign_for_a_day(world, redis, hooks, hooks_client, receiver):
    endpoint_id, old = await add_endpoint(hooks_client, world.tokens["owner"], receiver, "rotating", ["payment.recorded"])
    result = await gql(
        hooks_client,
        "mutation($id: ID!) { rotateWebhookSecret(id: $id) { __typename ... on "
        "WebhookSecretRotated { secret webhookEndpoint { previousSecretValidUntil } } } }",
        {"id": endpoint_id},
        world.tokens["owner"],
    )
    new = result["data"]["rotateWebhookSecret"]["secret"]
    assert new.startswith("whsec_") and new != old
    receiver.secrets["rotating"] = [new]
    invoice = await approved_invoice(world, "INV-2024-0009")
    owner = Principal(await User.get(id=world.users["owner"].id), None)
    async with following(redis):
        await record_payment(owner, invoice.id, amount=Decimal("1.00"), paid_on=date.today(), method=PaymentMethod.CASH)
    await deliver(hooks)
    (first,) = receiver.at("rotating")
    assert first.verified and len(first.headers["webhook-signature"].split(" ")) == 2
    receiver.secrets["rotating"] = [old]
    receiver.received.clear()
    await WebhookDelivery.all().update(state=DeliveryState.PENDING, next_attempt_at=datetime.now(UTC))
    await deliver(hooks)
    assert [one.verified for one in receiver.at("rotating")] == [True]
    # A day later only the new secret signs.
    receiver.received.clear()
    await WebhookDelivery.all().update(state=DeliveryState.PENDING, next_attempt_at=datetime.now(UTC))
    await deliver(hooks, datetime.now(UTC) + timedelta(days=1, minutes=1))
    (late,) = receiver.at("rotating")
    assert not late.verified and len(late.headers["webhook-signature"].split(" ")) == 1


MUTATIONS = {
    "update": (
        "mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: {enabled: false}) { __typename } }",
        "updateWebhookEndpoint",
        "WebhookEndpointSaved",
    ),
    "rotate": ("mutation($id: ID!) { rotateWebhookSecret(id: $id) { __typename } }", "rotateWebhookSecret", "WebhookSecretRotated"),
    "test": ("mutation($id: ID!) { sendTestWebhook(endpointId: $id) { __typename } }", "sendTestWebhook", "WebhookDeliveryQueued"),
    "delete": ("mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { __typename } }", "deleteWebhookEndpoint", "WebhookEndpointDeleted"),
}


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "foreign_owner"])
async def test_scope_matrix(world, hooks_client, receiver, role):
    endpoint_id, secret = await add_endpoint(hooks_client, world.tokens["owner"], receiver, "matrix")
    token = world.tokens[role]
    listed = await gql(hooks_client, ENDPOINTS, None, token)
    node = await gql(hooks_client, "query($id: ID!) { node(id: $id) { id } }", {"id": endpoint_id}, token)
    created = await gql(hooks_client, CREATE, {"input": {"url": receiver.url("x"), "events": ["invoice.paid"]}}, token)
    if role in ("owner", "viewer"):
        assert listed["data"]["webhookEndpoints"]["totalCount"] == 1
        assert node["data"]["node"] == {"id": endpoint_id}
        assert secret not in json.dumps(listed)
    elif role == "customer":
        assert listed["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert node["data"]["node"] is None
    else:
        assert listed["data"]["webhookEndpoints"]["totalCount"] == 0
        assert node["data"]["node"] is None
    if role in ("owner", "foreign_owner"):  # each in its own organization
        assert created["data"]["createWebhookEndpoint"]["__typename"] == "WebhookEndpointCreated"
    else:
        assert created["data"] is None and created["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    for query, field, success in MUTATIONS.values():
        answer = await gql(hooks_client, query, {"id": endpoint_id}, token)
        if role == "owner":
            expected = "InvalidTransitionError" if field == "sendTestWebhook" else success
            assert answer["data"][field]["__typename"] == expected
        elif role == "foreign_owner":
            assert answer["data"][field]["__typename"] == "NotFoundError"
        else:
            assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    remaining = await WebhookEndpoint.all().order_by("url").values_list("organization_id", "url")
    ours, theirs = (world.org.id, receiver.url("matrix")), (world.foreign_org.id, receiver.url("x"))
    assert remaining == {"owner": [(world.org.id, receiver.url("x"))], "foreign_owner": [ours, theirs]}.get(role, [ours])


async def test_a_delivery_is_redelivered_by_its_owner_only(world, redis, hooks, hooks_client, receiver):
    endpoint_id, _ = await add_endpoint(hooks_client, world.tokens["owner"], receiver, "again")
    sent = await gql(
        hooks_client,
        "mutation($id: ID!) { sendTestWebhook(endpointId: $id) { ... on WebhookDeliveryQueued { delivery { id } } } }",
        {"id": endpoint_id},
        world.tokens["owner"],
    )
    delivery_id = sent["data"]["sendTestWebhook"]["delivery"]["id"]
    await deliver(hooks)
    redeliver = (
        "mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { __typename ... on WebhookDeliveryQueued { "
        "delivery { state attempts } } ... on UserError { field } } }"
    )
    foreign = await gql(hooks_client, redeliver, {"id": delivery_id}, world.tokens["foreign_owner"])
    assert foreign["data"]["redeliverWebhook"] == {"__typename": "NotFoundError", "field": "deliveryId"}
    viewer = await gql(hooks_client, redeliver, {"id": delivery_id}, world.tokens["viewer"])
    assert viewer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    again = await gql(hooks_client, redeliver, {"id": delivery_id}, world.tokens["owner"])
    assert again["data"]["redeliverWebhook"] == {"__typename": "WebhookDeliveryQueued", "delivery": {"state": "PENDING", "attempts": 0}}
    await deliver(hooks)
    first, second = receiver.at("again")
    assert first.verified and second.verified and first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


async def test_endpoint_changes_are_in_the_audit_log_with_their_secrets_masked(hooks_client, world, receiver):
    from models import AuditEntry

    token = world.tokens["owner"]
    endpoint_id, secret = await add_endpoint(hooks_client, token, receiver, "/audited", events=["invoice.approved"])
    for query in (
        'mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: {description: "ERP"}) { __typename } }',
        "mutation($id: ID!) { rotateWebhookSecret(id: $id) { __typename } }",
        "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { __typename } }",
    ):
        answer = await gql(hooks_client, query, {"id": endpoint_id}, token)
        assert "errors" not in answer and not next(iter(answer["data"].values()))["__typename"].endswith("Error"), answer
    log = await gql(
        hooks_client,
        "{ auditLog(filter: {entity: WEBHOOK_ENDPOINT}) { edges { node { actor action changes { field before after } } } } }",
        {},
        token,
    )
    found = [edge["node"] for edge in log["data"]["auditLog"]["edges"]][::-1]
    assert [entry["action"] for entry in found] == ["CREATED", "UPDATED", "UPDATED", "DELETED"]
    assert {entry["actor"] for entry in found} == {world.users["owner"].email}
    made, described, rotated, deleted = ({c["field"]: (c["before"], c["after"]) for c in e["changes"]} for e in found)
    assert made["url"] == (None, receiver.url("/audited")) and made["secret"] == (None, "********")
    assert described == {"description": ("/audited", "ERP")}
    assert rotated["secret"] == ("********", "********") and rotated["previous_secret"] == (None, "********")
    assert deleted["url"] == (receiver.url("/audited"), None)
    assert secret not in str(await AuditEntry.all().values_list("changes", flat=True))


async def _burst(world, hooks_client, receiver, paths: list[str], count: int) -> None:
    """`count` events of the world's organization queued at once to an endpoint per path."""
    for path in paths:
        await add_endpoint(hooks_client, world.tokens["owner"], receiver, path, ["payment.recorded"])
    events = [Event(world.org.id, "payment.recorded", {"payment": {"id": node_id("Payment", n)}}) for n in range(count)]
    assert len(await queue_events(events, datetime.now(UTC))) == count * len(paths)


async def test_a_burst_is_posted_concurrently_at_most_four_at_once_to_an_endpoint_and_every_attempt_logged(
    world, hooks, hooks_client, receiver
):
    await _burst(world, hooks_client, receiver, ["one", "two"], 40)
    receiver.delay.update({"one": 0.05, "two": 0.05})
    receiver.answers["two"] = [500] * 10  # a failed attempt is logged beside the successes, and retried
    assert await deliver(hooks.model_copy(update={"webhook_concurrency": 16})) == 80
    assert receiver.peak["one"] == receiver.peak["two"] == PER_ENDPOINT
    for path in ("one", "two"):
        received = receiver.at(path)
        assert len(received) == 40 and all(one.verified for one in received)
        assert len({one.headers["webhook-id"] for one in received}) == 40
    states = await WebhookDelivery.all().values_list("endpoint__url", "state", "attempts")
    assert sorted(states) == sorted(
        [(receiver.url("one"), DeliveryState.DELIVERED, 1)] * 40
        + [(receiver.url("two"), DeliveryState.DELIVERED, 1)] * 30
        + [(receiver.url("two"), DeliveryState.PENDING, 1)] * 10
    )
    logged = await WebhookAttempt.all().values_list("delivery__endpoint__url", "status_code", "response")
    assert sorted(logged) == sorted(
        [(receiver.url("one"), 200, "ok")] * 40 + [(receiver.url("two"), 200, "ok")] * 30 + [(receiver.url("two"), 500, "ok")] * 10
    )
    # The failures come again after the first wait, and only they.
    assert await deliver(hooks, datetime.now(UTC) + RETRY_DELAYS[0]) == 10
    assert await WebhookDelivery.filter(state=DeliveryState.DELIVERED, attempts=2).count() == 10
    assert len(receiver.at("two")) == 50


def _holding():
    """Another job for the worker (arq's function "hold"): it runs until `release` is set, and
    sets `started` as it begins."""
    from arq import func

    started, release = asyncio.Event(), asyncio.Event()

    async def hold(ctx: dict) -> None:
        started.set()
        await release.wait()

    return func(hold, name="hold", keep_result=0, timeout=120), started, release


@contextlib.asynccontextmanager
async def _worker(redis, settings, *extra):
    """A worker as `jobs.worker` runs one, telling its lanes of the other jobs it runs (with
    `extra` functions and no cron); its context."""
    from jobs.worker import WorkerSettings
    from tests.workers import running

    ctx = {"settings": settings, "other_jobs": OtherJobs()}
    job_hooks = {name: getattr(WorkerSettings, name) for name in ("on_job_start", "on_job_end", "after_job_end")}
    async with running(redis, ctx, functions=[*WorkerSettings.functions, *extra], **job_hooks):
        yield ctx


async def _settled(receiver, path: str, timeout: float = 30) -> None:
    """Until every delivery the receiver got is logged as delivered and no delivery is held by
    a lane (each one pending is due, not claimed)."""
    async with asyncio.timeout(timeout):
        while True:
            now = datetime.now(UTC)
            held = await WebhookDelivery.filter(state=DeliveryState.PENDING, next_attempt_at__gt=now).exists()
            logged = await WebhookDelivery.filter(state=DeliveryState.DELIVERED).count()
            if not held and logged == len(receiver.at(path)):
                return
            await asyncio.sleep(0.05)


async def test_while_the_worker_runs_another_job_the_lanes_post_nothing_then_deliver_each_once_when_it_ends(
    world, redis, hooks, hooks_client, receiver
):
    await _burst(world, hooks_client, receiver, ["held"], 60)
    receiver.delay["held"] = 0.3
    settings = hooks.model_copy(update={"webhook_lanes": 1})
    hold, started, release = _holding()
    async with _worker(redis, settings, hold):
        await dispatch.start_webhook_lanes(redis, settings.webhook_lanes)
        await receiver.wait_for("held", 1)
        await redis.enqueue_job("hold")
        await asyncio.wait_for(started.wait(), 30)
        before = len(receiver.at("held"))
        # The posts in flight end and are logged, what the lane took but did not post is given
        # back (due, held by no one), and nothing more is posted while the other job runs.
        await _settled(receiver, "held")
        posted = len(receiver.at("held"))
        await asyncio.sleep(1.5)
        assert len(receiver.at("held")) == posted <= before + PER_ENDPOINT and posted < 60
        assert await WebhookDelivery.filter(state=DeliveryState.PENDING).count() == 60 - posted
        assert await redis.exists(dispatch.webhook_lane_lock(0)), "the lane waits rather than ends"
        release.set()
        received = await receiver.wait_for("held", 60)
        await _settled(receiver, "held")
    assert len(receiver.at("held")) == 60 and all(one.verified for one in received)
    assert len({one.headers["webhook-id"] for one in received}) == 60
    assert await WebhookDelivery.filter(state=DeliveryState.DELIVERED, attempts=1).count() == 60
    assert await WebhookAttempt.all().count() == 60


async def test_a_lane_that_stopped_for_a_short_job_goes_on_once_it_ended(world, redis, hooks, hooks_client, receiver):
    """The other job ends while the lane's posts in flight still run: the lane delivers the
    rest itself (no sweeper runs here to start it again)."""
    await _burst(world, hooks_client, receiver, ["brief"], 30)
    receiver.delay["brief"] = 0.3
    settings = hooks.model_copy(update={"webhook_lanes": 1})
    hold, started, release = _holding()
    release.set()
    async with _worker(redis, settings, hold):
        await dispatch.start_webhook_lanes(redis, settings.webhook_lanes)
        await receiver.wait_for("brief", 1)
        await redis.enqueue_job("hold")
        await asyncio.wait_for(started.wait(), 30)
        received = await receiver.wait_for("brief", 30)
        await _settled(receiver, "brief")
    assert len(receiver.at("brief")) == 30 and len({one.headers["webhook-id"] for one in received}) == 30
    assert await WebhookDelivery.filter(state=DeliveryState.DELIVERED, attempts=1).count() == 30


async def test_a_worker_busy_past_the_longest_wait_lets_its_lanes_post_a_few_at_once(world, redis, hooks, hooks_client, receiver):
    await _burst(world, hooks_client, receiver, ["late"], 8)
    receiver.delay["late"] = 0.2
    settings = hooks.model_copy(
        update={"webhook_lanes": 1, "webhook_concurrency": 16, "webhook_concurrency_busy": 2, "webhook_busy_max_wait_seconds": 2.0}
    )
    hold, started, release = _holding()
    async with _worker(redis, settings, hold) as ctx:
        await redis.enqueue_job("hold")
        await asyncio.wait_for(started.wait(), 30)
        busy_since = time.monotonic() - ctx["other_jobs"].busy_for()
        await dispatch.start_webhook_lanes(redis, settings.webhook_lanes)
        received = await receiver.wait_for("late", 8)
        await _settled(receiver, "late")
        busy = bool(ctx["other_jobs"])
        release.set()
    assert busy, "delivered while the other job still ran"
    assert min(one.at for one in received) >= busy_since + 2.0
    assert receiver.peak["late"] == 2
    assert len({one.headers["webhook-id"] for one in received}) == 8
    assert await WebhookDelivery.filter(state=DeliveryState.DELIVERED, attempts=1).count() == 8


async def test_deliveries_taken_but_not_posted_are_given_back_due_as_they_were_unless_taken_again(world, hooks_client, receiver):
    await _burst(world, hooks_client, receiver, ["given"], 3)
    start = datetime.now(UTC)
    due = dict(await WebhookDelivery.all().values_list("id", "next_attempt_at"))
    taken = await claim_due(start, 3)
    assert len(taken) == 3 and await claim_due(start, 3) == []
    # One claim lapses and another lane takes that delivery: it stays with its new holder.
    (retaken,) = await claim_due(start + CLAIM + timedelta(seconds=1), 1)
    await release_claims(taken)
    now = dict(await WebhookDelivery.all().values_list("id", "next_attempt_at"))
    assert now == {**due, retaken.delivery_id: retaken.held_until}
    assert {one.delivery_id for one in await claim_due(start, 3)} == set(due) - {retaken.delivery_id}


async def test_the_worker_tells_the_lanes_while_other_jobs_run(hooks):
    from jobs.worker import claim_job, end_job

    others = OtherJobs()
    limit = lane_limit(hooks.model_copy(update={"webhook_concurrency": 16, "webhook_busy_max_wait_seconds": 60}), others)
    assert limit() == 16
    for job_id in ("deliver_webhooks:0:5f1c", "cron:sweep_webhooks:1796611200000"):
        await claim_job({"other_jobs": others, "job_id": job_id})
        assert limit() == 16 and others.idle.is_set()
    generation = {"other_jobs": others, "job_id": "generate_invoices:9a2b"}
    await claim_job(generation)
    assert limit() == 0 and not others.idle.is_set() and others.ids == {"generate_invoices:9a2b"}
    # Past the longest wait: a few at once (WEBHOOK_CONCURRENCY_BUSY).
    assert lane_limit(hooks.model_copy(update={"webhook_concurrency_busy": 3, "webhook_busy_max_wait_seconds": 0}), others)() == 3
    await end_job(generation)
    assert limit() == 16 and others.idle.is_set() and others.busy_for() == 0


async def test_a_batch_of_attempts_moves_each_delivery_and_the_endpoints_streak_in_order(world, hooks_client, receiver):
    await _burst(world, hooks_client, receiver, ["streak"], 4)
    first, second, third, fourth = await WebhookDelivery.all().order_by("created_at", "id").values_list("id", flat=True)
    endpoint = await WebhookEndpoint.get()
    start = datetime.now(UTC)
    failed, answered = Outcome(None, 5, error="timed out"), Outcome(204, 3, response="")
    # A failure, a success, then a failure: the streak starts at the last failure.
    done = [Attempted(first, failed, start), Attempted(second, answered, start), Attempted(third, failed, start + timedelta(seconds=1))]
    states = await record_attempts(done, timedelta(hours=48))
    assert states == {first: DeliveryState.PENDING, second: DeliveryState.DELIVERED, third: DeliveryState.PENDING}
    await endpoint.refresh_from_db()
    assert endpoint.failing_since == start + timedelta(seconds=1) and endpoint.enabled
    # Failing on for two days (one attempt of a batch): disabled, its pending deliveries failed.
    later = start + timedelta(hours=48, seconds=1)
    assert await record_attempts([Attempted(fourth, failed, later)], timedelta(hours=48)) == {fourth: DeliveryState.PENDING}
    await endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_at == later and "timed out" in endpoint.disabled_reason
    assert await WebhookDelivery.filter(state=DeliveryState.PENDING).count() == 0
    rows = await WebhookDelivery.filter(id__in=[first, third]).values_list("attempts", "last_status", "next_attempt_at")
    assert sorted(rows, key=str) == [(1, None, None), (1, None, None)]
    assert await WebhookAttempt.filter(delivery_id=second).values_list("status_code", "duration_ms") == [(204, 3)]


async def _test_event(path: str) -> None:
    """A `webhook.test` event queued to the endpoint added for `path`, due now."""
    from models.webhooks import queue_test

    endpoint = await WebhookEndpoint.get(description=path)
    await queue_test(endpoint, webhook_test_event(endpoint), datetime.now(UTC))


async def test_a_kept_connection_serves_its_endpoint_until_the_address_changes_or_is_refused(
    world, settings, hooks, hooks_client, receiver
):
    """A lane keeps connections alive between deliveries, but only to the name and the address
    each delivery's own check allowed: a new address (nothing listens there) or a check that now
    refuses the address posts nothing on the connection kept for the old one."""
    await add_endpoint(hooks_client, world.tokens["owner"], receiver, "kept")
    async with Sender(hooks) as sender:
        for _ in range(2):
            await _test_event("kept")
            assert await deliver_due(hooks, sender) == 1
        first, second = receiver.at("kept")
        assert first.verified and second.verified and first.peer == second.peer
        # The endpoint moves to an address where nothing listens: no post on the kept connection.
        moved = receiver.url("kept").replace("127.0.0.1", "127.0.0.2")
        await WebhookEndpoint.filter(url=receiver.url("kept")).update(url=moved)
        await _test_event("kept")
        assert await deliver_due(hooks, sender) == 1
        # Back at the first address, but the check now refuses loopback addresses.
        await WebhookEndpoint.filter(url=moved).update(url=receiver.url("kept"))
        sender.settings = settings.model_copy(update={"webhook_allow_http": True})
        await _test_event("kept")
        assert await deliver_due(sender.settings, sender) == 1
    assert len(receiver.at("kept")) == 2
    errors = await WebhookAttempt.all().order_by("at").values_list("status_code", "error")
    assert errors == [
        (200, None),
        (200, None),
        (None, "could not connect (refused, unreachable or TLS failed)"),
        (None, "refused: the host is on a loopback, private or link-local address"),
    ]


async def test_a_rotated_secret_signs_on_the_connection_kept_alive(world, hooks, hooks_client, receiver):
    endpoint_id, old = await add_endpoint(hooks_client, world.tokens["owner"], receiver, "turning")
    async with Sender(hooks) as sender:
        await _test_event("turning")
        assert await deliver_due(hooks, sender) == 1
        rotated = await gql(
            hooks_client,
            "mutation($id: ID!) { rotateWebhookSecret(id: $id) { ... on WebhookSecretRotated { secret } } }",
            {"id": endpoint_id},
            world.tokens["owner"],
        )
        new = rotated["data"]["rotateWebhookSecret"]["secret"]
        await _test_event("turning")
        assert await deliver_due(hooks, sender) == 1
    before, after = receiver.at("turning")
    assert before.peer == after.peer
    assert len(before.headers["webhook-signature"].split(" ")) == 1
    assert len(after.headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):  # a receiver holding either secret accepts it
        Webhook(secret).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(before.body, before.headers)


async def test_an_endpoint_that_closes_each_connection_gets_each_delivery_on_a_new_one(world, hooks, hooks_client, receiver):
    """An answer saying `Connection: close` (or a connection the endpoint closed while it was idle)
    is not used again: the next delivery opens another."""
    await add_endpoint(hooks_client, world.tokens["owner"], receiver, "closing")
    receiver.answers["closing"] = ["close", "close"]
    async with Sender(hooks) as sender:
        for _ in range(3):
            await _test_event("closing")
            assert await deliver_due(hooks, sender) == 1
    received = receiver.at("closing")
    assert [one.verified for one in received] == [True] * 3
    assert len({one.peer for one in received}) == 3
    assert await WebhookDelivery.filter(state=DeliveryState.DELIVERED).count() == 3


def _authority(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A certificate authority of the test's own and a certificate it signed for `localhost`:
    the authority's file, the certificate's and its key's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def made(subject: str, key, issuer: str, signer, ca: bool, names: list[str]) -> x509.Certificate:
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = made("Test authority", ca_key, "Test authority", ca_key, True, [])
    leaf = made("localhost", key, "Test authority", ca_key, False, ["localhost"])
    files = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return files


async def test_over_tls_the_certificate_is_checked_against_the_endpoints_name_not_the_address(world, hooks, hooks_client, tmp_path):
    """The connection goes to the checked address, and TLS's server name and the certificate's
    check stay the endpoint's name: `https://localhost` is delivered; the same server reached
    as `https://127.0.0.1` is refused (its certificate names `localhost` only)."""
    import asyncio
    import ssl

    import uvicorn

    from tests.conftest import free_port

    ca, cert, key = _authority(tmp_path)
    found, port = Receiver(), free_port()
    server = uvicorn.Server(
        uvicorn.Config(found.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", ssl_certfile=cert, ssl_keyfile=key)
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await asyncio.sleep(0.01)
        found.address = f"localhost:{port}"
        await add_endpoint(hooks_client, world.tokens["owner"], found, "named")
        await WebhookEndpoint.filter(description="named").update(url=f"https://localhost:{port}/named")
        await _test_event("named")
        async with Sender(hooks, tls=ssl.create_default_context(cafile=ca)) as sender:
            assert await deliver_due(hooks, sender) == 1
            await WebhookEndpoint.filter(description="named").update(url=f"https://127.0.0.1:{port}/named")
            await _test_event("named")
            assert await deliver_due(hooks, sender) == 1
    finally:
        server.should_exit = True
        await task
    (received,) = found.at("named")
    assert received.verified and received.headers["host"] == f"localhost:{port}"
    errors = await WebhookAttempt.all().order_by("at").values_list("status_code", "error")
    assert errors == [(200, None), (None, "could not connect (refused, unreachable or TLS failed)")]
