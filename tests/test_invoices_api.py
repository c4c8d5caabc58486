"""Reading invoices over GraphQL: scopes, filters, presets, search, and no N+1."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pytest
from strawberry.relay import to_base64

from models.invoices import DatePreset, preset_range
from tests import factories as f
from tests.graphql import StatementCounter as _Counter
from tests.graphql import error_codes, gql

LIST = """query($filter: InvoiceFilter, $order: InvoiceOrder, $first: Int) {
  invoices(filter: $filter, orderBy: $order, first: $first) { totalCount edges { node { number status } } } }"""
ONE = """query($n: String!) { invoice(number: $n) { number total amountDue account { name } period
  lineItems { position description amount } } }"""
INTERNAL = """query($n: String!) { invoice(number: $n) { number timeline { kind actor } } }"""
NODE = "query($id: ID!) { node(id: $id) { ... on Invoice { number } } }"


async def _invoices(world):
    """Per account: an approved, an awaiting and a voided-after-approval invoice."""
    made = {}
    month = date(2024, 7, 1)
    for key, account in (("account", world.account), ("other", world.other_account), ("foreign", world.foreign_account)):
        for status in ("APPROVED", "AWAITING_APPROVAL", "VOIDED"):
            period = await f.billing_period(await account.organization, month)
            month = (month + timedelta(days=32)).replace(day=1)
            number = f"INV-{key}-{status}"
            made[number] = await f.generated_invoice(account, period, number=number, status=status)
    return made


VISIBLE = {
    "owner": {f"INV-{a}-{s}" for a in ("account", "other") for s in ("APPROVED", "AWAITING_APPROVAL", "VOIDED")},
    "customer": {"INV-account-APPROVED", "INV-account-VOIDED"},
    "other_customer": {"INV-other-APPROVED", "INV-other-VOIDED"},
    "foreign_owner": {f"INV-foreign-{s}" for s in ("APPROVED", "AWAITING_APPROVAL", "VOIDED")},
}
VISIBLE["viewer"] = VISIBLE["owner"]


@pytest.mark.parametrize("role", list(VISIBLE))
async def test_invoices_scope_matrix(client, world, role):
    made = await _invoices(world)
    token = world.tokens[role]
    listed = await gql(client, LIST, {"first": 100}, token=token)
    numbers = {e["node"]["number"] for e in listed["data"]["invoices"]["edges"]}
    assert numbers == VISIBLE[role]
    assert listed["data"]["invoices"]["totalCount"] == len(VISIBLE[role])
    for number, invoice in made.items():
        one = (await gql(client, ONE, {"n": number}, token=token))["data"]["invoice"]
        node = (await gql(client, NODE, {"id": to_base64("Invoice", str(invoice.id))}, token=token))["data"]["node"]
        if number in VISIBLE[role]:
            assert one["number"] == number and [line["position"] for line in one["lineItems"]] == [1, 2]
            assert node == {"number": number}
        else:
            assert one is None and node is None


@pytest.mark.parametrize("role,allowed", [
    ("owner", True), ("viewer", True), ("customer", False), ("other_customer", False), ("foreign_owner", False),
])
async def test_timeline_is_for_msp_users_only(client, world, role, allowed):
    await _invoices(world)
    result = await gql(client, INTERNAL, {"n": "INV-account-APPROVED"}, token=world.tokens[role])
    if allowed:
        assert result["data"]["invoice"]["timeline"] == [{"kind": "GENERATED", "actor": "worker"}]
    elif role == "customer":
        assert error_codes(result) == ["FORBIDDEN"]
    else:
        assert result["data"]["invoice"] is None


async def test_amount_due_is_zero_once_voided(client, world):
    await _invoices(world)
    token = world.tokens["owner"]
    approved = (await gql(client, ONE, {"n": "INV-account-APPROVED"}, token=token))["data"]["invoice"]
    voided = (await gql(client, ONE, {"n": "INV-account-VOIDED"}, token=token))["data"]["invoice"]
    assert approved["amountDue"] == approved["total"] == "30.75"
    assert voided["amountDue"] == "0.00"
    assert approved["account"] == {"name": "Contoso"} and approved["period"] == "2024-07"


async def test_filters_combine(client, world):
    await _invoices(world)
    token = world.tokens["owner"]

    async def numbers(**where):
        result = await gql(client, LIST, {"filter": where, "first": 100}, token=token)
        return {e["node"]["number"] for e in result["data"]["invoices"]["edges"]}

    account_id = to_base64("ManagedAccount", str(world.account.id))
    assert await numbers(status=["APPROVED"]) == {"INV-account-APPROVED", "INV-other-APPROVED"}
    assert await numbers(status=["APPROVED"], accountIds=[account_id]) == {"INV-account-APPROVED"}
    assert await numbers(accountIds=[to_base64("ManagedAccount", str(world.foreign_account.id))]) == set()
    assert await numbers(accountIds=["garbage"]) == set()
    assert await numbers(search="tail") == {f"INV-other-{s}" for s in ("APPROVED", "AWAITING_APPROVAL", "VOIDED")}
    assert await numbers(search="inv-account-app") == {"INV-account-APPROVED"}
    assert await numbers(periodFrom="2024-08", periodTo="2024-10") == {
        "INV-account-AWAITING_APPROVAL", "INV-account-VOIDED", "INV-other-APPROVED"}
    assert await numbers(paymentStatus=["PAID"]) == set()
    assert await numbers(issuedFrom="2024-10-01", issuedTo="2024-10-01", status=["VOIDED"]) == {
        "INV-account-VOIDED", "INV-other-VOIDED"}
    assert await numbers(issuedFrom="2024-10-02") == set()


async def test_presets_select_by_issue_date_in_the_organization_time_zone(client, world):
    period = await f.billing_period(world.org)
    today = date.today()
    first_this_month = today.replace(day=1)
    await f.generated_invoice(world.account, period, number="INV-NOW", issue_date=today)
    await f.generated_invoice(
        world.other_account, period, number="INV-LAST", issue_date=first_this_month - timedelta(days=1)
    )
    token = world.tokens["owner"]

    async def numbers(preset):
        result = await gql(client, LIST, {"filter": {"preset": preset}}, token=token)
        return {e["node"]["number"] for e in result["data"]["invoices"]["edges"]}

    assert await numbers("THIS_MONTH") == {"INV-NOW"}
    assert await numbers("LAST_MONTH") == {"INV-LAST"}
    assert "INV-NOW" in await numbers("THIS_YEAR") and "INV-NOW" in await numbers("THIS_QUARTER")


@pytest.mark.parametrize("preset,today,expected", [
    (DatePreset.THIS_MONTH, date(2026, 2, 14), (date(2026, 2, 1), date(2026, 2, 28))),
    (DatePreset.LAST_MONTH, date(2026, 1, 5), (date(2025, 12, 1), date(2025, 12, 31))),
    (DatePreset.THIS_QUARTER, date(2026, 11, 21), (date(2026, 10, 1), date(2026, 12, 31))),
    (DatePreset.LAST_QUARTER, date(2026, 2, 1), (date(2025, 10, 1), date(2025, 12, 31))),
    (DatePreset.THIS_YEAR, date(2024, 2, 29), (date(2024, 1, 1), date(2024, 12, 31))),
])
def test_preset_ranges(preset, today, expected):
    assert preset_range(preset, today) == expected


async def test_order_by_number(client, world):
    await _invoices(world)
    result = await gql(client, LIST, {"order": {"field": "NUMBER", "direction": "ASC"}, "first": 3}, token=world.tokens["owner"])
    assert [e["node"]["number"] for e in result["data"]["invoices"]["edges"]] == [
        "INV-account-APPROVED", "INV-account-AWAITING_APPROVAL", "INV-account-VOIDED"]


PAGED = """query($first: Int, $after: String) { invoices(first: $first, after: $after) {
  totalCount pageInfo { hasNextPage hasPreviousPage } edges { node { number } } } }"""


@pytest.mark.parametrize("role,visible", [("owner", 6), ("customer", 2)])
async def test_a_page_counts_the_whole_list_wherever_it_starts(client, world, role, visible):
    """The size of the list comes with the page's rows; a page past the end, or of no rows,
    still counts the viewer's list."""
    await _invoices(world)
    token = world.tokens[role]

    async def page(first, after=None):
        cursor = to_base64("cursor", after) if after is not None else None
        return (await gql(client, PAGED, {"first": first, "after": cursor}, token=token))["data"]["invoices"]

    first = await page(1)
    assert (first["totalCount"], len(first["edges"]), first["pageInfo"]["hasNextPage"]) == (visible, 1, True)
    last = await page(5, visible - 2)
    assert (last["totalCount"], len(last["edges"]), last["pageInfo"]) == (
        visible, 1, {"hasNextPage": False, "hasPreviousPage": True})
    for empty in (await page(5, visible - 1), await page(5, 40), await page(0)):
        assert (empty["totalCount"], empty["edges"]) == (visible, [])


