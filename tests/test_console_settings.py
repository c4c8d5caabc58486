"""The console's settings for owners (`/console#settings`, static/pages/console-admin.js) in a
real browser on the demo data: Playwright through the renderer's Chromium, against a real
uvicorn server on a free port, every host name unresolvable (tests/test_pages.py's server and
browser).

An owner creates, edits, ends and deletes a billing rule (the API then answers it as saved),
and an invalid figure shows the API's typed error at its field and writes nothing; invites a
person, changes the role, revokes the invitation, removes and reactivates a user; creates an
API token whose secret is shown once (it then works against /graphql, and is gone from the
page once the dialog closes) and revokes it (then refused). A viewer sees each section with no
control, and the API refuses its changes forced through the page's own session. A rule is
made by keyboard alone (the dialog keeps the focus, Escape closes it), and axe-core finds no
violation on the settings view and its dialogs."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx

from models import BillingRule, ManagedAccount, User
from models.auth import Token
from models.billing_rules import RuleCalculation, RuleKind
from models.demo import load_demo
from models.people import Invitation
from tests import test_pages
from tests.graphql import gql
from tests.test_console import _axe, _sign_in, _tab_to, _table

# The page tests' server and browser (every host name unresolvable but the loopback address).
browser, site, visit = test_pages.browser, test_pages.site, test_pages.visit
ROOT = Path(__file__).resolve().parent.parent
# `viewer` answers null to a refused token; `users` is refused UNAUTHENTICATED.
PROBE = "{ viewer { scope } users(first: 1) { totalCount } }"
RULES = "{ billingRules(first: 100) { edges { node { name kind calculation value providerName endsOn account { name } } } } }"


async def _demo() -> dict[str, tuple[str, str]]:
    """The demo organization (its months closed, nothing generated): each role's credentials."""
    result = await load_demo(ROOT / "demo" / "focus-1.0-sample.csv")
    return {user.scope.value.lower(): (user.email, user.password) for user in result.users}


async def _settings(page, origin: str, email: str, password: str) -> None:
    """Signed in, on September's settings, read."""
    await _sign_in(page, origin, email, password)
    await page.locator("#month[data-ready]").wait_for()
    await page.get_by_label("Month", exact=True).select_option("2024-09")
    await page.locator('#month[data-ready="2024-09"]').wait_for()
    await page.get_by_role("link", name="Settings").click()
    await page.locator("#settings[data-ready]").wait_for()


async def _saved(page) -> None:
    """The dialog closed after the lists were read again."""
    await page.locator("dialog[open]").wait_for(state="detached")
    await page.locator("#settings[data-ready]").wait_for()


def _graphql_posts(page, origin: str) -> list[str]:
    sent: list[str] = []
    page.on(
        "request",
        lambda r: sent.append(json.loads(r.post_data)["query"]) if r.url == origin + "/graphql" and r.method == "POST" else None,
    )
    return sent


async def _partner_credit(owner: User) -> BillingRule:
    return await BillingRule.create(
        organization_id=owner.organization_id,
        name="Partner credit",
        kind=RuleKind.CREDIT,
        calculation=RuleCalculation.FIXED,
        value=Decimal("25"),
    )


async def _token(origin: str, email: str, password: str) -> str:
    async with httpx.AsyncClient(base_url=origin) as http:
        answer = await gql(
            http,
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { ... on LoginSuccess { token } } }",
            {"e": email, "p": password},
        )
    return answer["data"]["login"]["token"]


# --- Billing rules ---------------------------------------------------------------------------


