"""Billing rules over GraphQL: the scope matrix, validation, pagination, and no N+1."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

import pytest
from strawberry.relay import to_base64

from models import BillingRule
from models.billing_rules import RuleCalculation, RuleKind
from tests.graphql import StatementCounter as _Counter
from tests.graphql import error_codes, gql

FIELDS = """id name kind calculation value providerName serviceName serviceCategory startsOn endsOn
  isActive createdAt updatedAt account { id name }"""
LIST = """query($first: Int, $after: String, $last: Int, $before: String, $filter: BillingRuleFilter,
  $order: BillingRuleOrder) {
  billingRules(first: $first, after: $after, last: $last, before: $before, filter: $filter, orderBy: $order) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { %s } } } }""" % FIELDS
NODE = "query($id: ID!) { node(id: $id) { ... on BillingRule { name account { name } } } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { ... on BillingRule { name } } }"
RESULT = """__typename ... on BillingRuleSaved { billingRule { %s } }
  ... on UserError { code field message }""" % FIELDS
CREATE = """mutation($input: CreateBillingRuleInput!) { createBillingRule(input: $input) { %s } }""" % RESULT
UPDATE = """mutation($id: ID!, $input: UpdateBillingRuleInput!) {
  updateBillingRule(id: $id, input: $input) { %s } }""" % RESULT
DELETE = """mutation($id: ID!) { deleteBillingRule(id: $id) { __typename
  ... on BillingRuleDeleted { deletedId } ... on UserError { code field message } } }"""


def gid(type_name: str, row) -> str:
    return to_base64(type_name, str(row.id))


async def _rule(org, **kw) -> BillingRule:
    kw.setdefault("name", "Rule")
    kw.setdefault("kind", RuleKind.DISCOUNT)
    kw.setdefault("calculation", RuleCalculation.PERCENT)
    kw.setdefault("value", Decimal("10"))
    return await BillingRule.create(organization=org, **kw)


async def _rules(world):
    """One rule in each organization: "Own" on `account`, "Foreign" for all of Fabrikam's accounts."""
    own = await _rule(world.org, name="Own", managed_account=world.account)
    foreign = await _rule(world.foreign_org, name="Foreign")
    return own, foreign


async def _snapshot() -> list[tuple]:
    """Every rule, every column: a failed mutation must leave this unchanged."""
    return [tuple(r.values()) for r in await BillingRule.all().order_by("id").values()]


def _valid(world, **changes) -> dict:
    payload = {"name": "Partner discount", "kind": "DISCOUNT", "calculation": "PERCENT", "value": "12.5",
               "accountId": gid("ManagedAccount", world.account)}
    payload.update(changes)
    return payload


# --- reads -----------------------------------------------------------------------------

@pytest.mark.parametrize("role,visible", [
    ("owner", ["Own"]), ("viewer", ["Own"]), ("customer", None), ("other_customer", None),
    ("foreign_owner", ["Foreign"]),
])
async def test_billing_rules_scope_matrix(client, world, role, visible):
    own, foreign = await _rules(world)
    token = world.tokens[role]
    result = await gql(client, LIST, token=token)
    if visible is None:
        assert error_codes(result) == ["FORBIDDEN"]
        assert result["data"] is None
    else:
        page = result["data"]["billingRules"]
        assert [e["node"]["name"] for e in page["edges"]] == visible
        assert page["totalCount"] == 1
    for row, type_visible in ((own, role in ("owner", "viewer")), (foreign, role == "foreign_owner")):
        node = await gql(client, NODE, {"id": gid("BillingRule", row)}, token=token)
        assert "errors" not in node
        if type_visible:
            expected_account = {"name": "Contoso"} if row is own else None
            assert node["data"]["node"] == {"name": row.name, "account": expected_account}
        else:
            assert node["data"]["node"] is None
    nodes = await gql(client, NODES, {"ids": [gid("BillingRule", own), gid("BillingRule", foreign)]}, token=token)
    expected = {"owner": [{"name": "Own"}, None], "viewer": [{"name": "Own"}, None],
                "foreign_owner": [None, {"name": "Foreign"}]}.get(role, [None, None])
    assert nodes["data"]["nodes"] == expected


