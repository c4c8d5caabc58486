"""People over GraphQL: invitations (e-mailed one-time links), users and API token lists,
scope changes, deactivation and the last owner. Real SMTP server and arq worker."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from strawberry.relay import to_base64

from infra import broker
from models import Invitation, Token, User
from models.auth import UserState, authenticate, hash_password, issue_api_token, login
from models.base import Scope
from models.errors import AuthenticationFailed, InvitationInvalid, LastOwner
from models.people import accept_invitation, change_scope, deactivate_user, invite_user, make_invitation_link
from tests import factories as f
from tests.graphql import LiveClient, error_codes, gql, subscribed

INVITE = """mutation($input: InviteUserInput!) { inviteUser(input: $input) { __typename
  ... on UserInvited { invitationExpiresAt user { id email scope state managedAccount { name } } }
  ... on UserError { code field message } } }"""
ACCEPT = """mutation($t: String!, $p: String!) { acceptInvitation(token: $t, password: $p) { __typename
  ... on LoginSuccess { token viewer { user { email state } scope } } ... on UserError { code field } } }"""
RESEND = """mutation($id: ID!) { resendInvitation(userId: $id) { __typename
  ... on UserInvited { invitationExpiresAt } ... on UserError { code } } }"""
USERS = """query($filter: UserFilter, $order: UserOrder) { users(filter: $filter, orderBy: $order) { totalCount
  edges { node { email scope state lastLoginAt managedAccount { name } } } } }"""
SCOPE = """mutation($id: ID!, $scope: Scope!, $account: ID) {
  changeUserScope(userId: $id, scope: $scope, managedAccountId: $account) { __typename
  ... on UserUpdated { user { scope state managedAccount { name } } } ... on UserError { code field } } }"""
DEACTIVATE = """mutation($id: ID!) { deactivateUser(userId: $id) { __typename
  ... on UserUpdated { user { state } } ... on UserError { code field } } }"""
REACTIVATE = """mutation($id: ID!) { reactivateUser(userId: $id) { __typename
  ... on UserUpdated { user { state } } ... on UserError { code } } }"""
TOKENS = """query($sessions: Boolean!, $inactive: Boolean!) {
  apiTokens(includeSessions: $sessions, includeInactive: $inactive) { totalCount
  edges { node { id name kind createdAt expiresAt lastUsedAt revokedAt user { email } } } } }"""
REVOKE = """mutation($id: ID) { revokeToken(id: $id) { __typename ... on UserError { code } } }"""
WATCH = "subscription { invoiceStatusChanged { status } }"


def _gid(kind: str, row) -> str:
    return to_base64(kind, str(row.id))


async def _mail(mailbox, count: int = 1):
    for _ in range(400):
        if len(mailbox.messages) >= count:
            return mailbox.messages
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} e-mails, got {len(mailbox.messages)}")


def _token_of(message) -> str:
    (token,) = re.findall(r"#token=(\S+)", message.get_payload(decode=True).decode())
    return token


async def _snapshot():
    """Everything an invitation or a refused change could touch."""
    users = await User.all().order_by("email").values_list("email", "scope", "is_active", "password_hash", "managed_account_id")
    tokens = await Token.all().order_by("id").values_list("id", "revoked_at")
    invitations = await Invitation.all().order_by("id").values_list("id", "token_hash", "accepted_at", "withdrawn_at")
    return users, tokens, invitations


async def test_an_invited_user_chooses_a_password_with_the_emailed_link_once(client, world, worker, smtp):
    _, mailbox = smtp
    world.org.email_sender_name, world.org.email_reply_to = "Northwind Billing", "billing@northwind.example"
    await world.org.save()
    result = await gql(client, INVITE, {"input": {"email": "New.Person@Example.com", "scope": "VIEWER", "name": "Ada"}},
                       token=world.tokens["owner"])
    invited = result["data"]["inviteUser"]
    assert invited["user"]["email"] == "new.person@example.com"
    assert invited["user"]["state"] == "INVITED" and invited["invitationExpiresAt"]
    ((recipients, message),) = await _mail(mailbox)
    assert recipients == ["new.person@example.com"]
    assert message["From"] == "Northwind Billing <no-reply@invoicing.local>"
    assert message["Reply-To"] == "billing@northwind.example"
    assert "Northwind" in message["Subject"]
    raw = _token_of(message)
    # Stored only as its digest; marked sent once the server took it (just after it arrives there).
    for _ in range(100):
        invitation = await Invitation.get()
        if invitation.sent_at:
            break
        await asyncio.sleep(0.05)
    assert invitation.token_hash == hashlib.sha256(raw.encode()).hexdigest() and invitation.sent_at
    accepted = await gql(client, ACCEPT, {"t": raw, "p": "a long new password"})
    assert accepted["data"]["acceptInvitation"]["viewer"] == {
        "user": {"email": "new.person@example.com", "state": "ACTIVE"}, "scope": "VIEWER",
    }
    assert (await authenticate(accepted["data"]["acceptInvitation"]["token"])).user.email == "new.person@example.com"
    await login("new.person@example.com", "a long new password", timedelta(hours=1))
    before = await _snapshot()
    reused = await gql(client, ACCEPT, {"t": raw, "p": "another password!"})
    assert reused["data"]["acceptInvitation"] == {
        "__typename": "InvitationInvalidError", "code": "INVITATION_INVALID", "field": "token",
    }
    assert await _snapshot() == before


async def test_expired_forged_and_withdrawn_links_are_refused_alike_and_change_nothing(client, world):
    owner = await authenticate(world.tokens["owner"])
    user, invitation = await invite_user(owner, "late@example.com", Scope.VIEWER, lifetime=timedelta(days=7))
    link = await make_invitation_link(invitation.id)
    # A password too short is refused before the token is looked at, and the link still works.
    short = await gql(client, ACCEPT, {"t": link.token, "p": "short"})
    assert short["data"]["acceptInvitation"] == {"__typename": "ValidationError", "code": "INVALID", "field": "password"}
    before = await _snapshot()
    for forged in ("inv_forged", link.token + "x", ""):
        result = await gql(client, ACCEPT, {"t": forged, "p": "a long new password"})
        assert result["data"]["acceptInvitation"]["code"] == "INVITATION_INVALID"
    # A new link withdraws the old one.
    resent = await gql(client, RESEND, {"id": _gid("User", user)}, token=world.tokens["owner"])
    assert resent["data"]["resendInvitation"]["__typename"] == "UserInvited"
    after_resend = await _snapshot()
    assert after_resend[0] == before[0]
    result = await gql(client, ACCEPT, {"t": link.token, "p": "a long new password"})
    assert result["data"]["acceptInvitation"]["code"] == "INVITATION_INVALID"
    # An expired one.
    newest = await Invitation.get(withdrawn_at=None)
    fresh = await make_invitation_link(newest.id)
    await Invitation.filter(id=newest.id).update(
        created_at=datetime.now(UTC) - timedelta(days=9), expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    with pytest.raises(InvitationInvalid):
        await accept_invitation(fresh.token, "a long new password", timedelta(hours=1))
    assert (await User.get(id=user.id)).state == UserState.INVITED
    assert (await _snapshot())[:2] == after_resend[:2]
    assert not await Invitation.filter(accepted_at__not_isnull=True).exists()


async def test_a_deactivated_user_cannot_use_its_invitation(world):
    owner = await authenticate(world.tokens["owner"])
    user, invitation = await invite_user(owner, "gone@example.com", Scope.VIEWER, lifetime=timedelta(days=7))
    link = await make_invitation_link(invitation.id)
    await deactivate_user(owner, user.id)
    with pytest.raises(InvitationInvalid):
        await accept_invitation(link.token, "a long new password", timedelta(hours=1))
    assert await make_invitation_link(invitation.id) is None


async def test_a_password_set_directly_signs_in_at_once_and_sends_nothing(client, world, smtp, redis):
    result = await gql(client, INVITE, {"input": {
        "email": "ops@example.com", "scope": "OWNER", "password": "a long new password",
    }}, token=world.tokens["owner"])
    assert result["data"]["inviteUser"]["user"]["state"] == "ACTIVE"
    assert result["data"]["inviteUser"]["invitationExpiresAt"] is None
    await login("ops@example.com", "a long new password", timedelta(hours=1))
    assert await Invitation.all().count() == 0
    assert await redis.zcard(broker.QUEUE_NAME) == 0


@pytest.mark.parametrize("input,code,field", [
    ({"email": "OWNER-TWIN", "scope": "VIEWER"}, "EMAIL_TAKEN", "email"),
    ({"email": "not an address", "scope": "VIEWER"}, "INVALID", "email"),
    ({"email": "c@example.com", "scope": "CUSTOMER"}, "INVALID", "managedAccountId"),
    ({"email": "c@example.com", "scope": "VIEWER", "managedAccountId": "ACCOUNT"}, "INVALID", "managedAccountId"),
    ({"email": "c@example.com", "scope": "CUSTOMER", "managedAccountId": "FOREIGN"}, "NOT_FOUND", "managedAccountId"),
    ({"email": "c@example.com", "scope": "VIEWER", "password": "short"}, "INVALID", "password"),
])
async def test_a_refused_invitation_is_a_typed_error_that_writes_nothing(client, world, redis, input, code, field):
    owner_email = world.users["owner"].email
    ids = {"ACCOUNT": _gid("ManagedAccount", world.account), "FOREIGN": _gid("ManagedAccount", world.foreign_account)}
    input = {key: ids.get(value, value) for key, value in input.items()}
    if input["email"] == "OWNER-TWIN":
        input["email"] = owner_email.upper()
    before = await _snapshot()
    result = await gql(client, INVITE, {"input": input}, token=world.tokens["owner"])
    assert (result["data"]["inviteUser"]["code"], result["data"]["inviteUser"]["field"]) == (code, field)
    assert await _snapshot() == before
    assert await redis.zcard(broker.QUEUE_NAME) == 0


async def test_the_same_email_invited_twice_at_once_makes_one_user(world):
    owner = await authenticate(world.tokens["owner"])
    results = await asyncio.gather(*(
        invite_user(owner, "twin@example.com", Scope.VIEWER, lifetime=timedelta(days=1)) for _ in range(4)
    ), return_exceptions=True)
    assert sum(1 for r in results if isinstance(r, tuple)) == 1
    assert {type(r).__name__ for r in results if not isinstance(r, tuple)} == {"EmailTaken"}
    assert await User.filter(email="twin@example.com").count() == 1
    assert await Invitation.all().count() == 1


async def test_a_customer_user_is_invited_into_one_account(client, world):
    result = await gql(client, INVITE, {"input": {
        "email": "ap@contoso.example", "scope": "CUSTOMER", "managedAccountId": _gid("ManagedAccount", world.account),
    }}, token=world.tokens["owner"])
    assert result["data"]["inviteUser"]["user"]["managedAccount"] == {"name": "Contoso"}


@pytest.mark.parametrize("role", ["viewer", "customer", "foreign_owner"])
async def test_only_owners_manage_people_and_only_their_own(client, world, role):
    target = _gid("User", world.users["viewer"])
    before = await _snapshot()
    calls = [
        (INVITE, {"input": {"email": "x@example.com", "scope": "VIEWER"}}, "inviteUser"),
        (SCOPE, {"id": target, "scope": "OWNER"}, "changeUserScope"),
        (DEACTIVATE, {"id": target}, "deactivateUser"),
        (REACTIVATE, {"id": target}, "reactivateUser"),
        (RESEND, {"id": target}, "resendInvitation"),
    ]
    for query, variables, name in calls:
        result = await gql(client, query, variables, token=world.tokens[role])
        if role == "foreign_owner":
            if name != "inviteUser":
                assert result["data"][name]["code"] == "NOT_FOUND", name
        else:
            assert error_codes(result) == ["FORBIDDEN"], name
    if role == "foreign_owner":
        # Its invitation is of its own organization.
        assert await User.filter(email="x@example.com", organization_id=world.foreign_org.id).exists()
    else:
        assert await _snapshot() == before


async def test_users_lists_scope_account_state_and_last_login(client, world):
    owner = await authenticate(world.tokens["owner"])
    await invite_user(owner, "invited@example.com", Scope.VIEWER, lifetime=timedelta(days=1))
    await f.user(world.org, Scope.VIEWER, email="signs-in@example.com", password=f.PASSWORD)
    await login("signs-in@example.com", f.PASSWORD, timedelta(hours=1))
    await deactivate_user(owner, world.users["other_customer"].id)
    for role in ("owner", "viewer"):
        result = await gql(client, USERS, {"order": {"field": "EMAIL"}}, token=world.tokens[role])
        nodes = {n["email"]: n for n in (e["node"] for e in result["data"]["users"]["edges"])}
        assert len(nodes) == result["data"]["users"]["totalCount"] == 6
        assert nodes["invited@example.com"]["state"] == "INVITED"
        assert nodes["signs-in@example.com"]["state"] == "ACTIVE" and nodes["signs-in@example.com"]["lastLoginAt"]
        assert nodes[world.users["customer"].email]["managedAccount"] == {"name": "Contoso"}
        assert nodes[world.users["other_customer"].email]["state"] == "DEACTIVATED"
        assert world.users["foreign_owner"].email not in nodes
    filtered = await gql(client, USERS, {"filter": {"states": ["DEACTIVATED", "ACTIVE"], "scopes": ["CUSTOMER"]}},
                         token=world.tokens["owner"])
    assert [e["node"]["email"] for e in filtered["data"]["users"]["edges"]] == [world.users["other_customer"].email]
    by_account = await gql(client, USERS, {"filter": {"accountIds": [_gid("ManagedAccount", world.account)]}},
                           token=world.tokens["viewer"])
    assert by_account["data"]["users"]["totalCount"] == 1
    assert error_codes(await gql(client, USERS, token=world.tokens["customer"])) == ["FORBIDDEN"]
    foreign = await gql(client, USERS, token=world.tokens["foreign_owner"])
    assert [e["node"]["email"] for e in foreign["data"]["users"]["edges"]] == [world.users["foreign_owner"].email]


async def test_an_owner_changes_scopes_but_never_demotes_the_last_owner(client, world):
    owner, viewer = world.users["owner"], world.users["viewer"]
    await _with_password(owner, viewer)
    last = await gql(client, SCOPE, {"id": _gid("User", owner), "scope": "VIEWER"}, token=world.tokens["owner"])
    assert last["data"]["changeUserScope"] == {"__typename": "InvalidTransitionError", "code": "LAST_OWNER", "field": "userId"}
    assert (await User.get(id=owner.id)).scope == Scope.OWNER
    promoted = await gql(client, SCOPE, {"id": _gid("User", viewer), "scope": "OWNER"}, token=world.tokens["owner"])
    assert promoted["data"]["changeUserScope"]["user"]["scope"] == "OWNER"
    demoted = await gql(client, SCOPE, {"id": _gid("User", owner), "scope": "CUSTOMER",
                                        "account": _gid("ManagedAccount", world.account)}, token=world.tokens["owner"])
    assert demoted["data"]["changeUserScope"]["user"] == {"scope": "CUSTOMER", "state": "ACTIVE", "managedAccount": {"name": "Contoso"}}
    # The same token now reads as a customer.
    assert error_codes(await gql(client, USERS, token=world.tokens["owner"])) == ["FORBIDDEN"]
    back = await gql(client, SCOPE, {"id": _gid("User", owner), "scope": "VIEWER"}, token=world.tokens["viewer"])
    assert back["data"]["changeUserScope"]["user"] == {"scope": "VIEWER", "state": "ACTIVE", "managedAccount": None}


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(world):
    second = await f.user(world.org, Scope.OWNER)
    first = world.users["owner"]
    await _with_password(first, second)
    principals = [await authenticate(await f.token(u)) for u in (first, second)]
    for _ in range(3):
        results = await asyncio.gather(
            change_scope(principals[0], second.id, Scope.VIEWER),
            change_scope(principals[1], first.id, Scope.VIEWER),
            return_exceptions=True,
        )
        assert sum(1 for r in results if isinstance(r, LastOwner)) == 1
        assert await User.filter(organization_id=world.org.id, scope=Scope.OWNER, is_active=True).count() == 1
        await User.filter(id__in=[first.id, second.id]).update(scope=Scope.OWNER)
        for principal in principals:
            principal.user.scope = Scope.OWNER
    results = await asyncio.gather(
        deactivate_user(principals[0], second.id), deactivate_user(principals[1], first.id), return_exceptions=True,
    )
    assert sum(1 for r in results if isinstance(r, LastOwner)) == 1
    assert await User.filter(organization_id=world.org.id, scope=Scope.OWNER, is_active=True).count() == 1


async def test_the_last_owner_cannot_be_deactivated(client, world):
    before = await _snapshot()
    result = await gql(client, DEACTIVATE, {"id": _gid("User", world.users["owner"])}, token=world.tokens["owner"])
    assert result["data"]["deactivateUser"]["code"] == "LAST_OWNER"
    assert await _snapshot() == before


async def test_deactivation_ends_sessions_tokens_and_subscriptions_at_once(client, live_server, world, app):
    viewer = world.users["viewer"]
    session, _ = await login_token(viewer)
    async with LiveClient(live_server, world.tokens["viewer"]) as live:
        op = await live.subscribe(WATCH)
        await subscribed(app, 1)
        result = await gql(client, DEACTIVATE, {"id": _gid("User", viewer)}, token=world.tokens["owner"])
        assert result["data"]["deactivateUser"]["user"] == {"state": "DEACTIVATED"}
        message = await live.next(op, timeout=5)
        errors = message["payload"] if message["type"] == "error" else message["payload"].get("errors", [])
        assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"]
    for raw in (world.tokens["viewer"], session):
        with pytest.raises(AuthenticationFailed):
            await authenticate(raw)
    assert await Token.filter(user_id=viewer.id, revoked_at=None).count() == 0
    with pytest.raises(AuthenticationFailed):
        await login(viewer.email, f.PASSWORD, timedelta(hours=1))
    again = await gql(client, REACTIVATE, {"id": _gid("User", viewer)}, token=world.tokens["owner"])
    assert again["data"]["reactivateUser"]["user"] == {"state": "ACTIVE"}
    await login(viewer.email, f.PASSWORD, timedelta(hours=1))
    # Old tokens stay revoked.
    with pytest.raises(AuthenticationFailed):
        await authenticate(world.tokens["viewer"])


async def _with_password(*users):
    password_hash = hash_password(f.PASSWORD)
    await User.filter(id__in=[u.id for u in users]).update(password_hash=password_hash)


async def test_an_invited_owner_does_not_count_as_another_owner(world):
    owner = await authenticate(world.tokens["owner"])
    await _with_password(world.users["owner"])
    await invite_user(owner, "new-owner@example.com", Scope.OWNER, lifetime=timedelta(days=1))
    with pytest.raises(LastOwner):
        await deactivate_user(owner, owner.user.id)


async def login_token(user):
    """A session of `user`, who gets the factories' password for it."""
    user.password_hash = hash_password(f.PASSWORD)
    await user.save()
    return await login(user.email, f.PASSWORD, timedelta(hours=1))


