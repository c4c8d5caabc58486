"""The month-end console (`/console`) in a real browser, on the demo data: Playwright through
the Chromium the renderer uses, against a real uvicorn server on a free port, every host name
unresolvable (tests/test_pages.py's server and browser).

An owner signs in, reads September at a glance, approves ten invoices in one action while
acknowledging a warning (an eleventh, whose warning was not acknowledged, is refused on its
own line), sees another session's approval arrive live, opens a revision diff and the costs
behind a line, and sets an exchange rate; a viewer reads the same month with no control, and
the API refuses the viewer's forced approval; a customer is handed to the portal; the work is
done by keyboard alone; axe-core finds no violation (contrast included). Set
SCREENSHOT_DIR=docs/images to refresh the manual's screenshots."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import graphql
import httpx
import pytest

from invoicing import pages
from invoicing.root import schema
from models import BillingPeriod, CostRecord, ExchangeRate, Invoice, InvoiceLineItem, InvoiceRevision
from models.actors import Actor
from models.demo import load_demo
from models.invoices.actions import start_generation
from models.invoices.checks import CheckCode, Finding, Severity
from models.invoices.generation.compute import compute
from models.invoices.generation.inputs import load_context
from models.invoices.generation.store import store_revision
from models.invoices.generation.view import build_view
from models.invoices.numbering import ensure_number
from tests import factories as f
from tests import test_pages
from tests.graphql import gql, subscribed
from tests.test_pages import SITES, _screenshot

# The page tests' server and browser (every host name unresolvable but the loopback address).
browser, site, visit = test_pages.browser, test_pages.site, test_pages.visit
ROOT = Path(__file__).resolve().parent.parent
SEPT = date(2024, 9, 1)
SYSTEM = Actor.system("test")
AXE = ROOT / "static" / "pages" / "vendor" / "axe-core@4.10.3" / "axe.min.js"
LOGIN = """mutation($email: String!, $password: String!) { login(email: $email, password: $password) {
  ... on LoginSuccess { token } } }"""
APPROVE = """mutation($ids: [ID!]!) { approveInvoices(ids: $ids, notifyCustomer: false) {
  ... on InvoiceActionResults { succeeded } } }"""


@dataclass
class Month:
    """The demo organization's September, generated as the worker leaves it (without PDFs)."""

    users: dict[str, tuple[str, str]]  # role -> (e-mail, password)
    demo: list[Invoice]  # the demo customers' invoices, real lines on real costs
    extra: list[Invoice] = field(default_factory=list)  # more customers' invoices awaiting approval
    warned: Invoice | None = None  # ZERO_TOTAL, a warning
    other_warned: Invoice | None = None  # TOTAL_CHANGED, a warning
    revised: Invoice | None = None  # a demo invoice generated twice: its revision diff


async def _generate(invoice: Invoice, *, again: bool = False) -> Invoice:
    if again or invoice.status == "READY_TO_INVOICE":
        await start_generation(invoice.id, invoice.organization_id, SYSTEM, regenerate=again)
    ctx = await load_context(invoice.id)
    draft = await compute(ctx)
    number = await ensure_number(invoice.id, 2024)
    await store_revision(invoice.id, draft, build_view(ctx, draft, number, "1"), {"path": None, "sha256": None, "size": None}, SYSTEM)
    return await Invoice.get(id=invoice.id)


async def _month() -> Month:
    result = await load_demo(ROOT / "demo" / "focus-1.0-sample.csv")
    org = result.organization
    users = {user.scope.value.lower(): (user.email, user.password) for user in result.users}
    period = await BillingPeriod.get(organization_id=org.id, start_date=SEPT)
    demo = [await _generate(invoice) for invoice in await Invoice.filter(billing_period_id=period.id).order_by("created_at")]
    made = Month(users, demo)

    # The first demo invoice's costs grow after generation; generated again, it has a diff.
    first = demo[0]
    row = await CostRecord.filter(managed_account_id=first.managed_account_id, billing_month=SEPT).order_by("id").first().values()
    row.pop("id")
    await CostRecord.create(**{**row, "fingerprint": uuid.uuid4().hex, "billed_cost": Decimal("250.00")})
    await f.summed_costs(org.id)
    made.revised = await _generate(first, again=True)

    profile = await first.managed_account.first().values_list("billing_profile_id", flat=True)
    warnings = {0: CheckCode.ZERO_TOTAL, 1: CheckCode.TOTAL_CHANGED}
    for n in range(12):
        account = await f.managed_account(org, name=f"Harbour Client {n + 1:02d}", currency="USD", billing_profile_id=profile)
        made.extra.append(await _awaiting(account, period, f"NW-2024-{900 + n}", warnings.get(n)))
    made.warned, made.other_warned = made.extra[0], made.extra[1]
    return made