async def test_a_rule_reads_back_every_field(client, world):
    row = await _rule(
        world.org, name="AWS markup", kind=RuleKind.MARKUP, calculation=RuleCalculation.PERCENT,
        value=Decimal("150.2500"), provider_name="AWS", service_category="Compute",
        starts_on=date(2024, 1, 1), ends_on=date(2024, 12, 1), is_active=False,
    )
    node = (await gql(client, LIST, token=world.tokens["viewer"]))["data"]["billingRules"]["edges"][0]["node"]
    assert node["id"] == gid("BillingRule", row)
    assert {k: node[k] for k in ("name", "kind", "calculation", "value", "providerName", "serviceName",
                                 "serviceCategory", "startsOn", "endsOn", "isActive", "account")} == {
        "name": "AWS markup", "kind": "MARKUP", "calculation": "PERCENT", "value": "150.25",
        "providerName": "AWS", "serviceName": None, "serviceCategory": "Compute",
        "startsOn": "2024-01", "endsOn": "2024-12", "isActive": False, "account": None,
    }


async def test_unauthenticated_reads_are_refused(client, world):
    await _rules(world)
    assert error_codes(await gql(client, LIST)) == ["UNAUTHENTICATED"]


async def test_pages_filters_and_orders(client, world, settings):
    token = world.tokens["owner"]
    specs = [
        ("Credit", RuleKind.CREDIT, world.account, True),
        ("Alpha discount", RuleKind.DISCOUNT, None, True),
        ("Markup", RuleKind.MARKUP, world.other_account, True),
        ("Zulu tax", RuleKind.TAX, world.account, False),
        ("Beta discount", RuleKind.DISCOUNT, world.other_account, False),
        ("Extra markup", RuleKind.MARKUP, None, True),
        ("Another credit", RuleKind.CREDIT, world.account, True),
    ]
    for name, kind, account, active in specs:
        await _rule(world.org, name=name, kind=kind, managed_account=account, is_active=active)
    await _rule(world.foreign_org, name="Foreign", managed_account=world.foreign_account)
    creation = [r.name for r in await BillingRule.filter(organization=world.org).order_by("created_at", "id")]

    # The default order is the order rules apply in within a kind: creation order.
    seen, after = [], None
    while True:
        page = (await gql(client, LIST, {"first": 3, "after": after}, token=token))["data"]["billingRules"]
        assert page["totalCount"] == 7
        seen += [e["node"]["name"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == creation

    last_page = (await gql(client, LIST, {"last": 2}, token=token))["data"]["billingRules"]
    assert [e["node"]["name"] for e in last_page["edges"]] == creation[-2:]
    before = (await gql(client, LIST, {"first": 10}, token=token))["data"]["billingRules"]["edges"][3]["cursor"]
    previous = (await gql(client, LIST, {"last": 2, "before": before}, token=token))["data"]["billingRules"]
    assert [e["node"]["name"] for e in previous["edges"]] == creation[1:3]
    assert previous["pageInfo"]["hasPreviousPage"] is True

    async def names(filter=None, order=None):
        result = await gql(client, LIST, {"filter": filter, "order": order}, token=token)
        return [e["node"]["name"] for e in result["data"]["billingRules"]["edges"]]

    assert await names(order={"field": "NAME", "direction": "ASC"}) == sorted(creation)
    assert await names(order={"field": "NAME", "direction": "DESC"}) == sorted(creation, reverse=True)
    by_kind = await names(order={"field": "KIND", "direction": "ASC"})
    assert [n for n in by_kind if "credit" in n.lower()] == by_kind[:2]
    assert by_kind[-1] == "Zulu tax"
    assert await names(order={"field": "CREATED_AT", "direction": "DESC"}) == creation[::-1]

    account_id = gid("ManagedAccount", world.account)
    assert set(await names({"accountIds": [account_id]})) == {"Credit", "Zulu tax", "Another credit"}
    # Ids that cannot be visible accounts match nothing; they are not errors.
    assert await names({"accountIds": ["not-an-id", gid("ManagedAccount", world.foreign_account)]}) == []
    assert set(await names({"kinds": ["MARKUP", "TAX"]})) == {"Markup", "Zulu tax", "Extra markup"}
    assert set(await names({"active": False})) == {"Zulu tax", "Beta discount"}
    assert await names({"accountIds": [account_id], "kinds": ["CREDIT"], "active": True}) == ["Credit", "Another credit"]

    too_big = await gql(client, LIST, {"first": settings.max_page_size + 1}, token=token)
    assert error_codes(too_big) == ["BAD_USER_INPUT"]




async def _statements(client, token) -> list[str]:
    logger = logging.getLogger("tortoise.db_client")
    counter, old_level = _Counter(), logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    try:
        result = await gql(client, "{ billingRules(first: 100) { edges { node { name account { name } } } } }", token=token)
    finally:
        logger.removeHandler(counter)
        logger.setLevel(old_level)
    assert "errors" not in result
    return counter.statements


async def test_the_account_of_many_rules_is_loaded_in_one_query(client, world):
    token = world.tokens["owner"]
    await gql(client, "{ viewer { scope } }", token=token)  # the token's first use is recorded once
    accounts = [world.account, world.other_account, None]
    for i in range(3):
        await _rule(world.org, name=f"Rule {i}", managed_account=accounts[i % 3])
    small = await _statements(client, token)
    for i in range(3, 60):
        await _rule(world.org, name=f"Rule {i}", managed_account=accounts[i % 3])
    large = await _statements(client, token)
    # Token, count, page, accounts: the same few statements whatever the number of rules.
    assert 0 < len(small) == len(large) <= 5, large


# --- createBillingRule ---------------------------------------------------------------------

@pytest.mark.parametrize("role,outcome", [
    ("owner", "BillingRuleSaved"), ("viewer", "FORBIDDEN"), ("customer", "FORBIDDEN"),
    ("other_customer", "FORBIDDEN"), ("foreign_owner", "NotFoundError"),
])
async def test_create_billing_rule_scope_matrix(client, world, role, outcome):
    before = await _snapshot()
    result = await gql(client, CREATE, {"input": _valid(world)}, token=world.tokens[role])
    if outcome == "FORBIDDEN":
        assert error_codes(result) == ["FORBIDDEN"]
        assert await _snapshot() == before
        return
    payload = result["data"]["createBillingRule"]
    assert payload["__typename"] == outcome
    if outcome == "NotFoundError":
        # Another organization's account looks exactly like one that does not exist.
        assert payload["code"] == "NOT_FOUND" and payload["field"] == "accountId"
        assert await _snapshot() == before
        return
    rule = payload["billingRule"]
    assert rule["name"] == "Partner discount" and rule["value"] == "12.5"
    assert rule["account"] == {"id": gid("ManagedAccount", world.account), "name": "Contoso"}
    row = await BillingRule.get()
    assert row.organization_id == world.org.id and row.managed_account_id == world.account.id
    assert row.is_active is True and row.provider_name is None and row.starts_on is None


async def test_a_foreign_owner_creates_rules_in_its_own_organization(client, world):
    result = await gql(client, CREATE, {"input": _valid(world, accountId=gid("ManagedAccount", world.foreign_account))},
                       token=world.tokens["foreign_owner"])
    assert result["data"]["createBillingRule"]["__typename"] == "BillingRuleSaved"
    row = await BillingRule.get()
    assert row.organization_id == world.foreign_org.id and row.managed_account_id == world.foreign_account.id


async def test_create_trims_filters_and_reads_empty_as_none(client, world):
    result = await gql(client, CREATE, {"input": _valid(
        world, name="  Spaced  ", accountId=None, providerName="  AWS ", serviceName="   ", serviceCategory="",
        startsOn="2024-03", endsOn="2024-03", isActive=False,
    )}, token=world.tokens["owner"])
    rule = result["data"]["createBillingRule"]["billingRule"]
    assert (rule["name"], rule["providerName"], rule["serviceName"], rule["serviceCategory"]) == ("Spaced", "AWS", None, None)
    assert (rule["startsOn"], rule["endsOn"], rule["isActive"], rule["account"]) == ("2024-03", "2024-03", False, None)
    row = await BillingRule.get()
    assert row.service_name is None and row.service_category is None and row.managed_account_id is None


@pytest.mark.parametrize("kind,calculation,value", [
    ("CREDIT", "PERCENT", "100"), ("DISCOUNT", "PERCENT", "0"), ("MARKUP", "PERCENT", "1000"),
    ("TAX", "PERCENT", "1000.0000"), ("CREDIT", "FIXED", "2500.1234"), ("DISCOUNT", "FIXED", "9999999999999999"),
])
async def test_values_at_the_limits_are_accepted(client, world, kind, calculation, value):
    result = await gql(client, CREATE, {"input": _valid(world, kind=kind, calculation=calculation, value=value)},
                       token=world.tokens["owner"])
    assert result["data"]["createBillingRule"]["__typename"] == "BillingRuleSaved"
    assert (await BillingRule.get()).value == Decimal(value)


INVALID = [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"name": "nul\x00byte"}, "name"),
    ({"value": "-0.01"}, "value"),
    ({"value": "1.00001"}, "value"),
    ({"value": "NaN"}, "value"),
    ({"value": "Infinity"}, "value"),
    ({"value": "1e16"}, "value"),
    ({"kind": "CREDIT", "value": "100.0001"}, "value"),
    ({"kind": "DISCOUNT", "value": "101"}, "value"),
    ({"kind": "MARKUP", "value": "1000.01"}, "value"),
    ({"kind": "TAX", "value": "1001"}, "value"),
    ({"startsOn": "2024-10", "endsOn": "2024-09"}, "endsOn"),
    ({"providerName": "p" * 129}, "providerName"),
    ({"serviceName": "s" * 256}, "serviceName"),
    ({"serviceCategory": "c" * 129}, "serviceCategory"),
    ({"providerName": "a\x00b"}, "providerName"),
]