async def test_owners_list_the_organizations_api_tokens_and_revoke_any(client, world):
    _, script = await issue(world.users["viewer"], "Xero sync")
    await login_token(world.users["owner"])
    result = await gql(client, TOKENS, {"sessions": False, "inactive": False}, token=world.tokens["owner"])
    nodes = [e["node"] for e in result["data"]["apiTokens"]["edges"]]
    assert nodes[0]["name"] == "Xero sync" and nodes[0]["user"] == {"email": world.users["viewer"].email}
    assert {n["kind"] for n in nodes} == {"API"}
    # The world's own tokens of the organization (owner, viewer, two customers) and the script's.
    assert result["data"]["apiTokens"]["totalCount"] == 5
    assert nodes[[n["name"] for n in nodes].index("Xero sync")]["lastUsedAt"] is None
    with_sessions = await gql(client, TOKENS, {"sessions": True, "inactive": False}, token=world.tokens["owner"])
    assert with_sessions["data"]["apiTokens"]["totalCount"] == 6
    revoked = await gql(client, REVOKE, {"id": nodes[0]["id"]}, token=world.tokens["owner"])
    assert revoked["data"]["revokeToken"]["__typename"] == "TokenRevoked"
    assert (await Token.get(id=script.id)).revoked_at is not None
    live = await gql(client, TOKENS, {"sessions": False, "inactive": False}, token=world.tokens["owner"])
    assert live["data"]["apiTokens"]["totalCount"] == 4
    everything = await gql(client, TOKENS, {"sessions": False, "inactive": True}, token=world.tokens["owner"])
    assert everything["data"]["apiTokens"]["totalCount"] == 5
    for role in ("viewer", "customer"):
        assert error_codes(await gql(client, TOKENS, {"sessions": True, "inactive": True}, token=world.tokens[role])) == ["FORBIDDEN"]
    foreign = await gql(client, TOKENS, {"sessions": True, "inactive": True}, token=world.tokens["foreign_owner"])
    assert foreign["data"]["apiTokens"]["totalCount"] == 1
    other = await gql(client, REVOKE, {"id": with_sessions["data"]["apiTokens"]["edges"][1]["node"]["id"]},
                      token=world.tokens["foreign_owner"])
    assert other["data"]["revokeToken"]["code"] == "NOT_FOUND"


async def issue(user, name):
    return await issue_api_token(user, name, 30)


async def test_last_use_is_recorded_at_most_once_a_minute(world):
    raw, token = await issue(world.users["viewer"], "script")
    await authenticate(raw)
    first = (await Token.get(id=token.id)).last_used_at
    assert first is not None
    await authenticate(raw)
    assert (await Token.get(id=token.id)).last_used_at == first
    await Token.filter(id=token.id).update(last_used_at=first - timedelta(seconds=61))
    await authenticate(raw)
    assert (await Token.get(id=token.id)).last_used_at > first
