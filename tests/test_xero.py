"""Xero end to end, against a local server speaking Xero's documented API (tests/xero_server.py):
connect (PKCE checked by the server), push, push again (nothing changes), payments back, token
refresh, refused and retried pushes, rollover, disconnect; and who may see and do what."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from arq import Retry

from models import Invoice, InvoiceEvent, InvoiceLineItem, Payment
from models.actors import Actor
from models.invoices import InvoiceStatus, LineKind, PaymentStatus
from models.xero import ConnectionStatus, DocumentKind, SyncState, XeroConnection, XeroSync, documents
from models.xero.sync import request_push
from models.xero.tokens import code_challenge, seal, unseal, unseal_tokens
from tests import factories
from tests.conftest import serving
from tests.graphql import client_of, error_codes, gql
from tests.xero_server import CLIENT_ID, CLIENT_SECRET, SHORT_CODE, TENANT_ID, FakeXero, parse_xero_date

CONNECT = """mutation { connectXero { __typename ... on XeroAuthorizationStarted { authorizeUrl expiresAt }
  ... on UserError { code message } } }"""
PUSH = """mutation($ids: [ID!]!) { pushInvoicesToXero(ids: $ids) { __typename
  ... on InvoiceActionResults { succeeded results { id error { __typename code message } invoice { xeroSync { state } } } } } }"""
SYNC = """query($number: String!) { invoice(number: $number) { xeroUrl xeroSync { state message attempts xeroId url }
  timeline { kind actor detail } } }"""
INTEGRATION = """{ xero { available connection { status tenantName connectedBy paymentsCheckedAt }
  settings { autoPushAtRollover accountCode taxType mappings { lineKind lineName accountCode taxType } } } }"""
SETTINGS = """mutation($input: UpdateXeroSettingsInput!) { updateXeroSettings(input: $input) { __typename
  ... on XeroSettingsUpdated { settings { autoPushAtRollover accountCode taxType mappings { lineKind lineName accountCode taxType } } }
  ... on UserError { code field message } } }"""
DISCONNECT = """mutation { disconnectXero { __typename ... on XeroDisconnected { integration { connection { status } } }
  ... on UserError { code } } }"""


@pytest.fixture
async def fake_xero(settings):
    fake = FakeXero()
    async with serving(fake.app(), settings) as address:
        fake.base = f"http://{address}"
        yield fake
    assert fake.problems == [], fake.problems


@pytest.fixture
def xero_settings(settings, fake_xero):
    base = fake_xero.base
    configured = settings.model_copy(update={
        "xero_client_id": CLIENT_ID, "xero_client_secret": CLIENT_SECRET,
        "xero_authorize_url": f"{base}/identity/connect/authorize", "xero_token_url": f"{base}/identity/connect/token",
        "xero_revocation_url": f"{base}/identity/connect/revocation", "xero_identity_api_url": base,
        "xero_accounting_api_url": f"{base}/api.xro/2.0", "xero_retry_seconds": 0.05, "xero_push_tries": 3,
    })
    fake_xero.redirect_uri = configured.xero_callback_url
    return configured


@pytest.fixture
async def client(xero_settings, redis):
    async with client_of(xero_settings, redis) as http:
        yield http


@pytest.fixture
def ctx(xero_settings, redis):
    return {"settings": xero_settings, "redis": redis, "job_try": 1}


async def connect(client, world, fake: FakeXero) -> XeroConnection:
    started = (await gql(client, CONNECT, token=world.tokens["owner"]))["data"]["connectXero"]
    assert started["__typename"] == "XeroAuthorizationStarted", started
    response = await client.get("/xero/callback", params=fake.authorize(started["authorizeUrl"]))
    assert response.status_code == 200, response.text
    return await XeroConnection.get(organization_id=world.org.id)


async def approved(world, number: str = "INV-2026-0001", **kw) -> Invoice:
    """As an approval freezes it: its credit notes print the same customer (one contact in Xero)."""
    period = kw.pop("period", None) or await factories.billing_period(world.org)
    return await factories.generated_invoice(
        world.account, period, number=number, status="APPROVED",
        snapshot={"msp": {"company_name": "Northwind"},
                  "customer": {"name": "Contoso", "official_company_name": "Contoso Ltd", "po_number": "PO-77"}}, **kw,
    )


async def push(client, world, ctx, invoice: Invoice, *, role: str = "owner") -> dict:
    """pushInvoicesToXero, then the job it queued (run here, as the worker would)."""
    from jobs.xero import push_to_xero

    result = await gql(client, PUSH, {"ids": [_gid(invoice)]}, token=world.tokens[role])
    sync = await XeroSync.get_or_none(document_id=invoice.id)
    if sync is not None:
        await push_to_xero(ctx, str(sync.id))
    return result


def _gid(invoice: Invoice) -> str:
    from strawberry.relay import GlobalID

    return str(GlobalID("Invoice", str(invoice.id)))


async def test_connect_exchanges_the_code_with_its_pkce_verifier_and_seals_the_tokens(client, world, fake_xero, xero_settings):
    connection = await connect(client, world, fake_xero)

    exchange = fake_xero.calls("POST", "/identity/connect/token")[0].body
    assert exchange["grant_type"] == "authorization_code" and exchange["redirect_uri"] == xero_settings.xero_callback_url
    assert len(exchange["code_verifier"]) >= 43
    assert (connection.tenant_id, connection.short_code, connection.status) == (TENANT_ID, SHORT_CODE, ConnectionStatus.CONNECTED)
    tokens = unseal_tokens(xero_settings, connection.tokens)
    assert tokens is not None and tokens.access_token in fake_xero.access_tokens
    # At rest the tokens are ciphertext: neither appears in the row.
    assert tokens.access_token not in connection.tokens and tokens.refresh_token not in connection.tokens
    assert fake_xero.calls("GET", "/Connections")[0].headers["authorization"] == f"Bearer {tokens.access_token}"

    viewer = (await gql(client, INTEGRATION, token=world.tokens["viewer"]))["data"]["xero"]
    assert viewer["available"] is True
    assert viewer["connection"]["status"] == "CONNECTED"
    assert viewer["connection"]["tenantName"] == "Northwind Cloud (Xero)"
    assert viewer["connection"]["connectedBy"] == world.users["owner"].email


async def test_an_authorization_serves_once_and_only_with_its_own_verifier(client, world, fake_xero):
    started = (await gql(client, CONNECT, token=world.tokens["owner"]))["data"]["connectXero"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(started["authorizeUrl"]).query).items()}
    assert query["code_challenge_method"] == "S256" and query["state"]

    # A code issued for another challenge (another verifier) is refused by Xero.
    answer = fake_xero.authorize(started["authorizeUrl"])
    fake_xero.codes[answer["code"]]["challenge"] = code_challenge("not-the-verifier-" + "x" * 40)
    refused = await client.get("/xero/callback", params=answer)
    assert refused.status_code == 400 and "did not complete" in refused.text
    # The state was spent by that attempt: it cannot be used again.
    again = await client.get("/xero/callback", params=fake_xero.authorize(started["authorizeUrl"]))
    assert again.status_code == 400 and "unknown or has expired" in again.text
    # A made-up state, or none, names nothing.
    assert (await client.get("/xero/callback", params={"code": "c", "state": "forged"})).status_code == 403
    # The owner said no in Xero.
    other = (await gql(client, CONNECT, token=world.tokens["owner"]))["data"]["connectXero"]
    state = parse_qs(urlsplit(other["authorizeUrl"]).query)["state"][0]
    denied = await client.get("/xero/callback", params={"error": "access_denied", "state": state})
    assert denied.status_code == 400 and "access_denied" in denied.text
    assert not await XeroConnection.exists(organization_id=world.org.id)


async def test_an_expired_authorization_is_refused(client, world, fake_xero):
    from models.xero.tables import XeroAuthorization

    started = (await gql(client, CONNECT, token=world.tokens["owner"]))["data"]["connectXero"]
    await XeroAuthorization.all().update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    response = await client.get("/xero/callback", params=fake_xero.authorize(started["authorizeUrl"]))
    assert response.status_code == 400
    assert not await XeroConnection.exists(organization_id=world.org.id)


async def test_push_creates_the_invoice_once_and_pushing_again_changes_nothing(client, world, fake_xero, ctx):
    await connect(client, world, fake_xero)
    invoice = await approved(world)

    first = (await push(client, world, ctx, invoice))["data"]["pushInvoicesToXero"]
    assert first["succeeded"] == 1 and first["results"][0]["invoice"]["xeroSync"]["state"] == "QUEUED"
    assert len(fake_xero.invoices) == 1
    (created,) = fake_xero.invoices.values()
    put = fake_xero.calls("PUT", "/api.xro/2.0/Invoices")[0]
    assert put.headers["xero-tenant-id"] == TENANT_ID and put.headers["authorization"].startswith("Bearer ")
    assert put.headers["idempotency-key"] == f"INVOICE-{invoice.id}"
    sent = put.body["Invoices"][0]
    assert (sent["Type"], sent["InvoiceNumber"], sent["Status"], sent["CurrencyCode"]) == ("ACCREC", "INV-2026-0001", "AUTHORISED", "USD")
    assert sent["Contact"]["Name"] == "Contoso Ltd" and sent["Reference"] == "PO-77"
    assert parse_xero_date(sent["Date"]) == invoice.issue_date and parse_xero_date(sent["DueDate"]) == invoice.due_date
    assert [(li["Description"], li["Quantity"], li["UnitAmount"], li["AccountCode"], li["TaxType"]) for li in sent["LineItems"]] == [
        ("Service 1", 1.0, 10.25, "200", "NONE"), ("Service 2", 1.0, 20.5, "200", "NONE"),
    ]
    assert Decimal(str(created["Total"])) == invoice.total

    shown = (await gql(client, SYNC, {"number": invoice.number}, token=world.tokens["viewer"]))["data"]["invoice"]
    expected_url = (f"https://go.xero.com/organisationlogin/default.aspx?shortcode={SHORT_CODE}"
                    f"&redirecturl=/AccountsReceivable/View.aspx?InvoiceID={created['InvoiceID']}")
    assert shown["xeroUrl"] == expected_url
    assert shown["xeroSync"] == {"state": "SYNCED", "message": None, "attempts": 1, "xeroId": created["InvoiceID"], "url": expected_url}
    assert [e["kind"] for e in shown["timeline"] if e["kind"].startswith("XERO")] == ["XERO_PUSH_REQUESTED", "XERO_PUSHED"]

    again = (await push(client, world, ctx, invoice))["data"]["pushInvoicesToXero"]
    assert again["succeeded"] == 1
    assert len(fake_xero.invoices) == 1 and len(fake_xero.calls("PUT", "/api.xro/2.0/Invoices")) == 1
    pushed = await InvoiceEvent.filter(invoice_id=invoice.id, kind="XERO_PUSHED").order_by("id")
    assert [e.detail["action"] for e in pushed] == ["created", "found"]
    assert (await XeroSync.get(document_id=invoice.id)).xero_id == created["InvoiceID"]


async def test_lines_go_to_the_mapped_accounts_and_tax_types(client, world, fake_xero, ctx):
    await connect(client, world, fake_xero)
    result = await gql(client, SETTINGS, {"input": {"accountCode": "4000", "taxType": "EXEMPTOUTPUT", "mappings": [
        {"lineKind": "TAX", "accountCode": "820", "taxType": "NONE"},
        {"lineKind": "CHARGE", "lineName": "Support plan", "accountCode": "4100", "taxType": "EXEMPTOUTPUT"},
    ]}}, token=world.tokens["owner"])
    assert result["data"]["updateXeroSettings"]["__typename"] == "XeroSettingsUpdated"
    invoice = await approved(world, lines=1)
    await InvoiceLineItem.create(revision_id=invoice.current_revision_id, position=2, kind=LineKind.CHARGE,
                                 description="Support plan", amount=Decimal("50"))
    await InvoiceLineItem.create(revision_id=invoice.current_revision_id, position=3, kind=LineKind.TAX,
                                 description="VAT 20%", amount=Decimal("12.05"))

    await push(client, world, ctx, invoice)
    sent = fake_xero.calls("PUT", "/api.xro/2.0/Invoices")[0].body["Invoices"][0]["LineItems"]
    assert [(li["Description"], li["AccountCode"], li["TaxType"]) for li in sent] == [
        ("Service 1", "4000", "EXEMPTOUTPUT"), ("Support plan", "4100", "EXEMPTOUTPUT"), ("VAT 20%", "820", "NONE"),
    ]


async def test_settings_refuse_bad_values_and_write_nothing(client, world):
    bad = await gql(client, SETTINGS, {"input": {"accountCode": " ", "autoPushAtRollover": True}}, token=world.tokens["owner"])
    assert bad["data"]["updateXeroSettings"] == {"__typename": "ValidationError", "code": "INVALID", "field": "accountCode",
                                                 "message": "Give 1 to 32 characters."}
    twice = await gql(client, SETTINGS, {"input": {"mappings": [
        {"lineKind": "TAX", "accountCode": "820", "taxType": "NONE"}, {"lineKind": "TAX", "accountCode": "821", "taxType": "NONE"},
    ]}}, token=world.tokens["owner"])
    assert twice["data"]["updateXeroSettings"]["field"] == "mappings.1"
    shown = (await gql(client, INTEGRATION, token=world.tokens["owner"]))["data"]["xero"]["settings"]
    assert shown == {"autoPushAtRollover": False, "accountCode": "200", "taxType": "NONE", "mappings": []}


async def test_a_refused_push_is_visible_on_the_invoice_and_its_timeline(client, world, fake_xero, ctx):
    await connect(client, world, fake_xero)
    await gql(client, SETTINGS, {"input": {"accountCode": "999"}}, token=world.tokens["owner"])
    invoice = await approved(world)

    await push(client, world, ctx, invoice)
    shown = (await gql(client, SYNC, {"number": invoice.number}, token=world.tokens["viewer"]))["data"]["invoice"]
    assert shown["xeroSync"]["state"] == "FAILED" and shown["xeroUrl"] is None
    assert shown["xeroSync"]["message"] == "Xero refused it: Account code '999' is not a valid code for this document.", shown
    failed = [e for e in shown["timeline"] if e["kind"] == "XERO_PUSH_FAILED"]
    assert failed[0]["actor"] == "xero" and failed[0]["detail"]["retrying"] is False
    assert "Account code '999'" in failed[0]["detail"]["error"]
    assert fake_xero.invoices == {}

    # Fixed in the settings, pushed again: now Xero has it.
    await gql(client, SETTINGS, {"input": {"accountCode": "200"}}, token=world.tokens["owner"])
    await push(client, world, ctx, invoice)
    assert (await XeroSync.get(document_id=invoice.id)).state == SyncState.SYNCED


async def test_an_unavailable_xero_is_retried_with_a_growing_delay_then_given_up(client, world, fake_xero, ctx):
    from jobs.xero import push_to_xero

    await connect(client, world, fake_xero)
    invoice = await approved(world)
    fake_xero.invoice_put_failures = [(503, {"Title": "Service Unavailable"})] * 3
    await gql(client, PUSH, {"ids": [_gid(invoice)]}, token=world.tokens["owner"])
    sync = await XeroSync.get(document_id=invoice.id)

    delays = []
    for attempt in (1, 2):
        with pytest.raises(Retry) as retry:
            await push_to_xero({**ctx, "job_try": attempt}, str(sync.id))
        delays.append(retry.value.defer_score)
        assert (await XeroSync.get(id=sync.id)).state == SyncState.RETRYING
    assert delays[1] == 2 * delays[0]
    assert await push_to_xero({**ctx, "job_try": 3}, str(sync.id)) == "failed"
    final = await XeroSync.get(id=sync.id)
    assert final.state == SyncState.FAILED and "Gave up after 3 attempts" in final.message and final.attempts == 3
    failures = await InvoiceEvent.filter(invoice_id=invoice.id, kind="XERO_PUSH_FAILED").order_by("id")
    assert [e.detail["retrying"] for e in failures] == [True, True, False]


async def test_the_worker_retries_a_push_until_xero_takes_it(client, world, fake_xero, xero_settings, redis):
    from tests.workers import running

    await connect(client, world, fake_xero)
    invoice = await approved(world)
    fake_xero.invoice_put_failures = [(429, {"Title": "Too Many Requests"})]
    async with running(redis, {"settings": xero_settings}, poll_delay=0.02):
        await gql(client, PUSH, {"ids": [_gid(invoice)]}, token=world.tokens["owner"])
        for _ in range(200):
            sync = await XeroSync.get(document_id=invoice.id)
            if sync.state == SyncState.SYNCED:
                break
            await asyncio.sleep(0.05)
    assert (sync.state, sync.attempts) == (SyncState.SYNCED, 2)
    assert len(fake_xero.invoices) == 1


async def test_tokens_are_refreshed_before_they_expire_and_when_xero_refuses_them(client, world, fake_xero, ctx, xero_settings):
    fake_xero.access_token_seconds = 120  # inside the refresh margin: the next use refreshes first
    connection = await connect(client, world, fake_xero)
    first = unseal_tokens(xero_settings, connection.tokens)
    invoice = await approved(world)

    await push(client, world, ctx, invoice)
    refreshes = [c.body for c in fake_xero.calls("POST", "/identity/connect/token") if c.body["grant_type"] == "refresh_token"]
    assert [r["refresh_token"] for r in refreshes] == [first.refresh_token]
    second = unseal_tokens(xero_settings, (await XeroConnection.get(id=connection.id)).tokens)
    assert second.refresh_token != first.refresh_token and first.refresh_token not in fake_xero.refresh_tokens
    assert (await XeroSync.get(document_id=invoice.id)).state == SyncState.SYNCED

    # Xero stops taking a token we thought good: refreshed once, and the call made again.
    fake_xero.access_token_seconds = 1800
    fake_xero.expire_access_tokens()
    other = await approved(world, number="INV-2026-0002", period=await factories.billing_period(world.org, date(2024, 10, 1)))
    await push(client, world, ctx, other)
    assert (await XeroSync.get(document_id=other.id)).state == SyncState.SYNCED
    assert len([c for c in fake_xero.calls("POST", "/identity/connect/token") if c.body["grant_type"] == "refresh_token"]) == 2


async def test_a_refused_refresh_asks_for_a_new_connection(client, world, fake_xero, ctx):
    await connect(client, world, fake_xero)
    invoice = await approved(world)
    fake_xero.refresh_tokens.clear()
    fake_xero.expire_access_tokens()

    await push(client, world, ctx, invoice)
    sync = await XeroSync.get(document_id=invoice.id)
    assert sync.state == SyncState.FAILED and "connect Xero again" in sync.message
    connection = await XeroConnection.get(organization_id=world.org.id)
    assert connection.status == ConnectionStatus.NEEDS_RECONNECT
    again = (await gql(client, PUSH, {"ids": [_gid(invoice)]}, token=world.tokens["owner"]))["data"]["pushInvoicesToXero"]
    assert again["results"][0]["error"]["code"] == "XERO_NOT_CONNECTED"

    # Connecting again makes it usable.
    await connect(client, world, fake_xero)
    await push(client, world, ctx, invoice)
    assert (await XeroSync.get(document_id=invoice.id)).state == SyncState.SYNCED


async def test_payments_made_in_xero_come_back_once(client, world, fake_xero, ctx):
    from jobs.xero import poll_xero_payments

    await connect(client, world, fake_xero)
    invoice = await approved(world)
    await push(client, world, ctx, invoice)
    xero_id = (await XeroSync.get(document_id=invoice.id)).xero_id
    yesterday = date.today() - timedelta(days=1)
    fake_xero.add_payment(xero_id, "10.25", yesterday, "BACS 881")
    fake_xero.add_payment("not-one-of-ours", "5.00", yesterday)

    assert await poll_xero_payments(ctx) == 1
    assert await poll_xero_payments(ctx) == 0
    payment = await Payment.get(invoice_id=invoice.id)
    assert (payment.amount, payment.paid_on, payment.reference) == (Decimal("10.25"), yesterday, "Xero BACS 881")
    assert payment.recorded_by_id is None
    refreshed = await Invoice.get(id=invoice.id)
    # Its due date (2024) has passed: partly paid, still overdue.
    assert (refreshed.amount_paid, refreshed.payment_status) == (Decimal("10.25"), PaymentStatus.OVERDUE)
    recorded = await InvoiceEvent.get(invoice_id=invoice.id, kind="PAYMENT_RECORDED")
    assert recorded.actor_label == "xero" and recorded.actor_id is None
    assert (await XeroConnection.get(organization_id=world.org.id)).payments_checked_at is not None
    # The second read asked for what changed since the first.
    assert "if-modified-since" in fake_xero.calls("GET", "/api.xro/2.0/Payments")[-1].headers

    # More than is due is not ours to take: skipped, and said on the timeline, once.
    fake_xero.add_payment(xero_id, "999.00", yesterday)
    assert await poll_xero_payments(ctx) == 0
    assert await poll_xero_payments(ctx) == 0
    skipped = await InvoiceEvent.filter(invoice_id=invoice.id, kind="XERO_PAYMENT_SKIPPED")
    assert len(skipped) == 1 and "more than" in skipped[0].detail["error"]
    assert await Payment.filter(invoice_id=invoice.id).count() == 1


async def test_rollover_pushes_approved_invoices_when_the_organization_asks(client, world, fake_xero, ctx):
    from jobs.periods import SCHEDULER, close_due_periods
    from jobs.xero import push_at_rollover

    await connect(client, world, fake_xero)
    invoice = await approved(world)
    assert await push_at_rollover(ctx["redis"], world.org.id, SCHEDULER) == 0
    assert not await XeroSync.exists(document_id=invoice.id)

    await gql(client, SETTINGS, {"input": {"autoPushAtRollover": True}}, token=world.tokens["owner"])
    await close_due_periods(ctx)
    sync = await XeroSync.get(document_id=invoice.id)
    assert sync.state == SyncState.QUEUED
    requested = await InvoiceEvent.get(invoice_id=invoice.id, kind="XERO_PUSH_REQUESTED")
    assert requested.actor_label == "scheduler"
    # Its job is queued under the sync's id.
    assert await ctx["redis"].exists(f"arq:job:push_to_xero:{sync.id}")


async def test_disconnect_forgets_the_tokens_and_revokes_them_at_xero(client, world, fake_xero, ctx, xero_settings):
    from jobs.xero import revoke_xero_tokens

    connection = await connect(client, world, fake_xero)
    sealed = connection.tokens
    result = (await gql(client, DISCONNECT, token=world.tokens["owner"]))["data"]["disconnectXero"]
    assert result == {"__typename": "XeroDisconnected", "integration": {"connection": None}}
    assert not await XeroConnection.exists(organization_id=world.org.id)
    assert await revoke_xero_tokens(ctx, sealed) == "revoked"
    assert fake_xero.revoked == [unseal_tokens(xero_settings, sealed).refresh_token]
    assert (await gql(client, DISCONNECT, token=world.tokens["owner"]))["data"]["disconnectXero"]["code"] == "NOT_FOUND"


async def test_pushing_without_a_connection_is_refused(client, world):
    invoice = await approved(world)
    result = (await gql(client, PUSH, {"ids": [_gid(invoice)]}, token=world.tokens["owner"]))["data"]["pushInvoicesToXero"]
    assert result["results"][0]["error"]["code"] == "XERO_NOT_CONNECTED"
    assert not await XeroSync.exists(document_id=invoice.id)


async def test_only_approved_invoices_are_pushed_and_a_voided_one_is_voided_in_xero(client, world, fake_xero, ctx):
    await connect(client, world, fake_xero)
    period = await factories.billing_period(world.org, date(2024, 10, 1))
    draft = await factories.generated_invoice(world.account, period, number="INV-2026-0009")
    refused = (await push(client, world, ctx, draft))["data"]["pushInvoicesToXero"]["results"][0]["error"]
    assert refused["code"] == "NOT_FOUND"

    invoice = await approved(world)
    await push(client, world, ctx, invoice)
    await Invoice.filter(id=invoice.id).update(status=InvoiceStatus.VOIDED)
    await push(client, world, ctx, invoice)
    (held,) = fake_xero.invoices.values()
    assert held["Status"] == "VOIDED"
    assert fake_xero.calls("POST", f"/api.xro/2.0/Invoices/{held['InvoiceID']}")[0].body["Invoices"][0]["Status"] == "VOIDED"


VOID = """mutation($ids: [ID!]!) { voidInvoices(ids: $ids, reason: "Wrong rate") {
  ... on InvoiceActionResults { results { invoice { status } error { code } } } } }"""
VOIDED = {"voidInvoices": {"results": [{"invoice": {"status": "VOIDED"}, "error": None}]}}


async def test_voiding_an_invoice_xero_has_voids_it_there(client, world, fake_xero, ctx):
    from jobs.xero import push_to_xero

    await connect(client, world, fake_xero)
    pushed = await approved(world)
    never_pushed = await approved(world, number="INV-2026-0002", period=await factories.billing_period(world.org, date(2024, 10, 1)))
    await push(client, world, ctx, pushed)
    await ctx["redis"].delete(f"arq:job:push_to_xero:{(await XeroSync.get(document_id=pushed.id)).id}")  # taken
    for invoice in (pushed, never_pushed):
        assert (await gql(client, VOID, {"ids": [_gid(invoice)]}, token=world.tokens["owner"]))["data"] == VOIDED
        assert (await Invoice.get(id=invoice.id)).status == InvoiceStatus.VOIDED

    sync = await XeroSync.get(document_id=pushed.id)
    assert sync.state == SyncState.QUEUED
    # Asked for by the owner who voided it, right after the void on its timeline.
    last = await InvoiceEvent.filter(invoice_id=pushed.id).order_by("-id").limit(2)
    assert [e.kind for e in last] == ["XERO_PUSH_REQUESTED", "VOID"]
    assert last[0].actor_id == world.users["owner"].id
    assert await ctx["redis"].exists(f"arq:job:push_to_xero:{sync.id}")
    assert await push_to_xero(ctx, str(sync.id)) == "voided"
    (held,) = fake_xero.invoices.values()
    assert (held["InvoiceNumber"], held["Status"]) == (pushed.number, "VOIDED")
    # Xero never had the other one: nothing to void there.
    assert not await XeroSync.exists(document_id=never_pushed.id)


async def test_an_invoice_voided_while_its_push_creates_it_in_xero_is_voided_there_next(
    client, world, fake_xero, ctx, monkeypatch,
):
    from jobs import xero as xero_jobs

    await connect(client, world, fake_xero)
    invoice = await approved(world)
    creating = xero_jobs._push

    async def voided_meanwhile(settings, view):
        pushed = await creating(settings, view)
        # The owner voids it after the job read it and before the job records what Xero did.
        assert (await gql(client, VOID, {"ids": [_gid(invoice)]}, token=world.tokens["owner"]))["data"] == VOIDED
        return pushed

    monkeypatch.setattr(xero_jobs, "_push", voided_meanwhile)
    await push(client, world, ctx, invoice)
    monkeypatch.setattr(xero_jobs, "_push", creating)
    (held,) = fake_xero.invoices.values()
    assert held["Status"] == "AUTHORISED"
    sync = await XeroSync.get(document_id=invoice.id)
    assert sync.state == SyncState.QUEUED and sync.xero_id == held["InvoiceID"]
    assert await xero_jobs.push_to_xero(ctx, str(sync.id)) == "voided"
    ((_, status),) = [(x["InvoiceID"], x["Status"]) for x in fake_xero.invoices.values()]
    assert status == "VOIDED"


async def test_voiding_while_xero_is_disconnected_queues_nothing(client, world, fake_xero, ctx):
    await connect(client, world, fake_xero)
    invoice = await approved(world)
    await push(client, world, ctx, invoice)
    await ctx["redis"].delete(f"arq:job:push_to_xero:{(await XeroSync.get(document_id=invoice.id)).id}")  # taken
    await XeroConnection.filter(organization_id=world.org.id).update(status=ConnectionStatus.NEEDS_RECONNECT)
    assert (await gql(client, VOID, {"ids": [_gid(invoice)]}, token=world.tokens["owner"]))["data"] == VOIDED
    sync = await XeroSync.get(document_id=invoice.id)
    assert sync.state == SyncState.SYNCED
    assert not await ctx["redis"].exists(f"arq:job:push_to_xero:{sync.id}")
    (held,) = fake_xero.invoices.values()
    assert held["Status"] == "AUTHORISED"


async def test_a_number_xero_holds_for_another_document_is_not_taken_for_ours(client, world, fake_xero, ctx):
    await connect(client, world, fake_xero)
    invoice = await approved(world)
    fake_xero.invoices["other"] = {"Type": "ACCREC", "InvoiceID": "other", "InvoiceNumber": invoice.number,
                                   "Status": "AUTHORISED", "Total": 5.0, "Contact": {"Name": "Someone Else"}}
    await push(client, world, ctx, invoice)
    sync = await XeroSync.get(document_id=invoice.id)
    assert sync.state == SyncState.FAILED and "Someone Else" in sync.message and sync.xero_id is None


def credit_note_view(organization_id, invoice_id) -> documents.FrozenDocument:
    """A credit note as the corrections feature will freeze it, built by hand."""
    return documents.FrozenDocument(
        kind=DocumentKind.CREDIT_NOTE, id=uuid.uuid4(), invoice_id=invoice_id, organization_id=organization_id,
        number="CN-2026-0001", contact_name="Contoso Ltd", issue_date=date(2024, 11, 3), currency="EUR",
        total=Decimal("12.40"), reference="INV-2026-0001",
        lines=[
            documents.FrozenLine(LineKind.USAGE, "Credit: duplicated storage", Decimal("10.00"), Decimal("4"), Decimal("2.5")),
            documents.FrozenLine(LineKind.TAX, "VAT 20%", Decimal("2.40")),
        ],
    )


def test_a_credit_note_maps_to_a_sales_credit_note():
    view = credit_note_view(uuid.uuid4(), uuid.uuid4())
    accounts = documents.AccountMap(account_code="4000", tax_type="NONE", by_line={(LineKind.TAX, ""): ("820", "NONE")})
    note = documents.to_xero(view, accounts)
    assert type(note).__name__ == "CreditNote"
    assert (note.type, note.credit_note_number, note.status) == ("ACCRECCREDIT", "CN-2026-0001", "AUTHORISED")
    assert note.reference == "INV-2026-0001"
    assert note.currency_code.value == "EUR" and note.date == date(2024, 11, 3)
    assert [(li.description, li.quantity, li.unit_amount, li.account_code) for li in note.line_items] == [
        ("Credit: duplicated storage", Decimal("4"), Decimal("2.5"), "4000"), ("VAT 20%", Decimal(1), Decimal("2.40"), "820"),
    ]
    assert documents.xero_url(DocumentKind.CREDIT_NOTE, "abc", SHORT_CODE).endswith(
        "&redirecturl=/AccountsPayable/ViewCreditNote.aspx?creditNoteID=abc")


async def test_a_credit_note_plugs_in_with_its_loader_and_is_pushed_once(client, world, fake_xero, ctx, monkeypatch):
    from jobs.xero import push_to_xero

    await connect(client, world, fake_xero)
    invoice = await approved(world)
    view = credit_note_view(world.org.id, invoice.id)

    async def load(document_id):
        return view

    monkeypatch.setitem(documents.VIEWS, DocumentKind.CREDIT_NOTE, load)
    for _ in range(2):
        sync, queued = await request_push(view, Actor(user_id=world.users["owner"].id))
        assert queued
        assert await push_to_xero(ctx, str(sync.id)) in ("created", "found")
    (note,) = fake_xero.credit_notes.values()
    assert (note["Type"], note["CreditNoteNumber"], Decimal(str(note["Total"]))) == ("ACCRECCREDIT", "CN-2026-0001", Decimal("12.40"))
    sync = await XeroSync.get(document_id=view.id)
    assert sync.invoice_id == invoice.id and "ViewCreditNote.aspx?creditNoteID=" in sync.xero_url
    assert await InvoiceEvent.filter(invoice_id=invoice.id, kind="XERO_PUSHED").count() == 2


def test_tokens_are_sealed_with_the_configured_key_or_one_derived_from_secret_key(settings):
    from cryptography.fernet import Fernet

    derived = seal(settings, {"a": 1})
    assert unseal(settings, derived) == {"a": 1}
    own_key = settings.model_copy(update={"xero_token_key": Fernet.generate_key().decode()})
    assert unseal(own_key, derived) is None
    assert unseal(own_key, seal(own_key, {"b": 2})) == {"b": 2}
    other_secret = settings.model_copy(update={"secret_key": "another-secret"})
    assert unseal(other_secret, derived) is None
    # RFC 7636, appendix B.
    assert code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


# -- who may see and do what ----------------------------------------------------------------

ROLES = ("owner", "viewer", "customer", "foreign_owner")


@pytest.mark.parametrize("role", ROLES)
async def test_scope_of_the_integration_query(client, world, fake_xero, role):
    await connect(client, world, fake_xero)
    result = await gql(client, INTEGRATION, token=world.tokens[role])
    if role == "customer":
        assert error_codes(result) == ["FORBIDDEN"]
    elif role == "foreign_owner":
        assert result["data"]["xero"]["connection"] is None
    else:
        assert result["data"]["xero"]["connection"]["status"] == "CONNECTED"


@pytest.mark.parametrize("role", ROLES)
async def test_scope_of_the_invoice_xero_fields(client, world, fake_xero, ctx, role):
    await connect(client, world, fake_xero)
    invoice = await approved(world)
    await push(client, world, ctx, invoice)
    result = await gql(client, "query($n: String!) { invoice(number: $n) { number xeroUrl } }", {"n": invoice.number},
                       token=world.tokens[role])
    if role == "customer":
        assert error_codes(result) == ["FORBIDDEN"]
    elif role == "foreign_owner":
        assert result["data"]["invoice"] is None
    else:
        assert result["data"]["invoice"]["xeroUrl"].startswith("https://go.xero.com/")
    sync_only = await gql(client, "query($n: String!) { invoice(number: $n) { xeroSync { state } } }", {"n": invoice.number},
                          token=world.tokens[role])
    if role == "customer":
        assert error_codes(sync_only) == ["FORBIDDEN"]


MUTATIONS = {
    "connectXero": (CONNECT, lambda world, invoice: {}),
    "disconnectXero": (DISCONNECT, lambda world, invoice: {}),
    "updateXeroSettings": (SETTINGS, lambda world, invoice: {"input": {"autoPushAtRollover": True}}),
    "pushInvoicesToXero": (PUSH, lambda world, invoice: {"ids": [_gid(invoice)]}),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", MUTATIONS)
async def test_scope_of_the_mutations(client, world, fake_xero, role, name):
    await connect(client, world, fake_xero)
    invoice = await approved(world)
    document, variables = MUTATIONS[name]
    result = await gql(client, document, variables(world, invoice), token=world.tokens[role])
    if role in ("viewer", "customer"):
        assert error_codes(result) == ["FORBIDDEN"] and result["data"] is None
        assert (await XeroConnection.get(organization_id=world.org.id)).status == ConnectionStatus.CONNECTED
        return
    payload = result["data"][name]
    if role == "owner":
        assert "code" not in payload, payload
        return
    # Another organization's owner acts on its own organization only, and never reaches ours.
    if name == "disconnectXero":
        assert payload["code"] == "NOT_FOUND"
    if name == "pushInvoicesToXero":
        assert payload["results"][0]["error"]["code"] == "NOT_FOUND"
    assert await XeroConnection.exists(organization_id=world.org.id)
    assert not await XeroSync.exists(document_id=invoice.id)
    ours = (await gql(client, INTEGRATION, token=world.tokens["owner"]))["data"]["xero"]["settings"]
    assert ours["autoPushAtRollover"] is False


async def test_anonymous_requests_are_refused(client):
    for document in (INTEGRATION, CONNECT, DISCONNECT):
        assert error_codes(await gql(client, document)) == ["UNAUTHENTICATED"]


async def test_a_xero_payment_read_twice_at_once_is_recorded_once(client, world, fake_xero, ctx, monkeypatch):
    """The payment and its Xero id are one transaction: the reader that loses the race on the
    Xero id leaves no payment behind."""
    from models.xero import payments as xero_payments
    from models.xero.tables import XeroPayment

    await connect(client, world, fake_xero)
    invoice = await approved(world)
    await push(client, world, ctx, invoice)
    xero_id = (await XeroSync.get(document_id=invoice.id)).xero_id
    seen = xero_payments.XeroPaymentSeen("pay-1", xero_id, Decimal("5.00"), date.today() - timedelta(days=1))
    assert (await xero_payments.import_payment(world.org.id, seen)).recorded

    async def not_yet(**kw):
        return False

    # The second reader checked before the first one committed.
    monkeypatch.setattr(XeroPayment, "exists", not_yet)
    from tortoise.exceptions import IntegrityError

    with pytest.raises(IntegrityError):
        await xero_payments.import_payment(world.org.id, seen)
    assert await Payment.filter(invoice_id=invoice.id).count() == 1
    assert (await Invoice.get(id=invoice.id)).amount_paid == Decimal("5.00")


def _signed(key: str, body: bytes) -> dict[str, str]:
    import base64
    import hashlib
    import hmac

    return {"x-xero-signature": base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode(),
            "content-type": "application/json"}


async def test_the_webhook_checks_xero_signature_and_reads_payments_at_once(world, fake_xero, xero_settings, redis, ctx):
    import json

    from invoicing.app import create_app
    from jobs.xero import read_xero_payments

    signed_settings = xero_settings.model_copy(update={"xero_webhook_key": "webhook-key-for-tests"})
    application = create_app(signed_settings)
    application.state.redis = redis
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as http:
        await connect(http, world, fake_xero)
        invoice = await approved(world)
        await push(http, world, {**ctx, "settings": signed_settings}, invoice)
        xero_id = (await XeroSync.get(document_id=invoice.id)).xero_id
        fake_xero.add_payment(xero_id, "7.00", date.today() - timedelta(days=1))

        # Xero's intent-to-receive: a correctly signed request gets 200 and no body, any other 401.
        intent = json.dumps({"events": [], "firstEventSequence": 0, "lastEventSequence": 0, "entropy": "S0m3"}).encode()
        ok = await http.post("/xero/webhook", content=intent, headers=_signed("webhook-key-for-tests", intent))
        assert (ok.status_code, ok.content) == (200, b"")
        forged = await http.post("/xero/webhook", content=intent, headers=_signed("another-key", intent))
        assert forged.status_code == 401
        assert (await http.post("/xero/webhook", content=intent)).status_code == 401

        event = json.dumps({"events": [{
            "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{xero_id}", "resourceId": xero_id,
            "tenantId": TENANT_ID, "tenantType": "ORGANISATION", "eventCategory": "INVOICE", "eventType": "UPDATE",
            "eventDateUtc": "2026-12-03T10:00:00.000",
        }], "firstEventSequence": 1, "lastEventSequence": 1, "entropy": "X"}).encode()
        assert (await http.post("/xero/webhook", content=event, headers=_signed("webhook-key-for-tests", event))).status_code == 200
    await application.state.events.close()
    assert await redis.exists(f"arq:job:read_xero_payments:{world.org.id}")
    assert await read_xero_payments({**ctx, "settings": signed_settings}, str(world.org.id)) == 1
    assert (await Invoice.get(id=invoice.id)).amount_paid == Decimal("7.00")


async def test_without_a_webhook_key_the_webhook_is_not_there(client):
    assert (await client.post("/xero/webhook", content=b"{}")).status_code == 404


COMPLETE = """mutation($code: String!, $state: String!) { completeXeroConnection(code: $code, state: $state) { __typename
  ... on XeroConnected { integration { connection { tenantName } } } ... on UserError { code message } } }"""


async def test_the_console_finishes_the_connection_under_the_owners_own_token(world, fake_xero, xero_settings, redis):
    from invoicing.app import create_app

    returning = xero_settings.model_copy(update={"xero_return_url": "https://console.example.com/settings/xero"})
    application = create_app(returning)
    application.state.redis = redis
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as http:
        # Another organization's owner cannot finish an authorization it did not start.
        started = (await gql(http, CONNECT, token=world.tokens["owner"]))["data"]["connectXero"]
        answer = fake_xero.authorize(started["authorizeUrl"])
        stolen = (await gql(http, COMPLETE, answer, token=world.tokens["foreign_owner"]))["data"]["completeXeroConnection"]
        assert stolen["code"] == "NOT_FOUND"
        assert not await XeroConnection.exists()

        started = (await gql(http, CONNECT, token=world.tokens["owner"]))["data"]["connectXero"]
        answer = fake_xero.authorize(started["authorizeUrl"])
        back = await http.get("/xero/callback", params=answer)
        assert back.status_code == 303
        location = urlsplit(back.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == "https://console.example.com/settings/xero"
        handed = {k: v[0] for k, v in parse_qs(location.query).items()}
        assert handed == {"code": answer["code"], "state": answer["state"], "scope": answer["scope"]}
        done = (await gql(http, COMPLETE, {"code": handed["code"], "state": handed["state"]},
                          token=world.tokens["owner"]))["data"]["completeXeroConnection"]
        assert done == {"__typename": "XeroConnected", "integration": {"connection": {"tenantName": "Northwind Cloud (Xero)"}}}
        again = (await gql(http, COMPLETE, {"code": handed["code"], "state": handed["state"]},
                           token=world.tokens["owner"]))["data"]["completeXeroConnection"]
        assert again["code"] == "NOT_FOUND"
    await application.state.events.close()


@pytest.mark.parametrize("role", ("viewer", "customer"))
async def test_only_owners_finish_a_connection(client, world, role):
    result = await gql(client, COMPLETE, {"code": "c", "state": "s"}, token=world.tokens[role])
    assert error_codes(result) == ["FORBIDDEN"]


async def test_an_issued_credit_note_goes_to_xero_when_xero_holds_its_invoice(client, world, fake_xero, ctx):
    from jobs.xero import push_credit_note, push_to_xero
    from models import CreditNote
    from tests.test_credit_notes import credit

    await connect(client, world, fake_xero)
    invoice = await approved(world)
    not_pushed = await approved(world, number="INV-2026-0002", period=await factories.billing_period(world.org, date(2024, 10, 1)))
    await push(client, world, ctx, invoice)
    for target in (invoice, not_pushed):
        created = await credit(client, world, target, mode="AMOUNT", amount="5.00")
        assert created["__typename"] == "CreditNoteCreated", created
    first, second = await CreditNote.all().order_by("number")

    assert await push_credit_note(ctx["redis"], first.id) is True
    assert await push_credit_note(ctx["redis"], second.id) is False  # Xero has not that invoice
    sync = await XeroSync.get(document_id=first.id)
    assert await push_to_xero(ctx, str(sync.id)) == "created"
    (note,) = fake_xero.credit_notes.values()
    assert (note["Type"], note["CreditNoteNumber"], Decimal(str(note["Total"]))) == ("ACCRECCREDIT", first.number, Decimal("5.00"))
    assert note["Reference"] == invoice.number
    assert not await XeroSync.filter(document_id=second.id).exists()


async def test_credit_notes_printed_before_their_invoice_reached_xero_follow_it(client, world, fake_xero, ctx):
    from jobs.xero import push_credit_note, push_to_xero
    from models import CreditNote
    from models.credit_notes.delivery import record_pdf
    from tests.test_credit_notes import credit

    await connect(client, world, fake_xero)
    invoice = await approved(world)
    for amount in ("5.00", "2.50"):
        created = await credit(client, world, invoice, mode="AMOUNT", amount=amount)
        assert created["__typename"] == "CreditNoteCreated", created
    printed, unprinted = await CreditNote.all().order_by("number")
    assert await record_pdf(printed.id, "credit-notes/printed.pdf", "0" * 64, 1000)
    assert await push_credit_note(ctx["redis"], printed.id) is False  # Xero has not the invoice yet

    await push(client, world, ctx, invoice)
    sync = await XeroSync.get(document_id=printed.id)
    assert (sync.state, sync.document_kind) == (SyncState.QUEUED, DocumentKind.CREDIT_NOTE)
    assert await ctx["redis"].exists(f"arq:job:push_to_xero:{sync.id}")
    assert await push_to_xero(ctx, str(sync.id)) == "created"
    (note,) = fake_xero.credit_notes.values()
    assert (note["CreditNoteNumber"], note["Reference"]) == (printed.number, invoice.number)
    # Not printed yet: it goes by itself once printed.
    assert not await XeroSync.exists(document_id=unprinted.id)
    # Pushing the invoice again queues nothing more.
    await push(client, world, ctx, invoice)
    assert await XeroSync.filter(document_kind=DocumentKind.CREDIT_NOTE).count() == 1


def test_production_with_xero_on_requires_its_own_token_key(tmp_path):
    from cryptography.fernet import Fernet
    from pydantic import ValidationError

    from infra.settings import Settings

    base = {"environment": "production", "data_dir": tmp_path, "xero_client_id": CLIENT_ID}
    with pytest.raises(ValidationError) as refused:
        Settings(**base)
    assert "XERO_TOKEN_KEY must be set in production when Xero is on" in str(refused.value)
    assert Settings(**base, xero_token_key=Fernet.generate_key().decode()).xero_client_id == CLIENT_ID
    assert Settings(environment="production", data_dir=tmp_path).xero_client_id == ""  # Xero off: nothing to seal
    with pytest.raises(ValidationError, match="outside DATA_DIR"):
        Settings(environment="development", data_dir=tmp_path, secret_key=None, sealing_key_file=tmp_path / "key")


def test_a_copy_of_the_data_folder_does_not_carry_the_token_key(tmp_path):
    """In development, with neither XERO_TOKEN_KEY nor SECRET_KEY, the key is generated outside
    DATA_DIR (beside the embedded database): the data folder alone reads no token."""
    from infra.settings import Settings

    data = tmp_path / "var"
    here = Settings(environment="development", data_dir=data, secret_key=None, sealing_key_file=tmp_path / "conf" / "key")
    sealed = seal(here, {"refresh_token": "r"})
    assert unseal(here, sealed) == {"refresh_token": "r"}
    # Another machine given the data folder (its `secret_key` file included), not the key file.
    copy = Settings(environment="development", data_dir=data, secret_key=None, sealing_key_file=tmp_path / "other" / "key")
    assert copy.signing_key == here.signing_key
    assert unseal(copy, sealed) is None
    assert (tmp_path / "conf" / "key").stat().st_mode & 0o777 == 0o600
    key = (tmp_path / "conf" / "key").read_bytes()
    assert not any(key in path.read_bytes() for path in data.rglob("*") if path.is_file())


async def test_a_browser_without_the_starting_cookie_cannot_complete_the_connection(world, fake_xero, xero_settings, redis):
    """OAuth's login CSRF: whoever is sent (or finds) an owner's authorize link and says yes in
    Xero completes nothing, with or without XERO_RETURN_URL; the owner's own browser still can."""
    from http.cookies import SimpleCookie

    from invoicing.app import create_app

    for returning in ("", "https://console.example.com/settings/xero"):
        await XeroConnection.all().delete()
        application = create_app(xero_settings.model_copy(update={"xero_return_url": returning}))
        application.state.redis = redis
        transport = httpx.ASGITransport(app=application)
        async with (httpx.AsyncClient(transport=transport, base_url="http://testserver") as owner,
                    httpx.AsyncClient(transport=transport, base_url="http://testserver") as stranger):
            answer = await owner.post("/graphql", json={"query": CONNECT}, headers={"authorization": f"Bearer {world.tokens['owner']}"})
            started = answer.json()["data"]["connectXero"]
            victim_said_yes = fake_xero.authorize(started["authorizeUrl"])

            # No cookie, or the cookie of an authorization of its own (another organization's owner).
            refused = await stranger.get("/xero/callback", params=victim_said_yes)
            assert refused.status_code == 403 and "did not start this connection" in refused.text
            cookie = SimpleCookie(answer.headers["set-cookie"])["xero_authorization"]
            assert (cookie["httponly"], cookie["samesite"], cookie["path"], cookie["max-age"], cookie["secure"]) == (
                True, "lax", "/xero/callback", "600", "")
            await gql(stranger, CONNECT, token=world.tokens["foreign_owner"])
            assert (await stranger.get("/xero/callback", params=victim_said_yes)).status_code == 403
            assert not await XeroConnection.exists()

            # Nothing was spent: the owner's browser comes back and finishes.
            back = await owner.get("/xero/callback", params=victim_said_yes)
            if returning:
                assert back.status_code == 303 and back.headers["location"].startswith(returning)
                done = await gql(owner, COMPLETE, {"code": victim_said_yes["code"], "state": victim_said_yes["state"]},
                                 token=world.tokens["owner"])
                assert done["data"]["completeXeroConnection"]["__typename"] == "XeroConnected"
            else:
                assert back.status_code == 200, back.text
            assert (await XeroConnection.get(organization_id=world.org.id)).tenant_id == TENANT_ID
        await application.state.events.close()