async def _awaiting(account, period, number: str, warning: CheckCode | None) -> Invoice:
    """An invoice as generation leaves it awaiting approval: two lines, and the warning its
    checks found (stored on its revision, as generation stores them)."""
    invoice = await f.invoice(account, period, number=number)
    checks = (
        []
        if warning is None
        else [Finding(warning, Severity.WARNING, f"{warning.value.replace('_', ' ').capitalize()} this month.", {}).stored()]
    )
    total = Decimal("0.00") if warning == CheckCode.ZERO_TOTAL else Decimal("130.75")
    revision = await InvoiceRevision.create(
        invoice=invoice,
        revision=1,
        template_version="1",
        currency="USD",
        cost_currency="USD",
        subtotal=total,
        adjustments=0,
        charges=0,
        total=total,
        issue_date=date(2024, 10, 1),
        due_date=date(2024, 10, 31),
        snapshot={},
        checks=checks,
    )
    await InvoiceLineItem.bulk_create(
        [
            InvoiceLineItem(revision=revision, position=1, description="Compute", amount=total),
            InvoiceLineItem(revision=revision, position=2, description="Support", amount=Decimal("0.00")),
        ]
    )
    await Invoice.filter(id=invoice.id).update(
        current_revision_id=revision.id,
        subtotal=total,
        total=total,
        issue_date=date(2024, 10, 1),
        due_date=date(2024, 10, 31),
        status="AWAITING_APPROVAL",
    )
    return await Invoice.get(id=invoice.id)


async def _sign_in(page, origin: str, email: str, password: str) -> None:
    await page.goto(origin + "/console")
    await page.get_by_label("E-mail", exact=True).fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def _september(page) -> None:
    """The month picker on September, its glance read."""
    await page.locator("#month[data-ready]").wait_for()
    await page.get_by_label("Month", exact=True).select_option("2024-09")
    await page.locator('#month[data-ready="2024-09"]').wait_for()


async def _table(page, body: str) -> list[list[str]]:
    return await page.eval_on_selector_all(
        f"#{body} tr:not(.spacer)", "rows => rows.map(r => [...r.children].map(c => c.innerText.trim()))"
    )


async def _approval(page) -> None:
    await page.get_by_role("link", name="Approval").click()
    await page.locator("#approval[data-ready]").wait_for()


async def _glance(page) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in await _table(page, "by-status-rows")}


# --- The owner ---------------------------------------------------------------------------------


