"""Fuzz: every query and mutation of the schema, for every scope, with generated arguments.

hypothesis-graphql builds valid operations from the SDL (random selections, random argument
values, with strategies for our custom scalars); each runs against the in-process ASGI app as
a client would send it. Whatever the arguments hold (NUL characters, over-long text, odd
numbers, malformed months, dates, decimals and ids, ids of another organization), the answer
is never a 5xx, every error carries a listed code (a top-level `extensions.code` of
`RequestErrorCode`, not INTERNAL_SERVER_ERROR, or a payload `UserError` code of `ErrorCode`),
and no answer holds another organization's data, nor a customer's another account's.

The examples of one test share its world: mutations change it between examples, as they
would for a real client. Bounded in time by the number of examples and a deadline."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import graphql
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, nodes, queries
from strawberry.relay.utils import to_base64

from invoicing.root import sdl
from models import BillingRule, ExchangeRate, Payment
from models.errors import ErrorCode, RequestErrorCode
from tests import factories
from tests.graphql import error_codes, gql

SCHEMA = graphql.build_schema(sdl())
# Both take a file in a multipart request, which hypothesis-graphql does not build; their
# other arguments and the upload checks are covered by tests/test_billing_profiles.py and
# tests/test_costs_api.py.
UPLOADS = {"setBillingProfileLogo", "importCosts"}
QUERY_FIELDS = sorted(SCHEMA.query_type.fields)
MUTATION_FIELDS = sorted(set(SCHEMA.mutation_type.fields) - UPLOADS)

# Codes an answer may carry: an unexpected failure (INTERNAL_SERVER_ERROR) is what this test
# looks for, so it is not among them.
REQUEST_CODES = {code.value for code in RequestErrorCode} - {RequestErrorCode.INTERNAL_SERVER_ERROR.value}
USER_ERROR_CODES = {code.value for code in ErrorCode}

# Names only the foreign organization's rows hold, and only the other customer's rows.
FOREIGN_MARKERS = ("Fabrikam", "Litware", "FAB-2024-0001")
OTHER_ACCOUNT_MARKERS = ("Tailspin", "INV-2024-0002")
OWN_MARKERS = ("Northwind", "Contoso", "Tailspin", "INV-2024-0001", "INV-2024-0002")
HIDDEN = {
    "owner": FOREIGN_MARKERS,
    "viewer": FOREIGN_MARKERS,
    "customer": FOREIGN_MARKERS + OTHER_ACCOUNT_MARKERS,
    "foreign_owner": OWN_MARKERS,
    "anonymous": FOREIGN_MARKERS + OWN_MARKERS,
}

# Text of every kind: any character (NUL included), short, or long as a repeated piece (a
# few choices each, so that one example can draw an operation of every field).
TEXT = st.one_of(
    st.text(max_size=12),
    st.builds(lambda piece, times: piece * times, st.text(min_size=1, max_size=4), st.integers(2, 3000)),
    st.builds(lambda before, after: f"{before}\x00{after}", st.text(max_size=6), st.text(max_size=6)),
)


def _month_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(lambda d: d.strftime("%Y-%m")),
        st.from_regex(r"\A-?\d{1,6}-\d{1,3}\Z"),
        TEXT,
    )


def _decimal_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.decimals(min_value=-(10**30), max_value=10**30, places=6).map(str),
        st.integers().map(str),
        st.sampled_from(["1e999999", "-1e-999999", "sNaN", "-0", "0.00000000001", "1_000", " 1 ", "1,5"]),
        TEXT,
    )


def _scalars(ids: list[str]) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Value nodes for the custom scalars, and for ids: mostly well formed, often not."""
    random_ids = st.builds(
        lambda type_name, uuid: to_base64(type_name, str(uuid)),
        st.sampled_from(["Invoice", "ManagedAccount", "BillingProfile", "BillingRule", "Payment", "ApiToken", "Nope"]),
        st.uuids(),
    )
    return {
        "String": TEXT.map(nodes.String),
        "ID": st.one_of(st.sampled_from(ids), random_ids, TEXT).map(nodes.String),
        "Month": _month_text().map(nodes.String),
        "Decimal": st.one_of(_decimal_text().map(nodes.String), st.integers().map(nodes.Int)),
        "Date": st.one_of(st.dates().map(date.isoformat), TEXT).map(nodes.String),
        "DateTime": st.one_of(st.datetimes().map(lambda d: d.isoformat()), TEXT).map(nodes.String),
        "JSON": st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), TEXT),
            lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
            max_leaves=5,
        ).map(lambda value: graphql.parse_value(json.dumps(value))),
    }


async def _seed(world) -> list[str]:
    """Rows of every kind in both organizations; the global ids of all of them."""
    month = date(2024, 9, 1)
    rows: list[tuple[str, object]] = []
    for org, accounts, prefix in (
        (world.org, (world.account, world.other_account), "INV"),
        (world.foreign_org, (world.foreign_account,), "FAB"),
    ):
        period = await factories.billing_period(org, month)
        rows.append(("BillingPeriod", period))
        rows.append(("BillingProfile", await factories.billing_profile(org, nickname=f"{org.name} profile")))
        rows.append(("ExchangeRate", await ExchangeRate.create(organization=org, month=month, currency="EUR", rate=Decimal("0.9"))))
        rows.append(("BillingRule", await BillingRule.create(
            organization=org, name=f"{org.name} rule", kind="MARKUP", calculation="PERCENT", value=Decimal(5),
        )))
        for number, account in enumerate(accounts, start=1):
            rows.append(("ManagedAccount", account))
            invoice = await factories.generated_invoice(
                account, period, number=f"{prefix}-2024-{number:04d}", status="APPROVED" if number == 1 else "AWAITING_APPROVAL",
            )
            rows.append(("Invoice", invoice))
            if number == 1:
                rows.append(("Payment", await Payment.create(invoice=invoice, amount=Decimal("1.00"), paid_on=month + timedelta(days=40))))
    for role in ("owner", "foreign_owner"):
        rows.append(("User", world.users[role]))
    return [to_base64(type_name, str(row.id)) for type_name, row in rows]