async def test_an_owner_creates_edits_ends_and_deletes_a_billing_rule_and_a_bad_figure_writes_nothing(visit):
    page, origin = visit.page, visit.origin
    users = await _demo()
    sent = _graphql_posts(page, origin)
    await _settings(page, origin, *users["owner"])
    assert await _table(page, "rule-rows") == [["No billing rules", "—", "—", "—", "—", ""]]

    await page.get_by_role("button", name="New billing rule").click()
    dialog = page.get_by_role("dialog", name="New billing rule")
    await dialog.get_by_label("Name").fill("Loyalty discount")
    await dialog.get_by_label("Kind").select_option("DISCOUNT")
    await dialog.get_by_label("Calculation").select_option("PERCENT")
    await dialog.get_by_label("Applies to").select_option(label="Atlas Freight")
    # Not a number: the page says so and sends nothing.
    await dialog.get_by_label("Value").fill("seven")
    posted = len(sent)
    await dialog.get_by_role("button", name="Save rule").click()
    await page.locator("#rule-value-error").get_by_text("Enter the value as a number").wait_for()
    assert len(sent) == posted
    # A number the API refuses: its typed error, at the field, and nothing written.
    await dialog.get_by_label("Value").fill("150")
    await dialog.get_by_role("button", name="Save rule").click()
    await page.locator("#rule-value-error").get_by_text("A discount percentage is 0 to 100.").wait_for()
    assert await page.get_attribute("#rule-value", "aria-invalid") == "true"
    assert await page.get_attribute("#rule-value", "aria-describedby") == "rule-value-error"
    assert await page.evaluate("document.activeElement.id") == "rule-value"
    assert await BillingRule.all().count() == 0
    await dialog.get_by_label("Value").fill("7.5")
    await dialog.get_by_role("button", name="Save rule").click()
    await _saved(page)
    rows = await _table(page, "rule-rows")
    assert [row[:5] for row in rows] == [["Loyalty discount", "Discount", "7.5 %", "Atlas Freight", "Every month"]]
    rule = await BillingRule.get(name="Loyalty discount")
    atlas = await ManagedAccount.get(name="Atlas Freight")
    assert (rule.kind, rule.calculation, rule.value, rule.managed_account_id, rule.is_active) == (
        "DISCOUNT",
        "PERCENT",
        Decimal("7.5"),
        atlas.id,
        True,
    )
    # The focus is back on the button that opened the dialog.
    assert await page.evaluate("document.activeElement.id") == "rule-new"

    # Edited: another figure and a provider; the API answers it so.
    await page.get_by_role("button", name="Edit rule Loyalty discount").click()
    dialog = page.get_by_role("dialog", name="Edit billing rule Loyalty discount")
    assert await dialog.get_by_label("Value").input_value() == "7.5"
    await dialog.get_by_label("Value").fill("10")
    await dialog.get_by_label("Only provider").fill("AWS")
    await dialog.get_by_label("Applies to").select_option(label="Every account")
    await dialog.get_by_role("button", name="Save rule").click()
    await _saved(page)
    assert (await _table(page, "rule-rows"))[0][:4] == ["Loyalty discount", "Discount", "10 %", "Every account · AWS"]
    assert await page.evaluate("document.activeElement.getAttribute('aria-label')") == "Edit rule Loyalty discount"
    async with httpx.AsyncClient(base_url=origin) as http:
        answer = await gql(http, RULES, token=await _token(origin, *users["viewer"]))
    assert [e["node"] for e in answer["data"]["billingRules"]["edges"]] == [
        {
            "name": "Loyalty discount",
            "kind": "DISCOUNT",
            "calculation": "PERCENT",
            "value": "10",
            "providerName": "AWS",
            "endsOn": None,
            "account": None,
        }
    ]

    # Ended after the console's month, then deleted (each confirmed).
    await page.get_by_role("button", name="End rule Loyalty discount after September 2024").click()
    await (
        page.get_by_role("dialog", name="End billing rule Loyalty discount").get_by_role("button", name="End after September 2024").click()
    )
    await _saved(page)
    assert (await _table(page, "rule-rows"))[0][4] == "Until September 2024"
    assert (await BillingRule.get(id=rule.id)).ends_on == date(2024, 9, 1)
    assert not await page.get_by_role("button", name="End rule Loyalty discount", exact=False).count()
    await page.get_by_role("button", name="Delete rule Loyalty discount").click()
    confirm = page.get_by_role("dialog", name="Delete billing rule Loyalty discount")
    # The safe choice has the focus.
    assert await page.evaluate("document.activeElement.textContent") == "Cancel"
    await confirm.get_by_role("button", name="Delete rule").click()
    await _saved(page)
    assert await BillingRule.all().count() == 0
    assert (await _table(page, "rule-rows"))[0][0] == "No billing rules"
    assert await page.evaluate("document.activeElement.id") == "rule-new"

    # Every request's document is one of the page's constants.
    documents = set(await page.evaluate("Object.values(window.consoleApi.DOCUMENTS)"))
    assert sent and set(sent) <= documents
    assert visit.foreign() == [] and await visit.violations() == []