async def test_the_authorization_cookie_is_secure_over_https(world, fake_xero, xero_settings, redis):
    from http.cookies import SimpleCookie

    from invoicing.app import create_app

    application = create_app(xero_settings.model_copy(update={"public_url": "https://billing.example.com"}))
    application.state.redis = redis
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as http:
        answer = await http.post("/graphql", json={"query": CONNECT}, headers={"authorization": f"Bearer {world.tokens['owner']}"})
        assert answer.json()["data"]["connectXero"]["__typename"] == "XeroAuthorizationStarted"
        assert SimpleCookie(answer.headers["set-cookie"])["xero_authorization"]["secure"] is True
    await application.state.events.close()


async def test_the_organisation_chosen_is_the_one_this_authorization_connected(client, world, fake_xero):
    """Not the newest connection the Xero user has: one made meanwhile (another tab, another
    app session) is another authorization's."""
    fake_xero.connected.append({
        "id": "0d1e2f30-0000-4000-8000-000000000002", "authEventId": str(uuid.uuid4()),
        "tenantId": "99999999-0000-4000-8000-00000000beef", "tenantType": "ORGANISATION", "tenantName": "Someone else's books",
        "createdDateUtc": "2026-12-05T10:00:00.0000000", "updatedDateUtc": "2026-12-05T10:00:00.0000000",
    })
    connection = await connect(client, world, fake_xero)
    assert (connection.tenant_id, connection.tenant_name) == (TENANT_ID, "Northwind Cloud (Xero)")
    asked = fake_xero.calls("GET", "/Connections")[-1].query
    assert asked["authEventId"] == [fake_xero.connected[-1]["authEventId"]]


