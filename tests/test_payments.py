"""After approval: payments, refunds, voiding, the overdue job and the timeline they leave."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from strawberry.relay import to_base64

from jobs.overdue import mark_overdue_invoices
from models import Invoice, InvoiceEvent, Payment, Refund
from models.invoices import PaymentStatus
from models.invoices.lifecycle import TRANSITIONS
from models.payments import payment_status
from tests import factories as f
from tests.graphql import error_codes, gql

RECORD = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) { __typename
  ... on PaymentRecorded { payment { id amount currency paidOn method reference recordedBy }
    invoice { status paymentStatus amountPaid amountRefunded amountDue } }
  ... on AmountExceededError { maximum }
  ... on UserError { code field message } } }"""
REFUND = """mutation($input: RefundPaymentInput!) { refundPayment(input: $input) { __typename
  ... on PaymentRefunded { refund { amount refundedOn reason payment { amount } }
    invoice { status paymentStatus amountPaid amountRefunded amountDue } }
  ... on AmountExceededError { maximum }
  ... on UserError { code field message } } }"""
VOID = """mutation($ids: [ID!]!, $notify: Boolean! = true, $reason: String! = "") {
  voidInvoices(ids: $ids, notifyCustomer: $notify, reason: $reason) { __typename
  ... on InvoiceActionResults { results { id invoice { number status paymentStatus amountDue voidedAt }
    error { code message } } } } }"""
ONE = """query($n: String!) { invoice(number: $n) { status paymentStatus amountPaid amountRefunded amountDue
  payments { amount paidOn method } refunds { amount refundedOn } } }"""
LIST = """query($filter: InvoiceFilter) { invoices(filter: $filter, first: 100) {
  edges { node { number paymentStatus } } } }"""
TIMELINE = """query($n: String!) { invoice(number: $n) { timeline { kind actor fromStatus toStatus detail } } }"""
OWNER_EMAIL = None


def _gid(kind, row):
    return to_base64(kind, str(row.id))


async def _approved(world, number="INV-2024-0001", account=None, month=date(2024, 9, 1), **kw):
    """An approved invoice of 30.75 (lines 10.25 + 20.50), issued five days ago, due in 30 days."""
    account = account or world.account
    period = await f.billing_period(await account.organization, month)
    kw.setdefault("status", "APPROVED")
    kw.setdefault("issue_date", date.today() - timedelta(days=5))
    return await f.generated_invoice(account, period, number=number, **kw)


async def _pay(client, world, invoice, amount, role="owner", **extra):
    variables = {"input": {"invoiceId": _gid("Invoice", invoice), "amount": amount, "paidOn": "2024-10-10",
                           "method": "BANK_TRANSFER", "reference": "BANK-REF-1", **extra}}
    return await gql(client, RECORD, variables, token=world.tokens[role])


async def _refund(client, world, payment_id, amount, role="owner", **extra):
    variables = {"input": {"paymentId": payment_id, "amount": amount, "refundedOn": "2024-10-20",
                           "reason": "Duplicate payment", "notifyCustomer": False, **extra}}
    return await gql(client, REFUND, variables, token=world.tokens[role])


# -- the payment status rule ---------------------------------------------------------------

@pytest.mark.parametrize("paid,refunded,past_due,expected", [
    ("0", "0", False, "UNPAID"),
    ("0", "0", True, "OVERDUE"),
    ("10", "0", False, "PARTIALLY_PAID"),
    ("10", "0", True, "OVERDUE"),
    ("30.75", "0", False, "PAID"),
    ("30.75", "0", True, "PAID"),
    ("30.75", "5", False, "PARTIALLY_REFUNDED"),
    ("10", "10", True, "REFUNDED"),
])
def test_payment_status_rule(paid, refunded, past_due, expected):
    assert payment_status(Decimal("30.75"), Decimal(paid), Decimal(refunded), past_due) == PaymentStatus(expected)


# -- recordPayment ------------------------------------------------------------------------