async def test_an_owner_closes_september_approving_ten_at_once_live_with_diff_drill_down_and_rate(visit):
    page, origin = visit.page, visit.origin
    made = await _month()
    awaiting = len(made.demo) + len(made.extra)
    sent: list[str] = []
    page.on(
        "request", lambda r: sent.append(json.loads(r.post_data)["query"]) if r.url == origin + "/graphql" and r.method == "POST" else None
    )
    await _sign_in(page, origin, *made.users["owner"])
    await _september(page)
    await page.get_by_text("Live updates on").wait_for()

    # The month at a glance: every invoice awaits approval (PENDING), in dollars.
    glance = await _glance(page)
    assert list(glance) == ["Pending"] and glance["Pending"][0] == str(awaiting)
    total = sum(
        (i.total for i in await Invoice.filter(billing_period__start_date=SEPT, organization_id=made.demo[0].organization_id)), Decimal(0)
    )
    assert glance["Pending"][1] == f"US${total:,.2f}"
    attention = await page.locator("#attention").inner_text()
    assert "2 warnings to acknowledge on 2 invoices" in attention and f"{awaiting} invoices await approval" in attention
    reconciliation = await _table(page, "reconciliation-rows")
    assert reconciliation and reconciliation[0][0] == "USD"
    assert (await _table(page, "import-rows"))[0][:2] == ["focus-1.0-sample.csv", "Done"]
    await _screenshot(page, "console-month.png")

    # The approval work: eleven selected, the ZERO_TOTAL warning acknowledged, TOTAL_CHANGED not.
    await page.get_by_role("button", name="warnings to acknowledge", exact=False).click()
    await page.locator("#approval[data-ready]").wait_for()
    assert [row[1] for row in await _table(page, "rows")] == ["NW-2024-900", "NW-2024-901"]
    await page.get_by_label("Checks").select_option("")
    assert len(await _table(page, "rows")) == awaiting
    for invoice in made.extra[:11]:
        await page.get_by_label(f"Select {invoice.number} ·", exact=False).check()
    await page.get_by_role("button", name="Approve 11 selected").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Zero total (1 invoice)", exact=False).check()
    assert await dialog.get_by_label("Total changed (1 invoice)", exact=False).is_checked() is False
    await dialog.get_by_label("E-mail the invoices to the customers").uncheck()
    await dialog.get_by_role("button", name="Approve").click()
    results = page.locator("#approval-results")
    await results.get_by_text("10 invoices approved; 1 refused:").wait_for()
    assert "NW-2024-901 (Harbour Client 02):" in await results.inner_text()
    statuses = {i.number: i.status for i in await Invoice.filter(id__in=[i.id for i in made.extra])}
    # The first eleven were selected: all approved but the second (its warning not acknowledged).
    assert [statuses[i.number] for i in made.extra] == (["APPROVED", "AWAITING_APPROVAL"] + ["APPROVED"] * 9 + ["AWAITING_APPROVAL"])
    row = page.locator("#rows tr", has_text="NW-2024-905")
    assert "Approved" in await row.inner_text()

    # Another session (the other owner's) approves the twelfth: it shows here without a reload.
    await page.evaluate("window.__sameDocument = true")
    await subscribed(SITES[origin], 1)
    async with httpx.AsyncClient(base_url=origin) as http:
        token = (await gql(http, LOGIN, dict(zip(("email", "password"), made.users["owner"]))))["data"]["login"]["token"]
        last = made.extra[11]
        answer = await gql(http, APPROVE, {"ids": [_gid(last)]}, token=token)
        assert answer["data"]["approveInvoices"] == {"succeeded": 1}
    await page.locator("#rows tr", has_text=last.number).get_by_text("Approved").wait_for()
    assert await page.evaluate("window.__sameDocument") is True

    # The revised demo invoice: its diff against the first revision, and a line's costs.
    revised = made.revised
    await page.get_by_role("button", name=f"Open {revised.number} ·", exact=False).click()
    detail = page.locator("#detail")
    await detail.get_by_text("Revision 2 against revision 1", exact=False).wait_for()
    diff = await detail.locator("#detail-diff").inner_text()
    assert "because of: costs" in diff and "+US$" in diff
    await detail.get_by_role("button", name="Costs behind line 1:", exact=False).click()
    await page.locator("#drill-title").get_by_text("record", exact=False).wait_for()
    drilled = await _table(page, "drill-rows")
    assert drilled and all(row[3].startswith("US$") for row in drilled)
    # The manual's picture: the results, the list and the invoice's diff in one view.
    await page.set_viewport_size({"width": 1280, "height": 1500})
    await page.evaluate("window.scrollTo(0, 0)")
    await _screenshot(page, "console-approval.png")
    await page.set_viewport_size({"width": 1200, "height": 720})

    # Settings: a rate for September.
    await page.get_by_role("link", name="Settings").click()
    await page.locator("#settings[data-ready]").wait_for()
    await page.get_by_label("To", exact=True).fill("EUR")
    await page.get_by_label("Rate", exact=True).fill("0.9215")
    await page.get_by_role("button", name="Set rate").click()
    await page.locator("#rate-rows tr", has_text="EUR").wait_for()
    rate = await ExchangeRate.get(organization_id=made.demo[0].organization_id, currency="EUR")
    assert rate.rate == Decimal("0.9215") and rate.month == SEPT and rate.base_currency == "USD"

    # Every request's document is one of the page's constants: the validation cache serves it.
    documents = set(await page.evaluate("Object.values(window.consoleApi.DOCUMENTS)"))
    assert sent and set(sent) <= documents
    assert visit.foreign() == []
    assert await visit.violations() == []


def _gid(invoice: Invoice) -> str:
    from strawberry.relay import to_base64

    return to_base64("Invoice", str(invoice.id))


# --- The viewer, the customer ------------------------------------------------------------------