@pytest.mark.parametrize("changes,field", INVALID)
async def test_create_billing_rule_validation(client, world, changes, field):
    result = await gql(client, CREATE, {"input": _valid(world, **changes)}, token=world.tokens["owner"])
    payload = result["data"]["createBillingRule"]
    assert (payload["__typename"], payload["code"], payload["field"]) == ("ValidationError", "INVALID", field)
    assert payload["message"]
    assert await BillingRule.all().count() == 0


@pytest.mark.parametrize("account", ["foreign", "malformed", "wrong_type", "missing"])
async def test_create_with_an_account_that_is_not_visible(client, world, account):
    ids = {
        "foreign": gid("ManagedAccount", world.foreign_account),
        "malformed": "not-a-global-id",
        "wrong_type": gid("BillingProfile", world.profile),
        "missing": to_base64("ManagedAccount", "00000000-0000-4000-8000-000000000000"),
    }
    result = await gql(client, CREATE, {"input": _valid(world, accountId=ids[account])}, token=world.tokens["owner"])
    payload = result["data"]["createBillingRule"]
    assert (payload["__typename"], payload["code"], payload["field"]) == ("NotFoundError", "NOT_FOUND", "accountId")
    assert await BillingRule.all().count() == 0


async def test_a_bad_month_or_kind_is_a_graphql_input_error(client, world):
    for changes in ({"startsOn": "2024-13"}, {"kind": "REBATE"}, {"calculation": "RATIO"}):
        result = await gql(client, CREATE, {"input": _valid(world, **changes)}, token=world.tokens["owner"])
        assert error_codes(result) == ["BAD_USER_INPUT"] and result.get("data") is None
    assert await BillingRule.all().count() == 0


