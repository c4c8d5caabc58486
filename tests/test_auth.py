"""Passwords, tokens and who may call what."""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import websockets
from strawberry.relay import to_base64

from models import Token
from models.auth import (
    TokenKind,
    authenticate,
    issue_token,
    login,
    revoke_token,
)
from models.base import Scope
from models.errors import AuthenticationFailed
from tests import factories as f
from tests.graphql import error_codes, gql, gql_counted

VIEWER = "{ viewer { scope user { email } organization { name } managedAccount { name } } }"
LOGIN = """mutation($e: String!, $p: String!) { login(email: $e, password: $p) {
  __typename ... on LoginSuccess { token viewer { scope } } ... on UserError { code message } } }"""
CREATE_TOKEN = """mutation($name: String!, $days: Int!) {
  createApiToken(input: {name: $name, expiresInDays: $days}) {
    __typename ... on ApiTokenCreated { token apiToken { id name kind } }
    ... on UserError { code field } } }"""
REVOKE = """mutation($id: ID) { revokeToken(id: $id) {
  __typename ... on TokenRevoked { apiToken { revokedAt } } ... on UserError { code } } }"""


async def test_tokens_are_stored_only_as_sha256_digests():
    user = await f.user(await f.organization())
    raw, token = await issue_token(user, TokenKind.API, timedelta(days=1))
    stored = await Token.get(id=token.id)
    assert raw.startswith("inv_") and len(raw) > 40
    assert stored.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in json.dumps([str(v) for v in (await Token.all().values_list())])
    assert (await authenticate(raw)).user.id == user.id


async def test_two_tokens_are_never_alike():
    user = await f.user(await f.organization())
    raws = {(await issue_token(user, TokenKind.API, timedelta(days=1)))[0] for _ in range(20)}
    assert len(raws) == 20


