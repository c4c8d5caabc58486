"""The audit log: every change to the organization's settings, billing profiles (banking
details included), rules, rates, accounts, users, invitations, API tokens and connections is
recorded with who, when, from where and each field before and after, secrets masked; in the
change's own transaction; made through the command line too; for owners only, filtered, paged
and exported as CSV; and the database refuses to alter or delete an entry."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from strawberry.relay import to_base64
from tortoise import connections
from tortoise.transactions import in_transaction

from models import AuditEntry, User
from models.actors import Actor, acting
from models.audit import AuditEntity, record_change, snapshot
from models.base import Scope
from models.people import Invitation, make_invitation_link
from models.xero.tables import XeroConnection
from tests import factories as f
from tests.graphql import error_codes, gql
from tests.guards import refused_by

ROOT = Path(__file__).resolve().parent.parent
LOG = """query($filter: AuditLogFilter, $first: Int, $after: String) { auditLog(filter: $filter, first: $first, after: $after) {
  totalCount pageInfo { hasNextPage endCursor }
  edges { node { id at actor actorUserId actorTokenId address entity entityId action changes { field before after } } } } }"""
EXPORT = """query($filter: AuditLogFilter) { auditLogExport(filter: $filter) { url expiresAt } }"""
MASK = "********"


def gid(kind: str, row: Any) -> str:
    return to_base64(kind, str(row.id))


async def entries(client, token: str, **filter: Any) -> list[dict[str, Any]]:
    answer = await gql(client, LOG, {"filter": filter or None, "first": 100}, token=token)
    assert "errors" not in answer, answer
    return [edge["node"] for edge in answer["data"]["auditLog"]["edges"]]


def changes(entry: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {c["field"]: (c["before"], c["after"]) for c in entry["changes"]}


async def mutate(client, world, query: str, variables: dict[str, Any], role: str = "owner") -> dict[str, Any]:
    answer = await gql(client, query, variables, token=world.tokens[role])
    assert "errors" not in answer, answer
    result = next(iter(answer["data"].values()))
    assert not result["__typename"].endswith("Error"), result
    return result


async def only(client, world, entity: str) -> dict[str, Any]:
    """The newest entry about `entity`, checked to be the owner's, from the request's address."""
    found = await entries(client, world.tokens["owner"], entity=entity)
    assert found, f"no {entity} entry"
    entry = found[0]
    owner = world.users["owner"]
    assert (entry["actor"], entry["actorUserId"], entry["address"]) == (owner.email, gid("User", owner), "127.0.0.1")
    assert entry["actorTokenId"] is not None
    assert datetime.fromisoformat(entry["at"]) > datetime.now(UTC) - timedelta(minutes=1)
    return entry


async def test_settings_profiles_rules_and_rates_are_logged_with_their_fields_before_and_after(client, world):
    await mutate(client, world, 'mutation { updateOrganization(input: {name: "Northwind Cloud"}) { __typename } }', {})
    entry = await only(client, world, "ORGANIZATION")
    assert (entry["action"], entry["entityId"], changes(entry)) == (
        "UPDATED",
        str(world.org.id),
        {"name": ("Northwind", "Northwind Cloud")},
    )
    await mutate(client, world, "mutation { updateExportSettings(dateFormat: ISO) { __typename } }", {})
    assert changes(await only(client, world, "ORGANIZATION")) == {"export_date_format": ("DAY_FIRST", "ISO")}

    made = await mutate(
        client,
        world,
        """mutation($input: CreateBillingProfileInput!) { createBillingProfile(input: $input) { __typename
      ... on BillingProfileSaved { billingProfile { id } } ... on UserError { code } } }""",
        {"input": {"nickname": "EU", "companyName": "Cloudwise BV", "bankingFields": [{"key": "IBAN", "value": "NL91ABNA0417164300"}]}},
    )
    profile_id = made["billingProfile"]["id"]
    await mutate(
        client,
        world,
        """mutation($id: ID!, $input: UpdateBillingProfileInput!) { updateBillingProfile(id: $id, input: $input) { __typename
      ... on UserError { code } ... on BillingProfileSaved { billingProfile { id } } } }""",
        {"id": profile_id, "input": {"bankingFields": [{"key": "IBAN", "value": "GB33BUKB20201555555555"}]}},
    )
    updated, created = (await entries(client, world.tokens["owner"], entity="BILLING_PROFILE"))[:2]
    assert created["action"] == "CREATED" and changes(created)["company_name"] == (None, "Cloudwise BV")
    assert (updated["action"], changes(updated)) == (
        "UPDATED",
        {"banking_fields": ([{"key": "IBAN", "value": "NL91ABNA0417164300"}], [{"key": "IBAN", "value": "GB33BUKB20201555555555"}])},
    )

    rule = await mutate(
        client,
        world,
        """mutation { createBillingRule(input: {name: "Loyalty", kind: DISCOUNT, calculation: PERCENT,
      value: "5"}) { __typename ... on BillingRuleSaved { billingRule { id } } ... on UserError { code } } }""",
        {},
    )
    rule_id = rule["billingRule"]["id"]
    await mutate(
        client, world, """mutation($id: ID!) { updateBillingRule(id: $id, input: {value: "7.5"}) { __typename } }""", {"id": rule_id}
    )
    await mutate(client, world, """mutation($id: ID!) { deleteBillingRule(id: $id) { __typename } }""", {"id": rule_id})
    deleted, updated, created = await entries(client, world.tokens["owner"], entity="BILLING_RULE")
    assert [created["action"], updated["action"], deleted["action"]] == ["CREATED", "UPDATED", "DELETED"]
    assert changes(updated) == {"value": ("5", "7.5")}
    assert changes(deleted)["name"] == ("Loyalty", None) and created["entityId"] == deleted["entityId"]

    rate = 'mutation($rate: Decimal!) { setExchangeRate(input: {month: "2024-09", currency: "EUR", rate: $rate}) { __typename } }'
    await mutate(client, world, rate, {"rate": "0.91"})
    await mutate(client, world, rate, {"rate": "0.92"})
    await mutate(client, world, rate, {"rate": "0.92"})
    # The same rate again changed nothing, and logs nothing.
    updated, created = await entries(client, world.tokens["owner"], entity="EXCHANGE_RATE")
    assert (created["action"], changes(created)["rate"]) == ("CREATED", (None, "0.91"))
    assert (updated["action"], changes(updated)) == ("UPDATED", {"rate": ("0.91", "0.92")})


async def test_accounts_users_invitations_and_tokens_are_logged(client, world):
    made = await mutate(
        client,
        world,
        """mutation { createManagedAccount(input: {name: "Adatum", subAccountIds: ["111"]}) { __typename
      ... on ManagedAccountSaved { managedAccount { id } } ... on UserError { code } } }""",
        {},
    )
    await mutate(
        client,
        world,
        """mutation($id: ID!) { updateManagedAccount(id: $id, input: {paymentTermsDays: 45, subAccountIds: ["111", "222"]}) {
      __typename } }""",
        {"id": made["managedAccount"]["id"]},
    )
    updated, created = await entries(client, world.tokens["owner"], entity="MANAGED_ACCOUNT")
    assert (created["action"], changes(created)["name"], changes(created)["sub_account_ids"]) == (
        "CREATED",
        (None, "Adatum"),
        (None, ["111"]),
    )
    assert changes(updated) == {"payment_terms_days": (30, 45), "sub_account_ids": (["111"], ["111", "222"])}

    invited = await mutate(
        client,
        world,
        """mutation { inviteUser(input: {email: "Ada@Example.com", scope: VIEWER}) { __typename
      ... on UserInvited { user { id } } ... on UserError { code } } }""",
        {},
    )
    user_id = invited["user"]["id"]
    await mutate(client, world, "mutation($id: ID!) { deactivateUser(userId: $id) { __typename } }", {"id": user_id})
    await mutate(client, world, "mutation($id: ID!) { reactivateUser(userId: $id) { __typename } }", {"id": user_id})
    await mutate(client, world, "mutation($id: ID!) { changeUserScope(userId: $id, scope: OWNER) { __typename } }", {"id": user_id})
    promoted, reactivated, deactivated, created = (await entries(client, world.tokens["owner"], entity="USER"))[:4]
    assert (created["action"], changes(created)["email"], changes(created)["scope"]) == (
        "CREATED",
        (None, "ada@example.com"),
        (None, "VIEWER"),
    )
    assert changes(promoted) == {"scope": ("VIEWER", "OWNER")}
    assert changes(deactivated) == {"is_active": (True, False)} and changes(reactivated) == {"is_active": (False, True)}
    invitation = (await entries(client, world.tokens["owner"], entity="INVITATION"))[0]
    ada = await User.get(email="ada@example.com")
    assert invitation["action"] == "CREATED" and changes(invitation)["user_id"] == (None, str(ada.id))
    assert changes(invitation)["invited_by_id"] == (None, str(world.users["owner"].id))

    token = await mutate(
        client,
        world,
        """mutation { createApiToken(input: {name: "Billing script", expiresInDays: 30}) { __typename
      ... on ApiTokenCreated { token apiToken { id } } ... on UserError { code } } }""",
        {},
    )
    await mutate(client, world, "mutation($id: ID!) { revokeToken(id: $id) { __typename } }", {"id": token["apiToken"]["id"]})
    revoked, created = await entries(client, world.tokens["owner"], entity="API_TOKEN")
    assert created["action"] == "CREATED" and changes(created)["name"] == (None, "Billing script")
    assert changes(created)["token_hash"] == (None, MASK)
    assert list(changes(revoked)) == ["revoked_at"] and changes(revoked)["revoked_at"][0] is None
    # The raw token is in no entry.
    assert token["token"] not in str(await entries(client, world.tokens["owner"]))


async def test_an_accepted_invitation_is_logged_as_the_invited_user_with_the_password_masked(client, world):
    await mutate(client, world, """mutation { inviteUser(input: {email: "grace@example.com", scope: VIEWER}) { __typename } }""", {})
    invitation = await Invitation.get(user__email="grace@example.com")
    link = await make_invitation_link(invitation.id)
    assert link is not None
    accepted = await gql(
        client,
        """mutation($token: String!) { acceptInvitation(token: $token, password: "a long enough secret") {
      __typename } }""",
        {"token": link.token},
    )
    assert accepted["data"]["acceptInvitation"]["__typename"] == "LoginSuccess"
    user = (await entries(client, world.tokens["owner"], entity="USER"))[0]
    assert (user["actor"], user["address"], changes(user)) == ("grace@example.com", "127.0.0.1", {"password_hash": (None, MASK)})
    used = (await entries(client, world.tokens["owner"], entity="INVITATION"))[0]
    assert used["actor"] == "grace@example.com" and list(changes(used)) == ["accepted_at"]
    assert "a long enough secret" not in str(await AuditEntry.all().values_list("changes", flat=True))


async def test_connections_are_logged_with_their_credentials_masked(client, world):
    created = await mutate(
        client,
        world,
        """mutation { createCostSource(input: {name: "AWS exports", kind: AWS_S3,
      location: "s3://northwind-billing/exports", region: "eu-west-1", accessKeyId: "AKIAIOSFODNN7EXAMPLE",
      secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}) { __typename
      ... on CostSourceSaved { costSource { id } } ... on UserError { code } } }""",
        {},
    )
    source_id = created["costSource"]["id"]
    await mutate(
        client,
        world,
        """mutation($id: ID!) { updateCostSource(id: $id, input: {
      secretAccessKey: "another+secret/EXAMPLEKEY0000000000000", accessKeyId: "AKIAIOSFODNN7EXAMPLE"}) { __typename } }""",
        {"id": source_id},
    )
    await mutate(client, world, "mutation($id: ID!) { deleteCostSource(id: $id) { __typename } }", {"id": source_id})
    deleted, updated, made = await entries(client, world.tokens["owner"], entity="COST_SOURCE")
    assert [made["action"], updated["action"], deleted["action"]] == ["CREATED", "UPDATED", "DELETED"]
    assert changes(made)["credentials"] == (None, MASK) and changes(made)["bucket"] == (None, "northwind-billing")
    assert changes(updated)["credentials"] == (MASK, MASK)
    assert changes(deleted)["credentials"] == (MASK, None)
    logged = str(await AuditEntry.all().values_list("changes", flat=True))
    assert "wJalrXUtnFEMI" not in logged and "another+secret" not in logged

    now = datetime.now(UTC)
    await XeroConnection.create(
        organization=world.org,
        tenant_id="northwind-tenant",
        tenant_name="Northwind Xero",
        tokens="sealed-tokens",
        access_expires_at=now + timedelta(minutes=30),
        connected_at=now,
    )
    await mutate(client, world, "mutation { disconnectXero { __typename } }", {})
    await mutate(
        client,
        world,
        """mutation { updateXeroSettings(input: {accountCode: "4000",
      mappings: [{lineKind: TAX, accountCode: "2200", taxType: "OUTPUT2"}]}) { __typename } }""",
        {},
    )
    settings = await only(client, world, "XERO_SETTINGS")
    assert changes(settings) == {
        "account_code": ("200", "4000"),
        "mappings": ([], [{"line_kind": "TAX", "line_name": "", "account_code": "2200", "tax_type": "OUTPUT2"}]),
    }
    xero = await only(client, world, "XERO_CONNECTION")
    assert xero["action"] == "DELETED" and changes(xero)["tokens"] == (MASK, None)
    assert changes(xero)["tenant_name"] == ("Northwind Xero", None)


async def test_an_entry_is_written_in_the_change_s_transaction(world):
    """A change that rolls back leaves no entry; one that commits leaves it, with the actor the unit of work named."""
    with acting(Actor(user_id=world.users["owner"].id, label="someone@example.com", address="203.0.113.9")):
        with pytest.raises(RuntimeError):
            async with in_transaction() as connection:
                await record_change(connection, AuditEntity.ORGANIZATION, world.org.id, world.org.id, {"name": "a"}, {"name": "b"})
                raise RuntimeError("rolled back")
        assert await AuditEntry.filter(entity=AuditEntity.ORGANIZATION).count() == 0
        async with in_transaction() as connection:
            await record_change(
                connection,
                AuditEntity.ORGANIZATION,
                world.org.id,
                world.org.id,
                snapshot(world.org),
                {**(snapshot(world.org) or {}), "name": "b"},
            )
    entry = await AuditEntry.get(entity=AuditEntity.ORGANIZATION)
    assert (entry.actor_label, entry.address) == ("someone@example.com", "203.0.113.9")
    assert entry.changes == {"name": {"before": "Northwind", "after": "b"}}


async def test_entries_cannot_be_altered_or_deleted(client, world):
    await mutate(client, world, 'mutation { updateOrganization(input: {name: "Northwind Cloud"}) { __typename } }', {})
    entry = await AuditEntry.get(entity=AuditEntity.ORGANIZATION)
    conn = connections.get("default")
    async with refused_by("audit_entries_append_only"):
        await conn.execute_query("UPDATE audit_entries SET actor_label = 'nobody' WHERE id = $1", [str(entry.id)])
    async with refused_by("audit_entries_append_only"):
        await conn.execute_query("DELETE FROM audit_entries WHERE id = $1", [str(entry.id)])
    assert (await AuditEntry.get(id=entry.id)).actor_label == world.users["owner"].email


async def test_a_token_made_by_the_command_line_is_logged_as_the_cli(world, settings):
    owner = world.users["owner"]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "invoicing", "create-token", owner.email, "--days", "7", "--name", "Nightly export"],
        cwd=ROOT,
        env=settings.child_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    raw = done.stdout.strip().splitlines()[-1]
    entry = await AuditEntry.get(entity=AuditEntity.API_TOKEN)
    assert (entry.actor_label, entry.actor_user_id, entry.actor_token_id, entry.address) == ("cli", None, None, None)
    assert (entry.organization_id, entry.action.value) == (world.org.id, "CREATED")
    assert entry.changes["name"] == {"before": None, "after": "Nightly export"}
    assert entry.changes["token_hash"] == {"before": None, "after": MASK} and raw not in str(entry.changes)


async def test_the_log_is_filtered_by_entity_actor_and_time_and_paged(client, world):
    owner = world.tokens["owner"]
    for name in ("One", "Two", "Three"):
        await mutate(client, world, "mutation($n: String!) { updateOrganization(input: {name: $n}) { __typename } }", {"n": name})
    await mutate(client, world, 'mutation { setExchangeRate(input: {month: "2024-09", currency: "EUR", rate: "0.9"}) { __typename } }', {})
    with acting(Actor.system("cli")):
        await f.user(world.org, Scope.VIEWER, email="script@example.com")
    everything = await entries(client, owner)
    assert [e["entity"] for e in everything[:5]] == ["USER", "EXCHANGE_RATE", "ORGANIZATION", "ORGANIZATION", "ORGANIZATION"]
    assert [changes(e)["name"][1] for e in await entries(client, owner, entity="ORGANIZATION")] == ["Three", "Two", "One"]
    by_owner = await entries(client, owner, actor=gid("User", world.users["owner"]))
    assert {e["entity"] for e in by_owner} == {"ORGANIZATION", "EXCHANGE_RATE"} and len(by_owner) == 4
    assert await entries(client, owner, actor=world.users["owner"].email.upper()) == by_owner
    assert [e["entity"] for e in await entries(client, owner, actor="cli")] == ["USER"]
    middle = datetime.fromisoformat(everything[3]["at"])
    since = await entries(client, owner, **{"from": middle.isoformat()})
    assert [e["id"] for e in since] == [e["id"] for e in everything[:4]]
    until = await entries(client, owner, to=middle.isoformat())
    assert [e["id"] for e in until] == [e["id"] for e in everything[4:]]

    first = (await gql(client, LOG, {"first": 2}, token=owner))["data"]["auditLog"]
    assert first["totalCount"] == len(everything) and first["pageInfo"]["hasNextPage"] is True
    second = (await gql(client, LOG, {"first": 2, "after": first["pageInfo"]["endCursor"]}, token=owner))["data"]["auditLog"]
    assert [e["node"]["id"] for e in second["edges"]] == [e["id"] for e in everything[2:4]]


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "other_customer", "foreign_owner"])
async def test_the_log_and_its_export_are_for_the_organization_s_owners_only(client, world, role):
    await mutate(client, world, 'mutation { updateOrganization(input: {name: "Northwind Cloud"}) { __typename } }', {})
    await mutate(client, world, 'mutation { updateOrganization(input: {name: "Fabrikam Two"}) { __typename } }', {}, role="foreign_owner")
    listed = await gql(client, LOG, {"filter": {"entity": "ORGANIZATION"}}, token=world.tokens[role])
    exported = await gql(client, EXPORT, {"filter": {"entity": "ORGANIZATION"}}, token=world.tokens[role])
    node = await gql(
        client,
        "query($id: ID!) { node(id: $id) { ... on AuditEntry { entity } } }",
        {"id": gid("AuditEntry", await AuditEntry.get(organization_id=world.org.id, entity="ORGANIZATION"))},
        token=world.tokens[role],
    )
    if role in ("viewer", "customer", "other_customer"):
        assert error_codes(listed) == error_codes(exported) == ["FORBIDDEN"]
        assert node["data"]["node"] is None
        return
    names = [changes(e["node"])["name"][1] for e in listed["data"]["auditLog"]["edges"]]
    mine = "Northwind Cloud" if role == "owner" else "Fabrikam Two"
    assert names == [mine]
    assert node["data"]["node"] == ({"entity": "ORGANIZATION"} if role == "owner" else None)
    download = await client.get(urlsplit(exported["data"]["auditLogExport"]["url"]).path)
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [(r["Entity"], r["Field"], r["After"]) for r in rows] == [("ORGANIZATION", "name", mine)]
    assert rows[0]["Address"] == "127.0.0.1" and rows[0]["Actor"] == world.users[role].email