async def test_partial_payments_add_up_to_paid(client, world):
    invoice = await _approved(world)
    first = (await _pay(client, world, invoice, "10.75"))["data"]["recordPayment"]
    assert first["__typename"] == "PaymentRecorded"
    assert first["payment"] == {
        "id": first["payment"]["id"], "amount": "10.75", "currency": "USD", "paidOn": "2024-10-10",
        "method": "BANK_TRANSFER", "reference": "BANK-REF-1", "recordedBy": world.users["owner"].email,
    }
    assert first["invoice"] == {"status": "APPROVED", "paymentStatus": "PARTIALLY_PAID", "amountPaid": "10.75",
                                "amountRefunded": "0.00", "amountDue": "20.00"}
    second = (await _pay(client, world, invoice, "20", method="CARD", reference=""))["data"]["recordPayment"]
    assert second["invoice"]["paymentStatus"] == "PAID" and second["invoice"]["amountDue"] == "0.00"
    shown = (await gql(client, ONE, {"n": invoice.number}, token=world.tokens["owner"]))["data"]["invoice"]
    assert shown["amountPaid"] == "30.75"
    assert [(p["amount"], p["method"]) for p in shown["payments"]] == [("10.75", "BANK_TRANSFER"), ("20.00", "CARD")]
    events = await InvoiceEvent.filter(invoice_id=invoice.id, kind="PAYMENT_RECORDED").order_by("id")
    assert [e.actor_id for e in events] == [world.users["owner"].id] * 2
    assert events[0].detail | {"payment": None} == {
        "payment": None, "amount": "10.75", "paidOn": "2024-10-10", "method": "BANK_TRANSFER",
        "reference": "BANK-REF-1", "paymentStatus": "PARTIALLY_PAID", "previousPaymentStatus": "UNPAID",
    }


async def test_overpaying_is_refused_with_the_amount_due_and_writes_nothing(client, world):
    invoice = await _approved(world)
    await _pay(client, world, invoice, "30")
    refused = (await _pay(client, world, invoice, "0.76"))["data"]["recordPayment"]
    assert refused == {"__typename": "AmountExceededError", "code": "OVERPAYMENT", "field": "amount",
                       "maximum": "0.75", "message": refused["message"]}
    assert await Payment.filter(invoice_id=invoice.id).count() == 1
    assert (await Invoice.get(id=invoice.id)).amount_paid == Decimal("30")


@pytest.mark.parametrize("change,field", [
    ({"amount": "0"}, "amount"),
    ({"amount": "-5"}, "amount"),
    ({"amount": "1.001"}, "amount"),
    ({"amount": "NaN"}, "amount"),
    ({"paidOn": (date.today() + timedelta(days=2)).isoformat()}, "paidOn"),
    ({"reference": "x" * 256}, "reference"),
    ({"invoiceId": "garbage"}, "invoiceId"),
])
async def test_bad_payments_are_refused_and_write_nothing(client, world, change, field):
    invoice = await _approved(world)
    change = dict(change)
    amount = change.pop("amount", "1")
    result = (await _pay(client, world, invoice, amount, **change))["data"]["recordPayment"]
    assert result["field"] == field and result["code"] in ("INVALID", "NOT_FOUND")
    assert not await Payment.exists() and not await InvoiceEvent.filter(kind="PAYMENT_RECORDED").exists()


async def test_amounts_follow_the_currency_minor_units(client, world):
    world.other_account.currency = "JPY"
    await world.other_account.save()
    invoice = await _approved(world, account=world.other_account)
    refused = (await _pay(client, world, invoice, "10.5"))["data"]["recordPayment"]
    assert refused["code"] == "INVALID" and "0 decimals in JPY" in refused["message"]
    accepted = (await _pay(client, world, invoice, "10"))["data"]["recordPayment"]
    assert accepted["payment"]["amount"] == "10"


