"""Limits before execution, introspection and suggestions in production, error codes and
masking, and the security headers of every answer."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from invoicing.root import schema
from tests.graphql import client_of, error_codes, gql, gql_counted

ACCOUNTS_WITH_INVOICES = (
    "managedAccounts(first: 100) { edges { node { invoices(first: 100) { edges { node { lineItems { amount } } } } } } }"
)
INTROSPECTION = "{ __schema { queryType { name } } }"


@pytest.fixture
async def production(settings, redis):
    """The app as production runs it: no GraphiQL, masked errors, guarded introspection."""
    async with client_of(settings, redis, environment="production") as http:
        yield http


async def test_a_thousand_aliases_are_refused_by_the_parser_before_any_resolver(client, world, monkeypatch):
    """The token limit stops the parser part way: the document is neither measured nor
    validated, and nothing runs."""
    import strawberry.schema.schema as strawberry_schema

    from schema.core import limits

    walked = []
    for module, name in ((limits, "measure"), (strawberry_schema, "validate_document")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _o=original, _n=name, **k: walked.append(_n) or _o(*a, **k))
    query = "{ " + " ".join(f"a{i}: {ACCOUNTS_WITH_INVOICES}" for i in range(1000)) + " }"
    result, statements = await gql_counted(client, query, token=world.tokens["owner"])
    assert error_codes(result) == ["QUERY_TOO_COMPLEX"]
    assert "tokens" in result["errors"][0]["message"]
    assert "data" not in result or result["data"] is None
    assert not [s for s in statements if "managed_accounts" in s or "invoices" in s], "no resolver ran"
    assert walked == []
    # The same spies see a document the parser lets through (one not validated before).
    await gql(client, f"{{ a{uuid.uuid4().hex}: viewer {{ scope }} }}", token=world.tokens["owner"])
    assert walked == ["measure", "validate_document"]


async def test_aliases_inside_fragments_count_once_per_spread(client, world, settings):
    fragment = "fragment F on Query { " + " ".join(f"a{i}: viewer {{ scope }}" for i in range(10)) + " }"
    spreads = " ".join("...F" for _ in range(settings.max_query_aliases // 10 + 1))
    result = await gql(client, f"{{ {spreads} }} {fragment}", token=world.tokens["owner"])
    assert error_codes(result) == ["QUERY_TOO_COMPLEX"]
    assert "aliases" in result["errors"][0]["message"]


async def test_a_fragment_bomb_is_measured_without_expanding_it(client, world):
    """Each fragment spreads the next one twice: written out, 2^40 fields."""
    fragments = [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40)]
    fragments.append("fragment F40 on Query { x: viewer { scope } }")
    started = time.perf_counter()
    result = await gql(client, "{ ...F0 } " + " ".join(fragments), token=world.tokens["owner"])
    assert error_codes(result) == ["QUERY_TOO_COMPLEX"]
    # Milliseconds when measured once per fragment; written out, it would never end. The
    # bound leaves room for a busy machine.
    assert time.perf_counter() - started < 5


async def test_a_deep_query_is_refused(client, world, settings):
    around = "invoices(first: 1) { edges { node { account { "
    query = "{ managedAccounts(first: 1) { edges { node { " + around * 5 + "id" + " } } } }" * 5 + " } } } }"
    result = await gql(client, query, token=world.tokens["owner"])
    assert error_codes(result) == ["QUERY_TOO_COMPLEX"]
    assert f"at most {settings.max_query_depth}" in result["errors"][0]["message"]


async def test_the_cost_counts_the_pages_asked_for(client, world, settings):
    paged = ACCOUNTS_WITH_INVOICES.replace("managedAccounts(first: 100)", "managedAccounts(first: $n)")
    query = "query($n: Int) { " + paged + " }"
    refused = await gql(client, query, {"n": 100}, token=world.tokens["owner"])
    assert error_codes(refused) == ["QUERY_TOO_COMPLEX"]
    assert "objects" in refused["errors"][0]["message"]
    allowed = await gql(client, query, {"n": 2}, token=world.tokens["owner"])
    assert "errors" not in allowed, allowed


async def test_too_many_tokens_are_refused_with_a_code(client, world, settings):
    query = "{ viewer { " + " ".join(["__typename"] * settings.max_query_tokens) + " } }"
    result = await gql(client, query, token=world.tokens["owner"])
    assert error_codes(result) == ["QUERY_TOO_COMPLEX"]


async def test_the_console_list_query_fits_the_limits(client, world):
    query = """query($after: String) { invoices(first: 100, after: $after) { totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { id number status paymentStatus deliveryStatus currency total amountDue issueDate dueDate
        account { id name billingProfile { nickname } } lineItems { description service quantity unit unitPrice amount }
        payments { amount paidOn } refunds { amount } timeline { at kind actor } } } } }"""
    result = await gql(client, query, token=world.tokens["owner"])
    assert "errors" not in result, result


@pytest.mark.parametrize("role,allowed", [("owner", True), ("viewer", True), ("customer", False), (None, False)])
async def test_introspection_in_production_is_for_msp_users_only(production, world, role, allowed):
    result = await gql(production, INTROSPECTION, token=world.tokens[role] if role else None)
    if allowed:
        assert result["data"]["__schema"]["queryType"]["name"] == "Query"
    else:
        assert error_codes(result) == ["FORBIDDEN"]
        assert "data" not in result or result["data"] is None


async def test_introspection_in_development_is_open(client):
    result = await gql(client, INTROSPECTION)
    assert result["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_production_suggests_no_field_names(production, client, world):
    query = "{ invoicez { totalCount } }"
    development = await gql(client, query, token=world.tokens["owner"])
    assert "Did you mean" in development["errors"][0]["message"]
    answered = await gql(production, query, token=world.tokens["owner"])
    assert error_codes(answered) == ["BAD_USER_INPUT"]
    assert "Did you mean" not in answered["errors"][0]["message"]
    assert "invoices" not in answered["errors"][0]["message"]


async def test_an_unexpected_failure_is_masked_in_production_and_logged_with_its_request_id(
    production, client, world, monkeypatch, caplog
):
    from resolvers import auth

    async def broken(principal):
        raise RuntimeError('relation "secret_table" does not exist')

    monkeypatch.setattr(auth, "viewer", broken)
    with caplog.at_level(logging.ERROR, logger="schema.core.masking"):
        answered = await gql(production, "{ viewer { scope } }", token=world.tokens["owner"])
    (error,) = answered["errors"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret_table" not in str(answered)
    request_id = error["extensions"]["requestId"]
    assert any(request_id in record.getMessage() and record.exc_info for record in caplog.records)
    shown = await gql(client, "{ viewer { scope } }", token=world.tokens["owner"])
    assert shown["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret_table" in shown["errors"][0]["message"], "development shows the failure"


async def test_the_limits_are_settings(world, settings, redis):
    async with client_of(settings, redis, max_query_depth=3) as http:
        result = await gql(http, "{ viewer { user { email } } }", token=world.tokens["owner"])
        assert "errors" not in result
        result = await gql(http, "{ viewer { organization { name } managedAccount { billingProfile { id } } } }",
                           token=world.tokens["owner"])
        assert error_codes(result) == ["QUERY_TOO_COMPLEX"]


async def test_every_answer_carries_the_security_headers(client, world, settings, redis):
    api = await client.post("/graphql", json={"query": "{ viewer { scope } }"},
                            headers={"Authorization": f"Bearer {world.tokens['owner']}"})
    health = await client.get("/healthz")
    missing = await client.get("/files/not-a-token")
    for response in (api, health, missing):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "no-store" in response.headers["cache-control"]
    assert api.headers["content-security-policy"].startswith("default-src 'none'")
    assert missing.headers["cache-control"] == "private, no-store", "a download keeps its own caching rule"
    async with client_of(settings, redis, environment="development") as development:
        graphiql = await development.get("/graphql", headers={"Accept": "text/html"})
    assert graphiql.headers["content-type"].startswith("text/html")
    policy = graphiql.headers["content-security-policy"]
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_the_limits_extension_runs_after_authentication():
    names = [type(extension).__name__ if not isinstance(extension, type) else extension.__name__
             for extension in schema.extensions]
    assert names.index("WebSocketAuthentication") < names.index("QueryLimits")