async def test_a_viewer_reads_the_same_month_without_a_control_and_the_api_refuses_a_forced_approval(visit):
    page, origin = visit.page, visit.origin
    made = await _month()
    await _sign_in(page, origin, *made.users["viewer"])
    await _september(page)
    glance = await _glance(page)
    assert glance["Pending"][0] == str(len(made.demo) + len(made.extra))

    await _approval(page)
    assert len(await _table(page, "rows")) == len(made.demo) + len(made.extra)
    assert await page.locator("#rows input[type=checkbox]").count() == 0
    assert not await page.get_by_role("button", name="Approve", exact=False).count()
    await page.get_by_role("button", name=f"Open {made.warned.number} ·", exact=False).click()
    await page.locator("#detail").get_by_text("Zero total", exact=False).wait_for()
    actions = await page.locator("#detail-actions button").all_inner_texts()
    assert actions == []
    await page.get_by_role("link", name="Settings").click()
    await page.locator("#settings[data-ready]").wait_for()
    assert await page.locator("#rate-form").is_hidden()
    assert await page.locator("#account-rows select").count() == 0
    assert "Harbour Client 01" in await page.locator("#account-rows").inner_text()

    # Forced through the page's own session: refused, nothing approved.
    forced = await page.evaluate(
        """async (id) => {
      const session = JSON.parse(sessionStorage.getItem("invoicing.console.session"));
      const response = await fetch("/graphql", {method: "POST", headers: {"Content-Type": "application/json",
        Authorization: "Bearer " + session.token}, body: JSON.stringify({query:
        "mutation($ids: [ID!]!) { approveInvoices(ids: $ids, acknowledge: [ZERO_TOTAL]) { __typename } }",
        variables: {ids: [id]}})});
      return response.json();
    }""",
        _gid(made.warned),
    )
    assert [e["extensions"]["code"] for e in forced["errors"]] == ["FORBIDDEN"]
    # The page's documents all hold against the schema (a renamed field fails here first).
    for document in await page.evaluate("Object.values(window.consoleApi.DOCUMENTS)"):
        assert graphql.validate(schema._schema, graphql.parse(document)) == [], document
    assert (await Invoice.get(id=made.warned.id)).status == "AWAITING_APPROVAL"
    assert visit.foreign() == [] and await visit.violations() == []


async def test_a_customer_is_sent_to_the_portal_signed_in(visit):
    page, origin = visit.page, visit.origin
    made = await _month()
    await _sign_in(page, origin, *made.users["customer"])
    await page.wait_for_url(origin + "/portal")
    await page.get_by_role("heading", name="Your invoices").wait_for()
    assert await page.evaluate("sessionStorage.getItem('invoicing.console.session')") is None
    assert visit.foreign() == []


# --- Keyboard and contrast ---------------------------------------------------------------------


async def _tab_to(page, name: str, limit: int = 80, back: bool = False) -> None:
    """Tab (or Shift+Tab) until the focused element is named `name` (its label or text)."""
    for _ in range(limit):
        await page.keyboard.press("Shift+Tab" if back else "Tab")
        focused = await page.evaluate("""() => { const e = document.activeElement;
          return e.getAttribute("aria-label") || (e.labels && e.labels[0] && e.labels[0].innerText) || e.innerText || ""; }""")
        if focused.strip().startswith(name):
            return
    raise AssertionError(f"{name} cannot be reached by keyboard")