@pytest.mark.parametrize("status", ["READY_TO_INVOICE", "AWAITING_APPROVAL", "ERROR", "VOIDED"])
async def test_only_approved_invoices_take_payments(client, world, status):
    invoice = await _approved(world, status=status)
    result = (await _pay(client, world, invoice, "1"))["data"]["recordPayment"]
    assert result["code"] == "INVALID_TRANSITION" and result["field"] == "invoiceId"
    assert not await Payment.exists()


@pytest.mark.parametrize("role,expected", [
    ("owner", "PaymentRecorded"), ("viewer", "FORBIDDEN"), ("customer", "FORBIDDEN"), ("foreign_owner", "NOT_FOUND"),
])
async def test_record_payment_scopes(client, world, role, expected):
    invoice = await _approved(world)
    result = await _pay(client, world, invoice, "1", role=role)
    if expected == "FORBIDDEN":
        assert error_codes(result) == ["FORBIDDEN"]
    elif expected == "NOT_FOUND":
        assert result["data"]["recordPayment"]["code"] == "NOT_FOUND"
    else:
        assert result["data"]["recordPayment"]["__typename"] == expected
    assert await Payment.filter(invoice_id=invoice.id).count() == (1 if role == "owner" else 0)


async def test_concurrent_payments_lose_no_update(client, world):
    invoice = await _approved(world)
    results = await asyncio.gather(*[_pay(client, world, invoice, "6.15") for _ in range(5)])
    assert all(r["data"]["recordPayment"]["__typename"] == "PaymentRecorded" for r in results)
    stored = await Invoice.get(id=invoice.id)
    assert stored.amount_paid == Decimal("30.75") and stored.payment_status == "PAID"
    assert await InvoiceEvent.filter(invoice_id=invoice.id, kind="PAYMENT_RECORDED").count() == 5


async def test_concurrent_payments_cannot_together_overpay(client, world):
    invoice = await _approved(world)
    results = await asyncio.gather(*[_pay(client, world, invoice, "10") for _ in range(6)])
    kinds = sorted(r["data"]["recordPayment"]["__typename"] for r in results)
    assert kinds == ["AmountExceededError"] * 3 + ["PaymentRecorded"] * 3
    stored = await Invoice.get(id=invoice.id)
    assert stored.amount_paid == Decimal("30") == sum(p.amount for p in await Payment.filter(invoice_id=invoice.id))


# -- refundPayment ------------------------------------------------------------------------

async def _paid(client, world, amounts=("30.75",), **kw):
    invoice = await _approved(world, **kw)
    ids = [(await _pay(client, world, invoice, a))["data"]["recordPayment"]["payment"]["id"] for a in amounts]
    return invoice, ids


async def test_partial_then_full_refund(client, world):
    invoice, (payment,) = await _paid(client, world)
    partial = (await _refund(client, world, payment, "10.75"))["data"]["refundPayment"]
    assert partial["refund"] == {"amount": "10.75", "refundedOn": "2024-10-20", "reason": "Duplicate payment",
                                 "payment": {"amount": "30.75"}}
    assert partial["invoice"] == {"status": "APPROVED", "paymentStatus": "PARTIALLY_REFUNDED", "amountPaid": "30.75",
                                  "amountRefunded": "10.75", "amountDue": "0.00"}
    full = (await _refund(client, world, payment, "20"))["data"]["refundPayment"]
    assert full["invoice"]["paymentStatus"] == "REFUNDED" and full["invoice"]["amountRefunded"] == "30.75"
    assert full["invoice"]["amountDue"] == "0.00", "a refund does not reopen the invoice"
    event = await InvoiceEvent.filter(invoice_id=invoice.id, kind="PAYMENT_REFUNDED").order_by("-id").first()
    assert event.detail["amount"] == "20" and event.detail["paymentStatus"] == "REFUNDED"
    assert event.actor_id == world.users["owner"].id
    again = (await _pay(client, world, invoice, "1"))["data"]["recordPayment"]
    assert again["code"] == "OVERPAYMENT" and again["maximum"] == "0.00"