# --- updateBillingRule ---------------------------------------------------------------------

@pytest.mark.parametrize("role,outcome", [
    ("owner", "BillingRuleSaved"), ("viewer", "FORBIDDEN"), ("customer", "FORBIDDEN"),
    ("other_customer", "FORBIDDEN"), ("foreign_owner", "NotFoundError"),
])
async def test_update_billing_rule_scope_matrix(client, world, role, outcome):
    own, _ = await _rules(world)
    before = await _snapshot()
    result = await gql(client, UPDATE, {"id": gid("BillingRule", own), "input": {"name": "Renamed"}},
                       token=world.tokens[role])
    if outcome == "FORBIDDEN":
        assert error_codes(result) == ["FORBIDDEN"]
    else:
        payload = result["data"]["updateBillingRule"]
        assert payload["__typename"] == outcome
        if outcome == "NotFoundError":
            assert payload["field"] == "id"
    if outcome == "BillingRuleSaved":
        assert result["data"]["updateBillingRule"]["billingRule"]["name"] == "Renamed"
        assert (await BillingRule.get(id=own.id)).name == "Renamed"
        assert await BillingRule.filter(name="Foreign").exists()
    else:
        assert await _snapshot() == before


async def test_update_changes_only_the_given_fields_and_null_clears(client, world):
    row = await _rule(world.org, name="Cloud credit", kind=RuleKind.CREDIT, calculation=RuleCalculation.FIXED,
                      value=Decimal("250"), managed_account=world.account, provider_name="AWS",
                      service_name="EC2", starts_on=date(2024, 1, 1), ends_on=date(2024, 6, 1))
    token = world.tokens["owner"]
    result = await gql(client, UPDATE, {"id": gid("BillingRule", row), "input": {"value": "300.5"}}, token=token)
    rule = result["data"]["updateBillingRule"]["billingRule"]
    assert (rule["name"], rule["kind"], rule["calculation"], rule["value"]) == ("Cloud credit", "CREDIT", "FIXED", "300.5")
    assert (rule["providerName"], rule["serviceName"], rule["startsOn"], rule["endsOn"]) == ("AWS", "EC2", "2024-01", "2024-06")
    assert rule["account"]["name"] == "Contoso"

    result = await gql(client, UPDATE, {"id": gid("BillingRule", row), "input": {
        "accountId": None, "providerName": None, "serviceName": "  ", "endsOn": None, "isActive": False,
        "serviceCategory": " Storage ", "kind": "MARKUP", "calculation": "PERCENT", "value": "999",
    }}, token=token)
    rule = result["data"]["updateBillingRule"]["billingRule"]
    assert rule["account"] is None and rule["providerName"] is None and rule["serviceName"] is None
    assert (rule["serviceCategory"], rule["startsOn"], rule["endsOn"], rule["isActive"]) == ("Storage", "2024-01", None, False)
    assert (rule["kind"], rule["calculation"], rule["value"]) == ("MARKUP", "PERCENT", "999")

    result = await gql(client, UPDATE, {"id": gid("BillingRule", row), "input": {
        "accountId": gid("ManagedAccount", world.other_account)}}, token=token)
    assert result["data"]["updateBillingRule"]["billingRule"]["account"]["name"] == "Tailspin"
    stored = await BillingRule.get(id=row.id)
    assert stored.managed_account_id == world.other_account.id and stored.value == Decimal("999")