async def test_the_month_is_worked_by_keyboard_alone(visit):
    page, origin = visit.page, visit.origin
    made = await _month()
    await page.goto(origin + "/console")
    await page.locator("#email").wait_for()
    await page.keyboard.type(made.users["owner"][0])
    await page.keyboard.press("Tab")
    await page.keyboard.type(made.users["owner"][1])
    await page.keyboard.press("Enter")
    await page.locator("#month[data-ready]").wait_for()
    await _tab_to(page, "Month", back=True)  # the picker, by its label
    await page.keyboard.press("ArrowDown")  # newest first: September follows October
    await page.locator('#month[data-ready="2024-09"]').wait_for()
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Shift+Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Approval"
    await page.keyboard.press("Enter")
    await page.locator("#approval[data-ready]").wait_for()
    third = made.extra[2]
    await _tab_to(page, f"Select {third.number}")
    await page.keyboard.press("Space")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")  # the invoice itself
    await page.locator("#detail-title").get_by_text(third.number).wait_for()
    assert await page.evaluate("document.activeElement.id") == "detail-title"
    await page.keyboard.press("Escape")
    assert await page.evaluate("document.activeElement.getAttribute('aria-label')") == f"Open {third.number} · Harbour Client 03"
    await _tab_to(page, "Approve 1 selected", back=True)
    await page.keyboard.press("Enter")
    await page.get_by_role("dialog").wait_for()
    # The dialog keeps the focus (Tab goes round its controls); Escape gives it back to the button.
    for _ in range(6):
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.closest('#approve-dialog') !== null")
    await page.keyboard.press("Escape")
    await page.get_by_role("dialog").wait_for(state="hidden")
    assert await page.evaluate("document.activeElement.id") == "approve-selected"
    await page.keyboard.press("Enter")
    await page.get_by_role("dialog").wait_for()
    await _tab_to(page, "Approve", limit=10)
    await page.keyboard.press("Enter")
    await page.locator("#approval-results").get_by_text("1 invoice approved.").wait_for()
    await page.wait_for_timeout(100)  # the dialog's close event, after the answer took the focus
    assert await page.evaluate("document.activeElement.id") == "approval-results"
    assert (await Invoice.get(id=third.id)).status == "APPROVED"


async def _axe(page) -> list[dict]:
    await page.add_script_tag(content=AXE.read_text())
    found = await page.evaluate("""async () => (await axe.run(document, {runOnly: {type: "tag",
      values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})).violations.map(v => ({id: v.id,
      nodes: v.nodes.map(n => n.target.join(" ") + ": " + n.failureSummary)}))""")
    return found


async def test_axe_finds_no_violation_contrast_included_on_every_view(browser, site):
    made = await _month()
    # axe-core is the test's script, not the page's: the page's policy would refuse it.
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    try:
        await page.goto(site + "/console")
        await page.locator("#email").wait_for()
        assert await _axe(page) == []
        await _sign_in(page, site, *made.users["owner"])
        await _september(page)
        assert await _axe(page) == []
        await _approval(page)
        await page.get_by_role("button", name=f"Open {made.warned.number} ·", exact=False).click()
        await page.locator("#detail").get_by_text("Zero total", exact=False).wait_for()
        assert await _axe(page) == []
        await page.get_by_role("link", name="Settings").click()
        await page.locator("#settings[data-ready]").wait_for()
        assert await _axe(page) == []
    finally:
        await context.close()


# --- Serving (no browser) ------------------------------------------------------------------------


def test_the_console_loads_only_pinned_files_checked_by_the_browser():
    pinned = json.loads(pages.PAGES.joinpath("vendor.json").read_text())["packages"]
    integrity = {f"vendor/{spec}/{name}": value for spec, pin in pinned.items() for name, value in pin["files"].items()}
    html = pages.CONSOLE.path.read_text()
    vendored = [name for name in pages.CONSOLE.assets() if name.startswith("vendor/")]
    assert vendored == ["vendor/graphql-ws@6.4.2/umd/graphql-ws.min.js"]
    assert f'integrity="{integrity[vendored[0]]}"' in html
    assert pages.CONSOLE.missing_assets() == []
    # axe-core is pinned for the tests alone: no page names it, so it is never served.
    assert not any("axe" in name for page in (pages.CONSOLE, pages.PORTAL) for name in page.assets())


@pytest.mark.parametrize("environment", ["development", "production"])
async def test_the_console_is_served_with_the_pages_policy(settings, redis, environment):
    from invoicing.app import create_app

    application = create_app(settings.model_copy(update={"environment": environment}))
    application.state.redis = redis
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t") as http:
        console = await http.get("/console")
        files = [await http.get(f"/pages/{name}") for name in sorted(pages.CONSOLE.assets())]
        axe = await http.get("/pages/vendor/axe-core@4.10.3/axe.min.js")
    assert console.status_code == 200 and console.headers["content-security-policy"] == pages.PORTAL_POLICY
    assert "trusted-types 'none'" in console.headers["content-security-policy"]
    assert [r.status_code for r in files] == [200] * len(files) and len(files) == 11
    # What it shares with the portal is one file each, served to both.
    assert {"pages-api.js", "pages-base.css"} <= pages.CONSOLE.assets() & pages.PORTAL.assets()
    assert axe.status_code == 404