async def test_a_refund_never_exceeds_its_payment(client, world):
    invoice, (first, second) = await _paid(client, world, amounts=("20.75", "10"))
    await _refund(client, world, second, "4")
    refused = (await _refund(client, world, second, "6.01"))["data"]["refundPayment"]
    assert refused == {"__typename": "AmountExceededError", "code": "REFUND_EXCEEDS_PAYMENT", "field": "amount",
                       "maximum": "6.00", "message": refused["message"]}
    assert await Refund.filter(invoice_id=invoice.id).count() == 1
    rest = (await _refund(client, world, second, "6"))["data"]["refundPayment"]
    assert rest["invoice"]["paymentStatus"] == "PARTIALLY_REFUNDED", "the first payment is still kept"
    assert rest["invoice"]["amountRefunded"] == "10.00"


@pytest.mark.parametrize("change,field,code", [
    ({"amount": "0"}, "amount", "INVALID"),
    ({"refundedOn": "2024-10-09"}, "refundedOn", "INVALID"),
    ({"refundedOn": (date.today() + timedelta(days=2)).isoformat()}, "refundedOn", "INVALID"),
    ({"paymentId": to_base64("Payment", "00000000-0000-0000-0000-000000000000")}, "paymentId", "NOT_FOUND"),
    ({"paymentId": "garbage"}, "paymentId", "NOT_FOUND"),
])
async def test_bad_refunds_are_refused_and_write_nothing(client, world, change, field, code):
    _, (payment,) = await _paid(client, world)
    change = dict(change)
    amount = change.pop("amount", "1")
    result = (await _refund(client, world, payment, amount, **change))["data"]["refundPayment"]
    assert (result["code"], result["field"]) == (code, field)
    assert not await Refund.exists()


@pytest.mark.parametrize("role,expected", [
    ("owner", "PaymentRefunded"), ("viewer", "FORBIDDEN"), ("customer", "FORBIDDEN"), ("foreign_owner", "NOT_FOUND"),
])
async def test_refund_payment_scopes(client, world, role, expected):
    _, (payment,) = await _paid(client, world)
    result = await _refund(client, world, payment, "1", role=role)
    if expected == "FORBIDDEN":
        assert error_codes(result) == ["FORBIDDEN"]
    elif expected == "NOT_FOUND":
        assert result["data"]["refundPayment"]["code"] == "NOT_FOUND"
    else:
        assert result["data"]["refundPayment"]["__typename"] == expected
    assert await Refund.all().count() == (1 if role == "owner" else 0)


# -- voidInvoices -------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["READY_TO_INVOICE", "AWAITING_APPROVAL", "ERROR", "APPROVED"])
async def test_void_from_every_voidable_status(client, world, status):
    invoice = await _approved(world, status=status)
    result = await gql(client, VOID, {"ids": [_gid("Invoice", invoice)], "notify": False, "reason": " Billed twice "},
                       token=world.tokens["owner"])
    (outcome,) = result["data"]["voidInvoices"]["results"]
    assert outcome["error"] is None
    assert outcome["invoice"]["number"] == invoice.number and outcome["invoice"]["status"] == "VOIDED"
    assert outcome["invoice"]["amountDue"] == "0.00" and outcome["invoice"]["voidedAt"]
    event = await InvoiceEvent.get(invoice_id=invoice.id, kind="VOID")
    assert (event.from_status, event.to_status) == (status, "VOIDED")
    assert event.detail == {"reason": "Billed twice", "notifyCustomer": False}


@pytest.mark.parametrize("status", ["GENERATING", "VOIDED"])
async def test_void_is_refused_while_generating_and_once_voided(client, world, status):
    invoice = await _approved(world, status=status)
    result = await gql(client, VOID, {"ids": [_gid("Invoice", invoice)]}, token=world.tokens["owner"])
    assert result["data"]["voidInvoices"]["results"][0]["error"]["code"] == "INVALID_TRANSITION"
    assert (await Invoice.get(id=invoice.id)).status == status


def test_voided_is_final():
    assert not [t.name for t in TRANSITIONS.values() if "VOIDED" in t.sources]