UPDATE_INVALID = INVALID + [
    ({"name": None}, "name"),
    ({"kind": None}, "kind"),
    ({"calculation": None}, "calculation"),
    ({"value": None}, "value"),
    ({"isActive": None}, "isActive"),
    # Checked against the stored rule (a 500 % markup, from 2024-06): the result must hold.
    ({"kind": "DISCOUNT"}, "value"),
    ({"endsOn": "2024-05"}, "endsOn"),
]


@pytest.mark.parametrize("changes,field", UPDATE_INVALID)
async def test_update_billing_rule_validation(client, world, changes, field):
    row = await _rule(world.org, kind=RuleKind.MARKUP, value=Decimal(500), starts_on=date(2024, 6, 1),
                      managed_account=world.account)
    before = await _snapshot()
    result = await gql(client, UPDATE, {"id": gid("BillingRule", row), "input": changes}, token=world.tokens["owner"])
    payload = result["data"]["updateBillingRule"]
    assert (payload["__typename"], payload["code"], payload["field"]) == ("ValidationError", "INVALID", field)
    assert await _snapshot() == before


@pytest.mark.parametrize("target", ["foreign_account", "malformed_account", "missing_rule", "foreign_rule", "malformed_rule"])
async def test_update_billing_rule_not_found(client, world, target):
    own, foreign = await _rules(world)
    rule_id, changes, field = gid("BillingRule", own), {"name": "Renamed"}, "id"
    if target == "foreign_account":
        changes, field = {"accountId": gid("ManagedAccount", world.foreign_account)}, "accountId"
    elif target == "malformed_account":
        changes, field = {"accountId": "bogus"}, "accountId"
    elif target == "missing_rule":
        rule_id = to_base64("BillingRule", "00000000-0000-4000-8000-000000000000")
    elif target == "foreign_rule":
        rule_id = gid("BillingRule", foreign)
    else:
        rule_id = gid("ManagedAccount", world.account)
    before = await _snapshot()
    result = await gql(client, UPDATE, {"id": rule_id, "input": changes}, token=world.tokens["owner"])
    payload = result["data"]["updateBillingRule"]
    assert (payload["__typename"], payload["code"], payload["field"]) == ("NotFoundError", "NOT_FOUND", field)
    assert await _snapshot() == before