async def test_a_credit_note_is_allocated_to_its_invoice_in_xero_once(client, world, fake_xero, ctx):
    """Xero then owes what we say the invoice owes: the credit note printed before its invoice
    reached Xero is allocated when the invoice arrives, the one issued after at once, and
    pushing again (a retry, an answer lost) allocates nothing more."""
    from jobs.xero import push_credit_note, push_to_xero
    from models import CreditNote
    from models.credit_notes.delivery import record_pdf
    from tests.test_credit_notes import credit

    await connect(client, world, fake_xero)
    invoice = await approved(world)
    assert (await credit(client, world, invoice, mode="AMOUNT", amount="5.00"))["__typename"] == "CreditNoteCreated"
    (before,) = await CreditNote.all()
    assert await record_pdf(before.id, "credit-notes/before.pdf", "0" * 64, 1000)
    await push(client, world, ctx, invoice)
    pushed = await push_to_xero(ctx, str((await XeroSync.get(document_id=before.id)).id))
    assert pushed == "created", (await XeroSync.get(document_id=before.id)).message
    assert (await credit(client, world, invoice, mode="AMOUNT", amount="2.50"))["__typename"] == "CreditNoteCreated"
    after = await CreditNote.exclude(id=before.id).get()
    assert await push_credit_note(ctx["redis"], after.id) is True
    assert await push_to_xero(ctx, str((await XeroSync.get(document_id=after.id)).id)) == "created"

    invoice_xero_id = (await XeroSync.get(document_id=invoice.id)).xero_id
    held = fake_xero.invoices[invoice_xero_id]
    product = (await gql(client, "query($n: String!) { invoice(number: $n) { amountDue } }", {"n": invoice.number},
                         token=world.tokens["viewer"]))["data"]["invoice"]
    assert Decimal(product["amountDue"]) == invoice.total - Decimal("7.50")
    assert Decimal(str(held["AmountDue"])) == Decimal(product["amountDue"])
    assert sorted(Decimal(str(a["Amount"])) for a in held["Allocations"]) == [Decimal("2.50"), Decimal("5.00")]
    assert all(n["RemainingCredit"] == 0 and n["Status"] == "PAID" for n in fake_xero.credit_notes.values())
    allocated = await InvoiceEvent.filter(invoice_id=invoice.id, kind="XERO_CREDIT_NOTE_ALLOCATED").order_by("id")
    assert [(e.detail["number"], e.detail["amount"]) for e in allocated] == [(before.number, "5.00"), (after.number, "2.50")]

    # Pushed again, and once more as if the first allocation's answer had been lost.
    for note in (before, after):
        sync, queued = await request_push(await documents.credit_note_view(note.id), Actor(user_id=world.users["owner"].id))
        assert queued
        if note is after:
            await XeroSync.filter(id=sync.id).update(allocated_at=None)
        assert await push_to_xero(ctx, str(sync.id)) == "found"
    assert len(fake_xero.calls("PUT", f"/api.xro/2.0/CreditNotes/{(await XeroSync.get(document_id=before.id)).xero_id}/Allocations")) == 1
    assert len(held["Allocations"]) == 2 and Decimal(str(held["AmountDue"])) == Decimal(product["amountDue"])
    # Pushing the invoice again queues no allocated credit note.
    await push(client, world, ctx, invoice)
    assert await XeroSync.filter(document_kind=DocumentKind.CREDIT_NOTE, state=SyncState.QUEUED).count() == 0


