"""Exchange rates over GraphQL: the scope matrix, validation and pagination."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from strawberry.relay import to_base64

from models import ExchangeRate
from tests.graphql import error_codes, gql

LIST = """query($first: Int, $after: String, $filter: ExchangeRateFilter, $order: ExchangeRateOrder) {
  exchangeRates(first: $first, after: $after, filter: $filter, orderBy: $order) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { id month currency baseCurrency rate } } } }"""
SET = """mutation($input: SetExchangeRateInput!) { setExchangeRate(input: $input) {
  __typename ... on ExchangeRateSaved { exchangeRate { id month currency rate } }
  ... on UserError { code field message } } }"""
NODE = "query($id: ID!) { node(id: $id) { ... on ExchangeRate { rate } } }"


async def _rates(world):
    made = []
    for org, rate in ((world.org, "0.9210"), (world.foreign_org, "0.5000")):
        made.append(await ExchangeRate.create(organization=org, month=date(2024, 9, 1), currency="EUR", rate=Decimal(rate)))
    return made


@pytest.mark.parametrize("role,visible", [
    ("owner", ["0.921"]), ("viewer", ["0.921"]), ("customer", None),
    ("other_customer", None), ("foreign_owner", ["0.5"]),
])
async def test_exchange_rates_scope_matrix(client, world, role, visible):
    own, foreign = await _rates(world)
    result = await gql(client, LIST, token=world.tokens[role])
    node = await gql(client, NODE, {"id": to_base64("ExchangeRate", str(own.id))}, token=world.tokens[role])
    if visible is None:
        assert error_codes(result) == ["FORBIDDEN"]
        assert node == {"data": {"node": None}}
        return
    assert [e["node"]["rate"] for e in result["data"]["exchangeRates"]["edges"]] == visible
    assert node["data"]["node"] == ({"rate": "0.921"} if role in ("owner", "viewer") else None)


@pytest.mark.parametrize("role,allowed", [
    ("owner", True), ("viewer", False), ("customer", False), ("other_customer", False), ("foreign_owner", True),
])
async def test_set_exchange_rate_scope_matrix(client, world, role, allowed):
    await _rates(world)
    result = await gql(client, SET, {"input": {"month": "2024-09", "currency": "EUR", "rate": "0.95"}}, token=world.tokens[role])
    if not allowed:
        assert error_codes(result) == ["FORBIDDEN"]
        assert {str(r.rate) for r in await ExchangeRate.all()} == {"0.9210000000", "0.5000000000"}
        return
    assert result["data"]["setExchangeRate"]["__typename"] == "ExchangeRateSaved"
    own_org = world.users[role].organization_id
    # Replaces the month's rate of the caller's organization only; never another's.
    rates = {r.organization_id: r.rate for r in await ExchangeRate.all()}
    assert rates[own_org] == Decimal("0.95") and len(rates) == 2
    other, kept = (world.foreign_org.id, Decimal("0.5")) if own_org == world.org.id else (world.org.id, Decimal("0.921"))
    assert rates[other] == kept


@pytest.mark.parametrize("changes,field", [
    ({"currency": "EURO"}, "currency"),
    ({"currency": "XXX"}, "currency"),
    ({"currency": "USD"}, "currency"),
    ({"baseCurrency": "ABC"}, "baseCurrency"),
    ({"rate": "0"}, "rate"),
    ({"rate": "-1.2"}, "rate"),
    ({"rate": "1.00000000001"}, "rate"),
    ({"rate": "NaN"}, "rate"),
])
async def test_set_exchange_rate_validation(client, world, changes, field):
    payload = {"month": "2024-09", "currency": "EUR", "rate": "0.95", **changes}
    result = await gql(client, SET, {"input": payload}, token=world.tokens["owner"])
    assert result["data"]["setExchangeRate"]["__typename"] == "ValidationError"
    assert result["data"]["setExchangeRate"]["field"] == field
    assert await ExchangeRate.all().count() == 0


async def test_a_bad_month_is_a_graphql_input_error(client, world):
    result = await gql(client, SET, {"input": {"month": "2024-13", "currency": "EUR", "rate": "1"}}, token=world.tokens["owner"])
    assert "is not a month" in result["errors"][0]["message"]


async def test_pages_are_stable_capped_and_counted(client, world, settings):
    for month in range(1, 13):
        for currency in ("EUR", "GBP"):
            await ExchangeRate.create(organization=world.org, month=date(2024, month, 1), currency=currency, rate=Decimal(month))
    seen, after = [], None
    order = {"field": "MONTH", "direction": "ASC"}
    while True:
        page = (await gql(client, LIST, {"first": 5, "after": after, "order": order}, token=world.tokens["owner"]))["data"]["exchangeRates"]
        assert page["totalCount"] == 24
        seen += [(e["node"]["month"], e["node"]["currency"]) for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == 24 == len(set(seen))
    assert [m for m, _ in seen] == sorted(m for m, _ in seen)
    filtered = await gql(client, LIST, {"filter": {"currencies": ["gbp"], "monthFrom": "2024-11"}}, token=world.tokens["owner"])
    assert [e["node"]["month"] for e in filtered["data"]["exchangeRates"]["edges"]] == ["2024-12", "2024-11"]
    too_big = await gql(client, LIST, {"first": settings.max_page_size + 1}, token=world.tokens["owner"])
    assert error_codes(too_big) == ["BAD_USER_INPUT"]