async def test_a_voided_invoice_cannot_move_again(client, world):
    invoice = await _approved(world, status="VOIDED")
    for mutation in ("approveInvoices", "generateInvoices", "regenerateInvoices"):
        result = await gql(client, "mutation($ids: [ID!]!) { %s(ids: $ids) { ... on InvoiceActionResults {"
                           " results { error { code } } } } }" % mutation, {"ids": [_gid("Invoice", invoice)]},
                           token=world.tokens["owner"])
        assert result["data"][mutation]["results"][0]["error"]["code"] == "INVALID_TRANSITION", mutation
    assert (await _pay(client, world, invoice, "1"))["data"]["recordPayment"]["code"] == "INVALID_TRANSITION"


async def test_a_paid_invoice_cannot_be_voided_until_its_payments_are_refunded(client, world):
    invoice, (payment,) = await _paid(client, world, amounts=("10",))
    ids = {"ids": [_gid("Invoice", invoice)], "notify": False}
    refused = await gql(client, VOID, ids, token=world.tokens["owner"])
    assert refused["data"]["voidInvoices"]["results"][0]["error"]["code"] == "INVOICE_PAID"
    await _refund(client, world, payment, "10")
    voided = await gql(client, VOID, ids, token=world.tokens["owner"])
    assert voided["data"]["voidInvoices"]["results"][0]["invoice"]["paymentStatus"] == "REFUNDED"
    assert voided["data"]["voidInvoices"]["results"][0]["invoice"]["status"] == "VOIDED"


async def test_void_is_per_id_and_scoped(client, world):
    ours = await _approved(world)
    theirs = await _approved(world, number="INV-F-1", account=world.foreign_account)
    ids = [_gid("Invoice", ours), _gid("Invoice", theirs), "garbage"]
    for role in ("viewer", "customer"):
        assert error_codes(await gql(client, VOID, {"ids": ids}, token=world.tokens[role])) == ["FORBIDDEN"]
    result = await gql(client, VOID, {"ids": ids, "notify": False}, token=world.tokens["owner"])
    outcomes = result["data"]["voidInvoices"]["results"]
    assert [o["error"] and o["error"]["code"] for o in outcomes] == [None, "NOT_FOUND", "NOT_FOUND"]
    assert (await Invoice.get(id=theirs.id)).status == "APPROVED"
    foreign = await gql(client, VOID, {"ids": ids[:1]}, token=world.tokens["foreign_owner"])
    assert foreign["data"]["voidInvoices"]["results"][0]["error"]["code"] == "NOT_FOUND"
    long = await gql(client, VOID, {"ids": ids[:1], "reason": "x" * 1025}, token=world.tokens["owner"])
    assert long["data"]["voidInvoices"]["__typename"] == "ValidationError"


# -- overdue ------------------------------------------------------------------------------

async def _due_on(world, org_timezone, number, due: date, **kw):
    world.org.timezone = org_timezone
    await world.org.save()
    return await _approved(world, number=number, issue_date=due - timedelta(days=30), **kw)


@pytest.mark.parametrize("org_timezone,first_overdue_utc", [
    # Due 2024-10-31: overdue from midnight on 1 November where the organization is.
    ("Pacific/Auckland", datetime(2024, 10, 31, 11, 0, tzinfo=UTC)),    # 00:00 NZDT, 1 Nov
    ("America/Los_Angeles", datetime(2024, 11, 1, 7, 0, tzinfo=UTC)),  # 00:00 PDT, 1 Nov
])
async def test_overdue_boundary_in_the_organization_time_zone(client, redis, world, org_timezone, first_overdue_utc):
    invoice = await _due_on(world, org_timezone, "INV-DUE", date(2024, 10, 31))
    assert await mark_overdue_invoices({"redis": redis}, now=first_overdue_utc - timedelta(seconds=1)) == 0
    assert (await Invoice.get(id=invoice.id)).payment_status == "UNPAID"
    assert await mark_overdue_invoices({"redis": redis}, now=first_overdue_utc) == 1
    assert await mark_overdue_invoices({"redis": redis}, now=first_overdue_utc + timedelta(days=1)) == 0, "idempotent"
    found = await gql(client, LIST, {"filter": {"paymentStatus": ["OVERDUE"]}}, token=world.tokens["owner"])
    assert [e["node"] for e in found["data"]["invoices"]["edges"]] == [{"number": "INV-DUE", "paymentStatus": "OVERDUE"}]
    timeline = (await gql(client, TIMELINE, {"n": "INV-DUE"}, token=world.tokens["owner"]))["data"]["invoice"]["timeline"]
    assert timeline[-1] == {"kind": "OVERDUE", "actor": "scheduler", "fromStatus": None, "toStatus": None, "detail": {
        "dueDate": "2024-10-31", "paymentStatus": "OVERDUE", "previousPaymentStatus": "UNPAID"}}