async def test_an_expired_token_is_refused():
    user = await f.user(await f.organization())
    raw, token = await issue_token(user, TokenKind.SESSION, timedelta(hours=1))
    await Token.filter(id=token.id).update(
        created_at=datetime.now(UTC) - timedelta(hours=2),
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    with pytest.raises(AuthenticationFailed):
        await authenticate(raw)


async def test_a_revoked_token_is_refused_and_a_deactivated_user_too():
    user = await f.user(await f.organization())
    raw, _ = await issue_token(user, TokenKind.API, timedelta(days=1))
    principal = await authenticate(raw)
    await revoke_token(principal)
    with pytest.raises(AuthenticationFailed):
        await authenticate(raw)
    other_raw, _ = await issue_token(user, TokenKind.API, timedelta(days=1))
    user.is_active = False
    await user.save()
    with pytest.raises(AuthenticationFailed):
        await authenticate(other_raw)


async def test_login_with_the_right_password_opens_a_session():
    user = await f.user(await f.organization(), email="owner@example.com", password=f.PASSWORD)
    raw, token = await login("Owner@Example.com ", f.PASSWORD, timedelta(hours=1))
    assert token.kind == TokenKind.SESSION
    assert (await authenticate(raw)).user.id == user.id
    assert user.password_hash.startswith("$argon2")


@pytest.mark.parametrize("email,password", [
    ("owner@example.com", "wrong password!"),
    ("nobody@example.com", f.PASSWORD),
    ("owner@example.com", ""),
])
async def test_login_with_a_wrong_password_or_unknown_email_fails_alike(email, password):
    await f.user(await f.organization(), email="owner@example.com", password=f.PASSWORD)
    with pytest.raises(AuthenticationFailed) as caught:
        await login(email, password, timedelta(hours=1))
    assert caught.value.message == "The e-mail or the password is wrong."
    assert await Token.all().count() == 0


async def test_login_over_graphql(client):
    await f.user(await f.organization(), email="owner@example.com", password=f.PASSWORD)
    ok = await gql(client, LOGIN, {"e": "owner@example.com", "p": f.PASSWORD})
    assert ok["data"]["login"]["__typename"] == "LoginSuccess"
    token = ok["data"]["login"]["token"]
    me = await gql(client, VIEWER, token=token)
    assert me["data"]["viewer"]["user"]["email"] == "owner@example.com"
    bad = await gql(client, LOGIN, {"e": "owner@example.com", "p": "nope nope nope"})
    assert bad["data"]["login"] == {
        "__typename": "AuthenticationError", "code": "UNAUTHENTICATED",
        "message": "The e-mail or the password is wrong.",
    }


async def test_login_verifies_the_password_off_the_event_loop(client):
    """argon2 spends tens of milliseconds of CPU on purpose: on the event loop's thread it would
    hold every other request meanwhile. The loop's thread is watched (a profiler sees every
    Python call it makes); a login, right or wrong, makes no argon2 call there."""
    import argon2

    await f.user(await f.organization(), email="owner@example.com", password=f.PASSWORD)
    package = Path(argon2.__file__).parent
    on_loop: list[str] = []

    def watch(frame, event, arg):
        # argon2's work is `verify_secret` and `hash_secret` (reading a hash's parameters is not).
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(str(package)) and code.co_name in ("verify_secret", "hash_secret"):
            on_loop.append(code.co_name)

    sys.setprofile(watch)
    try:
        ok = await gql(client, LOGIN, {"e": "owner@example.com", "p": f.PASSWORD})
        bad = await gql(client, LOGIN, {"e": "owner@example.com", "p": "wrong password!"})
    finally:
        sys.setprofile(None)
    assert ok["data"]["login"]["__typename"] == "LoginSuccess"
    assert bad["data"]["login"]["__typename"] == "AuthenticationError"
    assert on_loop == []


async def test_login_answers_the_signed_in_viewer_with_its_relations(client):
    org = await f.organization(name="Northwind")
    account = await f.managed_account(org, name="Contoso")
    await f.user(org, Scope.CUSTOMER, account=account, email="ap@contoso.example", password=f.PASSWORD)
    query = """mutation($e: String!, $p: String!) { login(email: $e, password: $p) { __typename
      ... on LoginSuccess { viewer { scope managedAccount { name invoices { totalCount } } } } } }"""
    result = await gql(client, query, {"e": "ap@contoso.example", "p": f.PASSWORD})
    assert "errors" not in result, result
    assert result["data"]["login"]["viewer"] == {
        "scope": "CUSTOMER", "managedAccount": {"name": "Contoso", "invoices": {"totalCount": 0}},
    }


async def test_viewer_for_each_scope(client):
    org = await f.organization(name="Northwind")
    account = await f.managed_account(org, name="Contoso")
    for scope, acct, expected_account in (
        (Scope.OWNER, None, None), (Scope.VIEWER, None, None), (Scope.CUSTOMER, account, {"name": "Contoso"}),
    ):
        token = await f.token(await f.user(org, scope, account=acct))
        viewer = (await gql(client, VIEWER, token=token))["data"]["viewer"]
        assert viewer["scope"] == scope.value
        assert viewer["organization"] == {"name": "Northwind"}
        assert viewer["managedAccount"] == expected_account
    assert (await gql(client, VIEWER))["data"]["viewer"] is None


async def test_a_bad_bearer_token_is_a_top_level_unauthenticated_error(client):
    result = await gql(client, CREATE_TOKEN, {"name": "x", "days": 1}, token="inv_forged")
    assert result["data"] is None
    assert error_codes(result) == ["UNAUTHENTICATED"]
    assert "invalid, expired or revoked" in result["errors"][0]["message"]


async def test_only_owners_create_api_tokens(client):
    org = await f.organization()
    account = await f.managed_account(org)
    owner = await f.token(await f.user(org, Scope.OWNER))
    created = (await gql(client, CREATE_TOKEN, {"name": "Xero sync", "days": 30}, token=owner))["data"]
    assert created["createApiToken"]["__typename"] == "ApiTokenCreated"
    new_token = created["createApiToken"]["token"]
    assert (await gql(client, VIEWER, token=new_token))["data"]["viewer"]["scope"] == "OWNER"
    for scope, acct in ((Scope.VIEWER, None), (Scope.CUSTOMER, account)):
        token = await f.token(await f.user(org, scope, account=acct))
        result = await gql(client, CREATE_TOKEN, {"name": "x", "days": 30}, token=token)
        assert error_codes(result) == ["FORBIDDEN"]
    assert error_codes(await gql(client, CREATE_TOKEN, {"name": "x", "days": 30})) == ["UNAUTHENTICATED"]
    assert await Token.filter(kind=TokenKind.API, name="x").count() == 0


@pytest.mark.parametrize("name,days,field", [("ok", 0, "expiresInDays"), ("ok", 731, "expiresInDays"), ("  ", 30, "name")])
async def test_create_api_token_validation(client, name, days, field):
    owner = await f.token(await f.user(await f.organization()))
    result = await gql(client, CREATE_TOKEN, {"name": name, "days": days}, token=owner)
    assert result["data"]["createApiToken"] == {"__typename": "ValidationError", "code": "INVALID", "field": field}


async def test_revoke_token_scopes(client):
    org, other_org = await f.organization(), await f.organization()
    owner = await f.user(org)
    viewer = await f.user(org, Scope.VIEWER)
    viewer_raw, viewer_token = await issue_token(viewer, TokenKind.API, timedelta(days=1))
    foreign_raw, foreign_token = await issue_token(await f.user(other_org), TokenKind.API, timedelta(days=1))
    owner_raw = await f.token(owner)

    def gid(token):
        return to_base64("ApiToken", str(token.id))

    # Another organization's token looks like a missing one and stays valid.
    result = await gql(client, REVOKE, {"id": gid(foreign_token)}, token=owner_raw)
    assert result["data"]["revokeToken"] == {"__typename": "NotFoundError", "code": "NOT_FOUND"}
    assert (await authenticate(foreign_raw)).user.organization_id == other_org.id
    # A viewer cannot revoke the owner's token, only its own.
    owner_token = await Token.get(user_id=owner.id)
    result = await gql(client, REVOKE, {"id": gid(owner_token)}, token=viewer_raw)
    assert result["data"]["revokeToken"]["__typename"] == "NotFoundError"
    # An owner can revoke a viewer's token; without an id a user signs itself out.
    result = await gql(client, REVOKE, {"id": gid(viewer_token)}, token=owner_raw)
    assert result["data"]["revokeToken"]["__typename"] == "TokenRevoked"
    assert error_codes(await gql(client, "{ nodes(ids: []) { id } }", token=viewer_raw)) == ["UNAUTHENTICATED"]
    result = await gql(client, REVOKE, {}, token=owner_raw)
    assert result["data"]["revokeToken"]["__typename"] == "TokenRevoked"
    assert (await gql(client, VIEWER, token=owner_raw))["data"]["viewer"] is None


async def test_node_hides_other_organizations(client):
    org, other_org = await f.organization(), await f.organization()
    account = await f.managed_account(org)
    foreign_account = await f.managed_account(other_org)
    owner = await f.token(await f.user(org))
    customer = await f.token(await f.user(org, Scope.CUSTOMER, account=account))
    query = "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on ManagedAccount { name } } }"
    ids = [to_base64("ManagedAccount", str(a.id)) for a in (account, foreign_account)]
    owner_sees = (await gql(client, query, {"ids": ids}, token=owner))["data"]["nodes"]
    assert owner_sees == [{"id": ids[0], "name": account.name}, None]
    other_account = await f.managed_account(org)
    customer_sees = (await gql(client, query, {"ids": ids + [to_base64("ManagedAccount", str(other_account.id))]}, token=customer))
    assert customer_sees["data"]["nodes"] == [{"id": ids[0], "name": account.name}, None, None]


def _gid(type_name: str, row) -> str:
    return to_base64(type_name, str(row.id))


async def _node_ids(world) -> tuple[list[str], dict[str, list[int]]]:
    """Ids of every kind a client may send, and which of them (indexes) each role sees."""
    period = await f.billing_period(world.org)
    approved = await f.generated_invoice(world.account, period, number="INV-1", status="APPROVED")
    draft = await f.generated_invoice(world.account, await f.billing_period(world.org, date(2024, 10, 1)), number="INV-2")
    others = await f.generated_invoice(world.other_account, period, number="INV-3", status="APPROVED")
    foreign = await f.invoice(world.foreign_account, await f.billing_period(world.foreign_org))
    ids = [
        "not-base64",  # 0: malformed
        "",  # 1
        to_base64("ManagedAccount", "not-a-uuid"),  # 2: not a key of the table
        to_base64("NoSuchType", str(world.account.id)),  # 3: unknown type
        to_base64("Node", str(world.account.id)),  # 4: the interface, not a type
        to_base64("Query", "x"),  # 5: a type that is not a Node
        _gid("Invoice", world.account),  # 6: an account's id under another type
        _gid("ManagedAccount", world.account),  # 7
        _gid("ManagedAccount", world.other_account),  # 8
        _gid("ManagedAccount", world.foreign_account),  # 9: another organization
        _gid("Invoice", approved),  # 10
        _gid("Invoice", draft),  # 11: a customer never sees it
        _gid("Invoice", others),  # 12: another customer's
        _gid("Invoice", foreign),  # 13: another organization
        _gid("ManagedAccount", world.account),  # 14: the same id twice
    ]
    seen = {
        "owner": [7, 8, 10, 11, 12, 14],
        "viewer": [7, 8, 10, 11, 12, 14],
        "customer": [7, 10, 14],
        "other_customer": [8, 12],
        "foreign_owner": [9, 13],
    }
    return ids, seen


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "other_customer", "foreign_owner"])
async def test_nodes_answer_null_for_each_id_that_is_malformed_missing_or_not_visible(client, world, role):
    ids, seen = await _node_ids(world)
    expected = [{"id": gid} if i in seen[role] else None for i, gid in enumerate(ids)]
    query = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
    result = await gql(client, query, {"ids": ids}, token=world.tokens[role])
    assert "errors" not in result, result
    assert result["data"]["nodes"] == expected
    # `node(id:)` answers alike, one id at a time.
    params = ", ".join(f"$i{i}: ID!" for i in range(len(ids)))
    fields = " ".join(f"n{i}: node(id: $i{i}) {{ id }}" for i in range(len(ids)))
    result = await gql(client, f"query({params}) {{ {fields} }}", {f"i{i}": gid for i, gid in enumerate(ids)},
                       token=world.tokens[role])
    assert "errors" not in result, result
    assert [result["data"][f"n{i}"] for i in range(len(ids))] == expected