# --- People ----------------------------------------------------------------------------------


async def test_an_owner_invites_a_person_changes_the_role_revokes_the_invitation_and_removes_a_user(visit):
    page, origin = visit.page, visit.origin
    users = await _demo()
    await _settings(page, origin, *users["owner"])
    people = {row[1]: row for row in await _table(page, "people-rows")}
    assert people[users["owner"][0]][2:] == ["Owner", "Active", "You"]
    assert people["customer@northwind.example"][2] == "Customer · Atlas Freight"

    # An address already in use: the API's EMAIL_TAKEN at the e-mail field, nobody added.
    count = await User.all().count()
    await page.get_by_role("button", name="Invite a person").click()
    dialog = page.get_by_role("dialog", name="Invite a person")
    await dialog.get_by_label("E-mail address").fill(users["viewer"][0])
    await dialog.get_by_role("button", name="Send invitation").click()
    await page.locator("#person-email-error").get_by_text("already exists").wait_for()
    assert await User.all().count() == count
    # A customer needs an account: the field shows only for that role.
    assert await dialog.get_by_label("Account").is_hidden()
    await dialog.get_by_label("Role").select_option("CUSTOMER")
    assert await dialog.get_by_label("Account").is_visible()
    await dialog.get_by_label("Role").select_option("VIEWER")
    await dialog.get_by_label("E-mail address").fill("nora@northwind.example")
    await dialog.get_by_label("Name (optional)").fill("Nora Quinn")
    await dialog.get_by_role("button", name="Send invitation").click()
    await _saved(page)
    nora = await User.get(email="nora@northwind.example")
    assert (nora.scope, nora.name, nora.password_hash) == ("VIEWER", "Nora Quinn", None)
    assert await Invitation.filter(user_id=nora.id, withdrawn_at=None).count() == 1
    people = {row[1]: row for row in await _table(page, "people-rows")}
    assert people["nora@northwind.example"][:4] == ["Nora Quinn", "nora@northwind.example", "Viewer", "Invited"]

    await page.get_by_role("button", name="Change the role of Nora Quinn").click()
    dialog = page.get_by_role("dialog", name="Change the role of Nora Quinn")
    await dialog.get_by_label("Role").select_option("OWNER")
    await dialog.get_by_role("button", name="Save role").click()
    await _saved(page)
    assert (await User.get(id=nora.id)).scope == "OWNER"
    assert {row[1]: row for row in await _table(page, "people-rows")}["nora@northwind.example"][2] == "Owner"

    await page.get_by_role("button", name="Revoke the invitation of Nora Quinn").click()
    await page.get_by_role("dialog").get_by_role("button", name="Revoke invitation").click()
    await _saved(page)
    assert (await User.get(id=nora.id)).is_active is False
    assert await Invitation.filter(user_id=nora.id, withdrawn_at=None).count() == 0
    assert {row[1]: row for row in await _table(page, "people-rows")}["nora@northwind.example"][3] == "Deactivated"

    # The demo viewer removed: its session stops working at once; then reactivated.
    viewer_token = await _token(origin, *users["viewer"])
    await page.get_by_role("button", name="Remove Victor Hale").click()
    await page.get_by_role("dialog", name=f"Remove {users['viewer'][0]}").get_by_role("button", name="Remove").click()
    await _saved(page)
    async with httpx.AsyncClient(base_url=origin) as http:
        refused = await gql(http, PROBE, token=viewer_token)
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["UNAUTHENTICATED"]
    await page.get_by_role("button", name="Reactivate Victor Hale").click()
    await page.get_by_role("button", name="Change the role of Victor Hale").wait_for()
    assert (await User.get(email=users["viewer"][0])).is_active is True
    assert visit.foreign() == [] and await visit.violations() == []


# --- API tokens ------------------------------------------------------------------------------