CONSISTENT = """query($n: String!) { invoice(number: $n) { total amountPaid amountDue paymentStatus payments { amount } } }"""
RECORD = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) { __typename } }"""


@pytest.mark.parametrize("path", ["xero poll", "xero webhook", "recordPayment"])
async def test_one_answer_shows_a_payment_with_its_invoice_amounts_or_neither(client, world, fake_xero, ctx, monkeypatch, path):
    """The payment commits with its invoice's amounts and status; an answer reading the invoice,
    then (in another statement) its payments, while a payment commits in between, shows both as
    they were before it, never the payment beside the old amounts."""
    from jobs.xero import poll_xero_payments, read_xero_payments
    from schema.invoices import types as invoice_types

    await connect(client, world, fake_xero)
    invoice = await approved(world)
    await push(client, world, ctx, invoice)
    fake_xero.add_payment((await XeroSync.get(document_id=invoice.id)).xero_id, "10.25", date.today() - timedelta(days=1))

    reading, recorded = asyncio.Event(), asyncio.Event()
    relation = invoice_types.RELATIONS["payments"]

    async def after_the_invoice(info, invoices):
        reading.set()
        await recorded.wait()
        return await relation.load(info, invoices)

    monkeypatch.setitem(invoice_types.RELATIONS, "payments", relation._replace(load=after_the_invoice))
    answer = asyncio.create_task(gql(client, CONSISTENT, {"n": invoice.number}, token=world.tokens["viewer"]))
    await asyncio.wait_for(reading.wait(), 30)
    # The answer has read the invoice; the payment commits before it reads the payments.
    if path == "xero poll":
        assert await poll_xero_payments(ctx) == 1
    elif path == "xero webhook":
        assert await read_xero_payments(ctx, str(world.org.id)) == 1
    else:
        done = await gql(client, RECORD, {"input": {"invoiceId": _gid(invoice), "amount": "10.25", "paidOn": str(date.today()),
                                                    "method": "BANK_TRANSFER"}}, token=world.tokens["owner"])
        assert done["data"]["recordPayment"]["__typename"] == "PaymentRecorded", done
    recorded.set()
    shown = (await answer)["data"]["invoice"]
    assert (shown["amountPaid"], shown["amountDue"], shown["payments"]) == ("0.00", shown["total"], []), shown

    monkeypatch.setitem(invoice_types.RELATIONS, "payments", relation)
    now = (await gql(client, CONSISTENT, {"n": invoice.number}, token=world.tokens["viewer"]))["data"]["invoice"]
    assert (now["amountPaid"], now["payments"]) == ("10.25", [{"amount": "10.25"}])
    assert Decimal(now["amountDue"]) == Decimal(now["total"]) - Decimal("10.25")
