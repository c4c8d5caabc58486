"""Billing periods over GraphQL: the scope matrix, fields, filters, pagination, and no N+1."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import pytest
from strawberry.relay import to_base64

from models.billing_periods import PeriodState
from tests import factories as f
from tests.graphql import StatementCounter as _Counter
from tests.graphql import error_codes, gql

LIST = """query($first: Int, $after: String, $last: Int, $before: String, $filter: BillingPeriodFilter,
  $order: BillingPeriodOrder) {
  billingPeriods(first: $first, after: $after, last: $last, before: $before, filter: $filter, orderBy: $order) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor node { id month startDate endDate state closedAt invoiceCount } } } }"""
NODE = "query($id: ID!) { node(id: $id) { ... on BillingPeriod { month invoiceCount } } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { ... on BillingPeriod { month } } }"
CLOSED_AT = datetime(2024, 10, 2, 3, 0, tzinfo=UTC)
MISSING = to_base64("BillingPeriod", "00000000-0000-4000-8000-000000000000")


def gid(row) -> str:
    return to_base64("BillingPeriod", str(row.id))


async def _periods(world):
    """Northwind: 2024-09 (closed, two invoices) and 2024-10 (open); Fabrikam: 2024-09."""
    september = await f.billing_period(world.org, date(2024, 9, 1), state=PeriodState.CLOSED, closed_at=CLOSED_AT)
    october = await f.billing_period(world.org, date(2024, 10, 1))
    foreign = await f.billing_period(world.foreign_org, date(2024, 9, 1))
    await f.invoice(world.account, september)
    await f.invoice(world.other_account, september)
    await f.invoice(world.foreign_account, foreign)
    return september, october, foreign


@pytest.mark.parametrize("role,visible", [
    ("owner", ["2024-10", "2024-09"]), ("viewer", ["2024-10", "2024-09"]), ("customer", None),
    ("other_customer", None), ("foreign_owner", ["2024-09"]),
])
async def test_billing_periods_scope_matrix(client, world, role, visible):
    september, october, foreign = await _periods(world)
    token = world.tokens[role]
    result = await gql(client, LIST, token=token)
    if visible is None:
        assert error_codes(result) == ["FORBIDDEN"]
        assert result["data"] is None
    else:
        page = result["data"]["billingPeriods"]
        assert [e["node"]["month"] for e in page["edges"]] == visible
        assert page["totalCount"] == len(visible)
    own_visible = role in ("owner", "viewer")
    for row, shown, count in ((september, own_visible, 2), (october, own_visible, 0), (foreign, role == "foreign_owner", 1)):
        node = await gql(client, NODE, {"id": gid(row)}, token=token)
        assert "errors" not in node
        assert node["data"]["node"] == ({"month": row.label, "invoiceCount": count} if shown else None)
    nodes = await gql(client, NODES, {"ids": [gid(september), gid(foreign), MISSING]}, token=token)
    expected = {"owner": [{"month": "2024-09"}, None, None], "viewer": [{"month": "2024-09"}, None, None],
                "foreign_owner": [None, {"month": "2024-09"}, None]}.get(role, [None, None, None])
    assert nodes["data"]["nodes"] == expected


async def test_unauthenticated_reads_are_refused(client, world):
    await _periods(world)
    assert error_codes(await gql(client, LIST)) == ["UNAUTHENTICATED"]


async def test_a_period_reads_back_every_field(client, world):
    september, october, _ = await _periods(world)
    february = await f.billing_period(world.org, date(2024, 2, 1))
    edges = (await gql(client, LIST, token=world.tokens["owner"]))["data"]["billingPeriods"]["edges"]
    nodes = {e["node"]["month"]: e["node"] for e in edges}
    assert nodes["2024-09"] == {
        "id": gid(september), "month": "2024-09", "startDate": "2024-09-01", "endDate": "2024-09-30",
        "state": "CLOSED", "closedAt": "2024-10-02T03:00:00+00:00", "invoiceCount": 2,
    }
    assert nodes["2024-10"] == {
        "id": gid(october), "month": "2024-10", "startDate": "2024-10-01", "endDate": "2024-10-31",
        "state": "OPEN", "closedAt": None, "invoiceCount": 0,
    }
    # The last day of a leap February: the end is inclusive, one day before the stored bound.
    assert nodes["2024-02"]["endDate"] == "2024-02-29" and nodes["2024-02"]["id"] == gid(february)


async def test_pages_filters_and_orders(client, world, settings):
    token = world.tokens["viewer"]
    months = [date(2023, m, 1) for m in range(1, 13)] + [date(2024, m, 1) for m in range(1, 4)]
    for month in months:
        closed = month < date(2024, 2, 1)
        await f.billing_period(world.org, month, state=PeriodState.CLOSED if closed else PeriodState.OPEN,
                               closed_at=CLOSED_AT if closed else None)
    await f.billing_period(world.foreign_org, date(2023, 6, 1))
    labels = [m.strftime("%Y-%m") for m in months]

    seen, after = [], None
    order = {"field": "MONTH", "direction": "ASC"}
    while True:
        page = (await gql(client, LIST, {"first": 4, "after": after, "order": order}, token=token))["data"]["billingPeriods"]
        assert page["totalCount"] == 15
        seen += [e["node"]["month"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == labels

    async def listed(**variables):
        page = (await gql(client, LIST, variables, token=token))["data"]["billingPeriods"]
        return [e["node"]["month"] for e in page["edges"]], page

    default, page = await listed(first=3)
    assert default == labels[::-1][:3] and page["pageInfo"]["hasNextPage"] is True
    last, page = await listed(last=2, order=order)
    assert last == labels[-2:] and page["pageInfo"]["hasPreviousPage"] is True
    assert (await listed(filter={"state": "OPEN"}))[0] == ["2024-03", "2024-02"]
    assert len((await listed(filter={"state": "CLOSED"}, first=50))[0]) == 13
    assert (await listed(filter={"from": "2023-11", "to": "2024-01"}))[0] == ["2024-01", "2023-12", "2023-11"]
    assert (await listed(filter={"from": "2023-11", "to": "2024-02", "state": "OPEN"}))[0] == ["2024-02"]
    assert (await listed(filter={"from": "2024-02", "to": "2023-11"}))[0] == []

    too_big = await gql(client, LIST, {"first": settings.max_page_size + 1}, token=token)
    assert error_codes(too_big) == ["BAD_USER_INPUT"]
    bad_month = await gql(client, LIST, {"filter": {"from": "2024-1"}}, token=token)
    assert "is not a month" in bad_month["errors"][0]["message"]




async def _statements(client, token) -> list[str]:
    logger = logging.getLogger("tortoise.db_client")
    counter, old_level = _Counter(), logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    try:
        result = await gql(client, "{ billingPeriods(first: 100) { edges { node { month invoiceCount } } } }", token=token)
    finally:
        logger.removeHandler(counter)
        logger.setLevel(old_level)
    assert "errors" not in result
    return counter.statements


async def test_invoice_counts_of_many_periods_take_one_query(client, world):
    token = world.tokens["owner"]
    await gql(client, "{ viewer { scope } }", token=token)  # the token's first use is recorded once
    for month in range(1, 3):
        period = await f.billing_period(world.org, date(2022, month, 1))
        await f.invoice(world.account, period)
    small = await _statements(client, token)
    for year in (2023, 2024):
        for month in range(1, 13):
            period = await f.billing_period(world.org, date(year, month, 1))
            await f.invoice(world.account, period)
            await f.invoice(world.other_account, period)
    large = await _statements(client, token)
    # Token, count, page, invoice counts: the same few statements whatever the number of periods.
    assert 0 < len(small) == len(large) <= 5, large