async def test_an_owner_creates_a_token_shown_once_that_works_then_revokes_it(visit):
    page, origin = visit.page, visit.origin
    users = await _demo()
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
    await _settings(page, origin, *users["owner"])

    await page.get_by_role("button", name="New API token").click()
    dialog = page.get_by_role("dialog", name="New API token")
    await dialog.get_by_label("What the token is for").fill("Nightly export")
    await dialog.get_by_label("Lifetime in days").fill("0")
    await dialog.get_by_role("button", name="Create token").click()
    await page.locator("#token-days-error").wait_for()
    assert await Token.filter(name="Nightly export").count() == 0
    await dialog.get_by_label("Lifetime in days").fill("30")
    await dialog.get_by_role("button", name="Create token").click()
    secret_field = page.get_by_label("Secret", exact=True)
    await secret_field.wait_for()
    secret = await secret_field.input_value()
    assert len(secret) >= 32
    assert await page.evaluate("document.activeElement.id") == "token-secret"
    assert await page.get_by_role("dialog", name="Your new API token").is_visible()
    await page.get_by_role("button", name="Copy secret").click()
    await page.get_by_text("Copied to the clipboard.").wait_for()
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    await page.locator("#settings[data-ready]").wait_for()
    assert (await _table(page, "token-rows"))[0][:2] == ["Nightly export", users["owner"][0]]

    # The secret works as a bearer token.
    async with httpx.AsyncClient(base_url=origin) as http:
        answer = await gql(http, PROBE, token=secret)
    assert answer["data"] == {"viewer": {"scope": "OWNER"}, "users": {"totalCount": 3}}

    # Closed: the secret is nowhere on the page, in its storage or its state; it came once.
    await page.get_by_role("button", name="Done").click()
    await page.locator("dialog[open]").wait_for(state="detached")
    assert secret not in await page.content()
    assert await page.evaluate("document.getElementById('token-secret').value") == ""
    stored = await page.evaluate("JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])")
    assert secret not in stored
    assert sum(secret in body for body in visit.received) == 1
    await page.get_by_role("button", name="New API token").click()
    assert await page.locator("#token-made").is_hidden()
    await page.keyboard.press("Escape")
    assert await page.evaluate("document.activeElement.id") == "token-new"

    await page.get_by_role("button", name="Revoke token Nightly export").click()
    await page.get_by_role("dialog", name="Revoke token Nightly export").get_by_role("button", name="Revoke token").click()
    await _saved(page)
    assert "Nightly export" not in await page.locator("#token-rows").inner_text()
    async with httpx.AsyncClient(base_url=origin) as http:
        refused = await gql(http, PROBE, token=secret)
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["UNAUTHENTICATED"]
    assert visit.foreign() == [] and await visit.violations() == []


# --- The viewer ------------------------------------------------------------------------------

FORCED = {
    "createBillingRule": 'mutation { createBillingRule(input: {name: "Forced", kind: DISCOUNT, calculation: PERCENT,'
    ' value: "5", isActive: true}) { __typename } }',
    "deleteBillingRule": "mutation($id: ID!) { deleteBillingRule(id: $id) { __typename } }",
    "inviteUser": 'mutation { inviteUser(input: {email: "forced@example.com", scope: OWNER}) { __typename } }',
    "changeUserScope": "mutation($id: ID!) { changeUserScope(userId: $id, scope: OWNER) { __typename } }",
    "deactivateUser": "mutation($id: ID!) { deactivateUser(userId: $id) { __typename } }",
    "createApiToken": 'mutation { createApiToken(input: {name: "Forced", expiresInDays: 5}) { __typename } }',
}