def _codes(value) -> list[str]:
    """The `code` of every payload `UserError` in an answer's data (no other type has one)."""
    if isinstance(value, dict):
        found = [value["code"]] if isinstance(value.get("code"), str) else []
        return found + [code for child in value.values() for code in _codes(child)]
    if isinstance(value, list):
        return [code for child in value for code in _codes(child)]
    return []


async def _check(client, role: str, token: str | None, document: str) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json={"query": document}, headers=headers)
    assert response.status_code < 500, (document, response.text)
    answer = response.json()
    for error in answer.get("errors") or []:
        assert (error.get("extensions") or {}).get("code") in REQUEST_CODES, (document, error)
    for code in _codes(answer.get("data")):
        assert code in USER_ERROR_CODES, (document, code)
    for marker in HIDDEN[role]:
        assert marker not in response.text or marker in document, (document, marker, response.text)


async def _operations(world) -> list:
    """One strategy per field, drawing ids of the world's rows (seeded once per test)."""
    if not hasattr(world, "fuzz_operations"):
        scalars = _scalars(await _seed(world))
        world.fuzz_operations = [
            *(queries(SCHEMA, fields=[name], custom_scalars=scalars) for name in QUERY_FIELDS),
            *(mutations(SCHEMA, fields=[name], custom_scalars=scalars) for name in MUTATION_FIELDS),
        ]
    return world.fuzz_operations


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "foreign_owner", "anonymous"])
# Each example draws and sends one operation of every field. Derandomized: CI runs the same
# examples each time. No deadline: an example's time is mostly hypothesis-graphql drawing its
# ~85 documents (up to 44 s of an owner's example on a busy machine, against 8-11 s for all of
# its requests, none over 0.4 s but `login`'s password hashing), which says nothing of the
# product; the run is bounded by the examples' number and the test's timeout. No shrinking,
# since the assertion names the failing document and shrinking replays dozens of requests per step.
@pytest.mark.timeout(900)
@hypothesis_settings(
    max_examples=12, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_every_operation_answers_typed_and_scoped(client, world, role, data):
    # A fresh token each time: `revokeToken` without an id signs the caller out.
    token = await factories.token(world.users[role]) if role != "anonymous" else None
    for strategy in await _operations(world):
        await _check(client, role, token, data.draw(strategy))


LONG = "X" * 200


@pytest.mark.parametrize(("document", "argument"), [
    ('{ invoice(number: "INV\\u0000") { id } }', "number"),
    ('{ invoice(number: "%s") { id } }' % LONG, "number"),
    ('{ managedAccounts(filter: {search: "a\\u0000"}) { totalCount } }', "filter.search"),
    ('{ invoices(filter: {search: "%s"}) { totalCount } }' % LONG, "filter.search"),
    ('{ exchangeRates(filter: {currencies: ["EUR\\u0000"]}) { totalCount } }', "filter.currencies"),
    ('{ costs(filter: {providers: ["%s"]}) { totalCount } }' % LONG, "filter.providers"),
])
async def test_a_query_refuses_unusable_text_naming_the_argument(client, world, document, argument):
    answer = await gql(client, document, token=world.tokens["owner"])
    assert error_codes(answer) == [RequestErrorCode.BAD_USER_INPUT.value]
    assert f"`{argument}`" in answer["errors"][0]["message"]


@pytest.mark.parametrize("field", ["exchangeRates", "managedAccounts"])
async def test_a_currency_filter_no_column_can_hold_matches_nothing(client, world, field):
    answer = await gql(client, '{ %s(filter: {currencies: ["EURO", "USD"]}) { totalCount } }' % field, token=world.tokens["owner"])
    assert "errors" not in answer
    answer = await gql(client, '{ %s(filter: {currencies: ["EUROS"]}) { totalCount } }' % field, token=world.tokens["owner"])
    assert answer["data"][field]["totalCount"] == 0


async def test_an_invoice_number_longer_than_any_matches_nothing(client, world):
    answer = await gql(client, '{ invoice(number: "%s") { id } }' % ("N" * 100), token=world.tokens["owner"])
    assert answer == {"data": {"invoice": None}}


@pytest.mark.parametrize(("document", "field"), [
    ('mutation { login(email: "a\\u0000@example.com", password: "x") { __typename ... on UserError { code field } } }', "email"),
    ('mutation { login(email: "%s@example.com", password: "x") { __typename ... on UserError { code field } } }' % ("a" * 400), "email"),
    ('mutation { createApiToken(input: {name: "t\\u0000"}) { __typename ... on UserError { code field } } }', "name"),
    ('mutation { voidInvoices(ids: [], reason: "\\u0000") { __typename ... on UserError { code field } } }', "reason"),
])
async def test_a_mutation_refuses_unusable_text_as_a_validation_error(client, world, document, field):
    answer = await gql(client, document, token=world.tokens["owner"])
    assert "errors" not in answer, answer
    (payload,) = answer["data"].values()
    assert payload == {"__typename": "ValidationError", "code": ErrorCode.INVALID.value, "field": field}


async def test_a_malformed_month_is_bad_user_input(client, world):
    answer = await gql(client, '{ billingPeriods(filter: {from: "0000-13"}) { totalCount } }', token=world.tokens["owner"])
    assert error_codes(answer) == [RequestErrorCode.BAD_USER_INPUT.value]
    assert "is not a month" in answer["errors"][0]["message"]