async def test_nodes_caps_the_number_of_ids(client, world, settings):
    ids = [_gid("ManagedAccount", world.account)] * (settings.max_page_size + 1)
    result = await gql(client, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ids}, token=world.tokens["owner"])
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert "At most" in result["errors"][0]["message"]
    assert len((await gql(client, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ids[1:]},
                          token=world.tokens["owner"]))["data"]["nodes"]) == settings.max_page_size


async def test_nodes_query_once_per_type_however_many_ids(client, world):
    token = world.tokens["owner"]
    await gql(client, "{ viewer { scope } }", token=token)  # the token's first use is recorded once
    period = await f.billing_period(world.org)
    accounts = [world.account, world.other_account] + [await f.managed_account(world.org) for _ in range(18)]
    invoices = [await f.invoice(account, period) for account in accounts]
    query = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"

    async def statements(count: int) -> list[str]:
        ids = ["not-base64", _gid("ManagedAccount", world.foreign_account)]
        ids += [_gid("ManagedAccount", a) for a in accounts[:count]] + [_gid("Invoice", i) for i in invoices[:count]]
        result, statements = await gql_counted(client, query, {"ids": ids}, token=token)
        assert [node is not None for node in result["data"]["nodes"]] == [False, False] + [True] * 2 * count
        return statements

    few, many = await statements(2), await statements(20)
    assert len(few) == len(many)
    assert sum('FROM "managed_accounts"' in s for s in many) == 1
    assert sum('FROM "invoices"' in s for s in many) == 1