async def test_the_same_instant_is_overdue_in_auckland_but_not_in_los_angeles(redis, world):
    auckland = await _due_on(world, "Pacific/Auckland", "INV-NZ", date(2024, 10, 31))
    other_org = await f.organization(name="West", timezone="America/Los_Angeles")
    account = await f.managed_account(other_org, name="Pacific Co")
    los_angeles = await _approved(world, number="INV-LA", account=account, issue_date=date(2024, 10, 1))
    await mark_overdue_invoices({"redis": redis}, now=datetime(2024, 10, 31, 12, 0, tzinfo=UTC))
    assert (await Invoice.get(id=auckland.id)).payment_status == "OVERDUE"
    assert (await Invoice.get(id=los_angeles.id)).payment_status == "UNPAID"


async def test_overdue_takes_only_approved_invoices_with_something_due(client, redis, world):
    due = date(2024, 10, 31)
    unpaid = await _due_on(world, "UTC", "INV-1", due)
    partial, _ = await _paid(client, world, amounts=("5",), number="INV-2", month=date(2024, 8, 1))
    paid, _ = await _paid(client, world, amounts=("30.75",), number="INV-3", month=date(2024, 7, 1))
    awaiting = await _approved(world, number="INV-4", month=date(2024, 6, 1), status="AWAITING_APPROVAL")
    voided = await _approved(world, number="INV-5", month=date(2024, 5, 1), status="VOIDED")
    await mark_overdue_invoices({"redis": redis}, now=datetime.now(UTC) + timedelta(days=90))
    statuses = {i.number: i.payment_status for i in await Invoice.all()}
    assert statuses == {"INV-1": "OVERDUE", "INV-2": "OVERDUE", "INV-3": "PAID", "INV-4": "UNPAID", "INV-5": "UNPAID"}
    assert {unpaid.id, partial.id} == {e.invoice_id for e in await InvoiceEvent.filter(kind="OVERDUE")}
    left = {i.id: (i.status, i.payment_status) for i in await Invoice.filter(id__in=[paid.id, awaiting.id, voided.id])}
    assert left == {paid.id: ("APPROVED", "PAID"), awaiting.id: ("AWAITING_APPROVAL", "UNPAID"), voided.id: ("VOIDED", "UNPAID")}


async def test_payments_after_the_due_date(client, redis, world):
    invoice = await _due_on(world, "UTC", "INV-LATE", date(2024, 10, 31))
    await mark_overdue_invoices({"redis": redis}, now=datetime(2024, 11, 2, tzinfo=UTC))
    partial = (await _pay(client, world, invoice, "10"))["data"]["recordPayment"]
    assert partial["invoice"]["paymentStatus"] == "OVERDUE", "something is still due after the due date"
    rest = (await _pay(client, world, invoice, "20.75"))["data"]["recordPayment"]
    assert rest["invoice"]["paymentStatus"] == "PAID"