async def test_a_viewer_sees_each_section_without_a_control_and_the_api_refuses_forced_changes(visit):
    from strawberry.relay import to_base64

    page, origin = visit.page, visit.origin
    users = await _demo()
    owner = await User.get(email=users["owner"][0])
    rule = await _partner_credit(owner)
    await _settings(page, origin, *users["viewer"])
    assert (await _table(page, "rule-rows")) == [["Partner credit", "Credit", "25", "Every account", "Every month"]]
    assert len(await _table(page, "people-rows")) == 3
    assert all(len(row) == 4 for row in await _table(page, "people-rows"))
    for section in ("rule-new", "person-new", "token-new"):
        assert await page.locator("#" + section).is_hidden()
    assert await page.locator("#settings button:visible").count() == 0
    assert await page.get_by_text("Only owners see the organization's API tokens.").is_visible()
    assert await page.locator("#token-rows").is_hidden()

    # Forced through the page's own session: each refused, nothing changed.
    variables = {"id": to_base64("BillingRule", str(rule.id))}
    for name, document in FORCED.items():
        if "changeUserScope" in document or "deactivateUser" in document:
            variables = {"id": to_base64("User", str(owner.id))}
        forced = await page.evaluate(
            """async ([query, variables]) => {
          const session = JSON.parse(sessionStorage.getItem("invoicing.console.session"));
          const response = await fetch("/graphql", {method: "POST", headers: {"Content-Type": "application/json",
            Authorization: "Bearer " + session.token}, body: JSON.stringify({query, variables})});
          return response.json();
        }""",
            [document, variables if "$id" in document else {}],
        )
        assert [e["extensions"]["code"] for e in forced["errors"]] == ["FORBIDDEN"], name
        assert forced["data"] is None, name
    assert await BillingRule.all().count() == 1 and await User.all().count() == 3
    assert (await User.get(id=owner.id)).is_active is True
    assert await Token.filter(name="Forced").count() == 0
    assert visit.foreign() == [] and await visit.violations() == []


# --- Keyboard and contrast -------------------------------------------------------------------


async def _focused(page) -> str:
    return await page.evaluate("document.activeElement.id || document.activeElement.textContent")


async def test_a_billing_rule_is_made_by_keyboard_alone_in_a_dialog_that_keeps_the_focus(visit):
    page, origin = visit.page, visit.origin
    users = await _demo()
    await _settings(page, origin, *users["owner"])
    await _tab_to(page, "New billing rule")
    await page.keyboard.press("Enter")
    assert await _focused(page) == "rule-name"
    # Round the dialog: Shift+Tab from the first control reaches the last, Tab from it the first.
    await page.keyboard.press("Shift+Tab")
    assert await _focused(page) == "Cancel"
    await page.keyboard.press("Tab")
    assert await _focused(page) == "rule-name"
    for _ in range(14):
        await page.keyboard.press("Tab")
        assert await page.evaluate("!!document.activeElement.closest('#rule-dialog')")
    # Escape closes it, back on the button that opened it.
    await page.keyboard.press("Escape")
    assert await page.locator("#rule-dialog").is_hidden()
    assert await _focused(page) == "rule-new"

    await page.keyboard.press("Enter")
    await page.keyboard.type("Support markup")
    await page.keyboard.press("Tab")  # kind
    await page.keyboard.press("End")  # Tax, the last
    await page.keyboard.press("Home")
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowDown")  # Markup
    await page.keyboard.press("Tab")  # calculation: a percentage
    await page.keyboard.press("Tab")
    await page.keyboard.type("12.5")
    await page.keyboard.press("Enter")
    await _saved(page)
    rule = await BillingRule.get(name="Support markup")
    assert (rule.kind, rule.calculation, rule.value, rule.managed_account_id) == ("MARKUP", "PERCENT", Decimal("12.5"), None)
    assert await _focused(page) == "rule-new"


async def test_axe_finds_no_violation_on_the_settings_view_and_its_dialogs(browser, site):
    users = await _demo()
    owner = await User.get(email=users["owner"][0])
    await _partner_credit(owner)
    # axe-core is the test's script, not the page's: the page's policy would refuse it.
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    try:
        await _settings(page, site, *users["owner"])
        assert await _axe(page) == []
        await page.get_by_role("button", name="New billing rule").click()
        await page.get_by_role("dialog").get_by_role("button", name="Save rule").click()
        await page.locator("#rule-value-error").wait_for()
        assert await _axe(page) == []
        await page.keyboard.press("Escape")
        await page.get_by_role("button", name="New API token").click()
        await page.get_by_label("What the token is for").fill("Axe")
        await page.get_by_role("button", name="Create token").click()
        await page.locator("#token-made").wait_for()
        assert await _axe(page) == []
        await page.get_by_role("button", name="Done").click()
        await page.get_by_role("button", name="Change the role of Victor Hale").click()
        assert await _axe(page) == []
        await page.keyboard.press("Escape")
        await page.get_by_role("button", name="Sign out").click()
        await _settings(page, site, *users["viewer"])
        assert await _axe(page) == []
    finally:
        await context.close()