async def _ws_init(address: str, payload: dict):
    async with websockets.connect(
        f"ws://{address}/graphql", subprotocols=["graphql-transport-ws"], origin="http://127.0.0.1:8000"
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        try:
            return json.loads(await ws.recv())
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code


async def test_websocket_takes_the_token_in_connection_init(live_server):
    raw = await f.token(await f.user(await f.organization()))
    assert await _ws_init(live_server, {"authorization": f"Bearer {raw}"}) == {"type": "connection_ack"}
    assert await _ws_init(live_server, {"authorization": "Bearer inv_forged"}) == 4403
    assert await _ws_init(live_server, {}) == 4403


async def test_websocket_refuses_the_legacy_protocol(live_server):
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with websockets.connect(
            f"ws://{live_server}/graphql", subprotocols=["graphql-ws"], origin="http://127.0.0.1:8000"
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            await ws.recv()
    assert closed.value.rcvd.code == 4406


async def test_websocket_refuses_foreign_origins(live_server):
    raw = await f.token(await f.user(await f.organization()))
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(
            f"ws://{live_server}/graphql", subprotocols=["graphql-transport-ws"], origin="https://evil.example"
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {raw}"}}))
            await ws.recv()


async def test_healthz_reports_database_redis_and_worker(client, redis):
    body = (await client.get("/healthz")).json()
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert body["worker"]["ok"] is False and body["status"] == "degraded"
    assert body["reasons"] == ["No worker heartbeat: invoices are not generated or sent until a worker runs."]
    await redis.set("invoicing:jobs:health-check", "j_complete=0")
    body = (await client.get("/healthz")).json()
    assert body["status"] == "ok" and body["worker"]["heartbeat"] == "j_complete=0" and body["reasons"] == []


@pytest.mark.parametrize("environment,served", [("development", True), ("production", False), ("test", False)])
async def test_graphiql_is_served_in_development_only(settings, redis, environment, served):
    import httpx

    from invoicing.app import create_app

    application = create_app(settings.model_copy(update={"environment": environment}))
    application.state.redis = redis
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t") as http:
        response = await http.get("/graphql", headers={"Accept": "text/html"})
    assert ("graphiql" in response.text.lower()) is served
    if not served:
        assert response.status_code in (400, 404)