async def test_voiding_an_overdue_invoice_clears_overdue(client, redis, world):
    invoice = await _due_on(world, "UTC", "INV-LATE", date(2024, 10, 31))
    await mark_overdue_invoices({"redis": redis}, now=datetime(2024, 11, 2, tzinfo=UTC))
    result = await gql(client, VOID, {"ids": [_gid("Invoice", invoice)], "notify": False}, token=world.tokens["owner"])
    assert result["data"]["voidInvoices"]["results"][0]["invoice"]["paymentStatus"] == "UNPAID"
    found = await gql(client, LIST, {"filter": {"paymentStatus": ["OVERDUE"]}}, token=world.tokens["owner"])
    assert found["data"]["invoices"]["edges"] == []


# -- what customers see -------------------------------------------------------------------

CUSTOMER_VIEW = """query { invoices(first: 100) { edges { node { number status paymentStatus amountPaid
  amountRefunded amountDue payments { amount paidOn method } refunds { amount refundedOn } } } } }"""


async def test_customers_see_their_voided_and_refunded_invoices(client, world):
    refunded, (payment,) = await _paid(client, world)
    await _refund(client, world, payment, "30.75")
    voided = await _approved(world, number="INV-2024-0002", month=date(2024, 8, 1))
    await gql(client, VOID, {"ids": [_gid("Invoice", voided)], "notify": False}, token=world.tokens["owner"])
    await _approved(world, number="INV-DRAFT", month=date(2024, 7, 1), status="AWAITING_APPROVAL")

    seen = await gql(client, CUSTOMER_VIEW, token=world.tokens["customer"])
    nodes = sorted((e["node"] for e in seen["data"]["invoices"]["edges"]), key=lambda n: n["number"])
    assert nodes == [
        {"number": "INV-2024-0001", "status": "APPROVED", "paymentStatus": "REFUNDED", "amountPaid": "30.75",
         "amountRefunded": "30.75", "amountDue": "0.00",
         "payments": [{"amount": "30.75", "paidOn": "2024-10-10", "method": "BANK_TRANSFER"}],
         "refunds": [{"amount": "30.75", "refundedOn": "2024-10-20"}]},
        {"number": "INV-2024-0002", "status": "VOIDED", "paymentStatus": "UNPAID", "amountPaid": "0.00",
         "amountRefunded": "0.00", "amountDue": "0.00", "payments": [], "refunds": []},
    ]
    internal = await gql(client, "{ invoices { edges { node { payments { reference } } } } }", token=world.tokens["customer"])
    assert error_codes(internal) == ["FORBIDDEN"]
    reason = await gql(client, "{ invoices { edges { node { refunds { reason } } } } }", token=world.tokens["customer"])
    assert error_codes(reason) == ["FORBIDDEN"]
    for role in ("other_customer", "foreign_owner"):
        other = await gql(client, CUSTOMER_VIEW, token=world.tokens[role])
        assert other["data"]["invoices"]["edges"] == [], role
        node = await gql(client, "query($id: ID!) { node(id: $id) { id } }", {"id": payment}, token=world.tokens[role])
        assert node["data"]["node"] is None, role
    mine = await gql(client, "query($id: ID!) { node(id: $id) { ... on Payment { amount } } }", {"id": payment},
                     token=world.tokens["customer"])
    assert mine["data"]["node"] == {"amount": "30.75"}


# -- the timeline -------------------------------------------------------------------------

async def test_the_timeline_tells_who_did_what(client, world):
    invoice, (payment,) = await _paid(client, world, amounts=("30.75",))
    await _refund(client, world, payment, "30.75")
    await gql(client, VOID, {"ids": [_gid("Invoice", invoice)], "notify": False}, token=world.tokens["owner"])
    timeline = (await gql(client, TIMELINE, {"n": invoice.number}, token=world.tokens["viewer"]))["data"]["invoice"]["timeline"]
    owner = world.users["owner"].email
    assert [(e["kind"], e["actor"]) for e in timeline] == [
        ("GENERATED", "worker"), ("PAYMENT_RECORDED", owner), ("PAYMENT_REFUNDED", owner), ("VOID", owner)]
    assert timeline[2]["detail"]["amount"] == "30.75"