async def test_an_empty_update_changes_nothing(client, world):
    own, _ = await _rules(world)
    before = await _snapshot()
    result = await gql(client, UPDATE, {"id": gid("BillingRule", own), "input": {}}, token=world.tokens["owner"])
    assert result["data"]["updateBillingRule"]["billingRule"]["name"] == "Own"
    assert await _snapshot() == before


# --- deleteBillingRule ---------------------------------------------------------------------

@pytest.mark.parametrize("role,outcome", [
    ("owner", "BillingRuleDeleted"), ("viewer", "FORBIDDEN"), ("customer", "FORBIDDEN"),
    ("other_customer", "FORBIDDEN"), ("foreign_owner", "NotFoundError"),
])
async def test_delete_billing_rule_scope_matrix(client, world, role, outcome):
    own, _ = await _rules(world)
    before = await _snapshot()
    result = await gql(client, DELETE, {"id": gid("BillingRule", own)}, token=world.tokens[role])
    if outcome == "FORBIDDEN":
        assert error_codes(result) == ["FORBIDDEN"]
        assert await _snapshot() == before
        return
    payload = result["data"]["deleteBillingRule"]
    assert payload["__typename"] == outcome
    if outcome == "BillingRuleDeleted":
        assert payload["deletedId"] == gid("BillingRule", own)
        assert [r.name for r in await BillingRule.all()] == ["Foreign"]
    else:
        assert (payload["code"], payload["field"]) == ("NOT_FOUND", "id")
        assert await _snapshot() == before


@pytest.mark.parametrize("rule_id", [
    "bogus", to_base64("BillingRule", "00000000-0000-4000-8000-000000000000"), to_base64("BillingRule", "not-a-uuid"),
])
async def test_delete_billing_rule_not_found(client, world, rule_id):
    await _rules(world)
    before = await _snapshot()
    result = await gql(client, DELETE, {"id": rule_id}, token=world.tokens["owner"])
    assert result["data"]["deleteBillingRule"]["__typename"] == "NotFoundError"
    assert await _snapshot() == before