async def _statements_for(client, token, count, fields):
    logger = logging.getLogger("tortoise.db_client")
    counter = _Counter()
    logger.addHandler(counter)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        result = await gql(client, "{ invoices(first: 100) { edges { node { %s } } } }" % fields, token=token)
    finally:
        logger.removeHandler(counter)
        logger.setLevel(old_level)
    assert len(result["data"]["invoices"]["edges"]) == count
    return counter.statements


@pytest.mark.parametrize("fields,most", [
    ("account { name } lineItems { amount } timeline { kind }", 5),
    ("account { name } period lineItems { amount } payments { amount } refunds { amount } "
     "timeline { kind actor }", 9),
])
async def test_the_invoice_list_issues_the_same_statements_for_10_and_100_invoices(client, world, fields, most):
    token = world.tokens["owner"]
    await gql(client, "{ viewer { scope } }", token=token)  # the token's first use is recorded once
    month = date(2020, 1, 1)
    accounts = [world.account, world.other_account]
    periods = []
    for _ in range(50):
        periods.append(await f.billing_period(world.org, month))
        month = (month + timedelta(days=32)).replace(day=1)
    for i in range(10):
        await f.generated_invoice(accounts[i % 2], periods[i // 2], number=f"INV-{i:04}", lines=3, events=2)
    small = await _statements_for(client, token, 10, fields)
    for i in range(10, 100):
        await f.generated_invoice(accounts[i % 2], periods[i // 2], number=f"INV-{i:04}", lines=3, events=2)
    large = await _statements_for(client, token, 100, fields)
    assert len(small) == len(large) <= most, large


RELATIONS = """fragment Relations on Invoice { number account { name } period
  ... on Invoice { lineItems { position kind description amount unitPrice } }
  payments { amount method recordedBy } refunds { amount reason } timeline { kind actor fromStatus detail } }"""
PAGE = """query { invoices(first: 100) { edges { node { ...Relations more: lineItems { amount } } } } }
""" + RELATIONS
ALONE = """query($n: String!) { invoice(number: $n) { ...Relations more: lineItems { amount } } }
""" + RELATIONS
PAY = """mutation($id: ID!) { recordPayment(input: {invoiceId: $id, amount: "20", paidOn: "2024-10-10",
  method: BANK_TRANSFER, reference: "REF"}) { ... on PaymentRecorded { payment { id } } } }"""
REFUND = """mutation($id: ID!) { refundPayment(input: {paymentId: $id, amount: "5", refundedOn: "2024-10-20",
  reason: "Goodwill", notifyCustomer: false}) { __typename } }"""


async def test_the_list_answers_each_relation_as_the_invoice_alone_does(client, world):
    """The list loads relations for its whole page (through fragments and aliases); each
    node answers exactly what the same invoice answers on its own, field by field."""
    made = await _invoices(world)
    token = world.tokens["owner"]
    paid = made["INV-account-APPROVED"]
    payment = await gql(client, PAY, {"id": to_base64("Invoice", str(paid.id))}, token=token)
    payment_id = payment["data"]["recordPayment"]["payment"]["id"]
    assert (await gql(client, REFUND, {"id": payment_id}, token=token))["data"]["refundPayment"] == {
        "__typename": "PaymentRefunded"}
    page = await gql(client, PAGE, token=token)
    nodes = {e["node"]["number"]: e["node"] for e in page["data"]["invoices"]["edges"]}
    assert set(nodes) == VISIBLE["owner"] and "errors" not in page
    for number, node in nodes.items():
        assert node == (await gql(client, ALONE, {"n": number}, token=token))["data"]["invoice"]
    owner = world.users["owner"].email
    assert [e["actor"] for e in nodes["INV-account-APPROVED"]["timeline"]] == ["worker", owner, owner]
    assert nodes["INV-account-APPROVED"]["payments"][0]["recordedBy"] and nodes["INV-account-APPROVED"]["refunds"]


async def test_a_customer_listing_the_timeline_is_refused_per_invoice(client, world):
    await _invoices(world)
    result = await gql(client, """{ invoices(first: 100) { edges { node { number lineItems { amount }
        timeline { kind } } } } }""", token=world.tokens["customer"])
    assert error_codes(result) == ["FORBIDDEN"] and result["data"] is None
    listed = await gql(client, "{ invoices(first: 100) { edges { node { number lineItems { amount } } } } }",
                       token=world.tokens["customer"])
    assert {e["node"]["number"] for e in listed["data"]["invoices"]["edges"]} == VISIBLE["customer"]


async def test_line_amounts_are_rounded_as_round_money(client, world):
    """The database rounds a list's line amounts (`printed_lines`); the API answers what
    `round_money` makes of the stored amount, ties away from zero, in each currency."""
    from decimal import Decimal

    from models import InvoiceLineItem
    from models.currencies import round_money

    stored = ["0.1250", "-0.6250", "2.0050", "-2.0049", "1.0000", "12.5000", "-12.5000", "0.0000"]
    month = date(2024, 7, 1)
    for currency in ("USD", "JPY", "BHD"):
        period = await f.billing_period(await world.account.organization, month)
        month = (month + timedelta(days=32)).replace(day=1)
        made = await f.generated_invoice(world.account, period, number=f"INV-{currency}", lines=0, currency=currency)
        await InvoiceLineItem.bulk_create([
            InvoiceLineItem(revision_id=made.current_revision_id, position=i + 1, description="x", amount=Decimal(a))
            for i, a in enumerate(stored)
        ])
    query = "{ invoices(first: 10) { edges { node { number currency lineItems { amount } } } } }"
    listed = await gql(client, query, token=world.tokens["owner"])
    seen = {e["node"]["number"]: e["node"] for e in listed["data"]["invoices"]["edges"]}
    for currency in ("USD", "JPY", "BHD"):
        node = seen[f"INV-{currency}"]
        assert [line["amount"] for line in node["lineItems"]] == [str(round_money(Decimal(a), currency)) for a in stored]
        one = await gql(client, ONE, {"n": f"INV-{currency}"}, token=world.tokens["owner"])
        assert [line["amount"] for line in one["data"]["invoice"]["lineItems"]] == [line["amount"] for line in node["lineItems"]]
