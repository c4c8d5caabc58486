"""The product's pages in a real browser: GraphiQL and the customer portal, served by a real
uvicorn server on a free port, driven by Playwright through the Chromium the renderer uses.

The browser cannot resolve any host name (as on a machine without internet access): every
request must go to the server's own origin, and none is attempted elsewhere. Set
SCREENSHOT_DIR=docs/images to refresh the manual's screenshots."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from strawberry.relay import to_base64

from infra import storage
from invoicing import pages
from jobs.pdf import launch_options
from models import Invoice, InvoiceLineItem, InvoiceRevision
from models.auth import Token, TokenKind, hash_password
from tests import factories as f
from tests.conftest import free_port
from tests.graphql import gql, subscribed

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT_DIR = os.environ.get("SCREENSHOT_DIR")
# No host name resolves, the loopback address being the only way out.
BROWSER_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
# Every violation of a page's Content-Security-Policy, kept where the test can read it.
WATCH_POLICY = """document.addEventListener("securitypolicyviolation", (e) => {
  (window.__violations = window.__violations || []).push(e.violatedDirective + " " + e.blockedURI);
});"""
PASSWORD = "Portal pass phrase 7"
PDF = b"%PDF-1.7\n% the portal's test invoice\n%%EOF\n"
RECORD = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) { __typename } }"""
REFUND = """mutation($input: RefundPaymentInput!) { refundPayment(input: $input) { __typename
  ... on PaymentRefunded { refund { id } } } }"""


# --- The server and the browser ------------------------------------------------------------

# The app serving each running site, by origin: a test waits on its event hub.
SITES: dict[str, object] = {}


@contextlib.asynccontextmanager
async def _site(settings, redis, environment: str = "development"):
    """The app on a free loopback port, with PUBLIC_URL set to it (signed links point back
    to it): its origin."""
    import uvicorn

    from invoicing.app import create_app

    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    application = create_app(settings.model_copy(update={"environment": environment, "public_url": origin}))
    application.state.redis = redis
    server = uvicorn.Server(uvicorn.Config(
        application, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
        ws_max_size=settings.ws_max_message_bytes, timeout_graceful_shutdown=5,
    ))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    SITES[origin] = application
    try:
        yield origin
    finally:
        del SITES[origin]
        server.should_exit = True
        await task
        await application.state.events.close()


@pytest.fixture
async def site(settings, redis):
    async with _site(settings, redis) as origin:
        yield origin


@pytest.fixture(scope="module")
async def browser(settings):
    import pwd
    import shutil
    import tempfile

    from playwright.async_api import async_playwright

    # Downloads land in a folder the browser's user may reach and write (as root it runs as
    # CHROMIUM_USER): pytest's own temporary folders are the test user's alone.
    downloads = tempfile.mkdtemp(prefix="invoicing-downloads-")
    if os.geteuid() == 0:
        user = pwd.getpwnam(settings.chromium_user)
        os.chown(downloads, user.pw_uid, user.pw_gid)
    async with async_playwright() as playwright:
        options = launch_options(settings, playwright.chromium.executable_path)
        options["args"] = [arg for arg in options["args"] if not arg.startswith("--host-resolver-rules")] + BROWSER_ARGS
        chromium = await playwright.chromium.launch(**options, headless=True, downloads_path=downloads)
        yield chromium
        await chromium.close()
    shutil.rmtree(downloads, ignore_errors=True)


@dataclass
class Visit:
    """A page and everything it asked for and received."""

    page: object
    origin: str
    requests: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        """Requests and sockets to anywhere but the origin (data: URLs are no requests)."""
        own = (self.origin + "/", self.origin.replace("http", "ws", 1) + "/")
        return [url for url in self.requests + self.sockets if not url.startswith(own) and not url.startswith("data:")]

    async def violations(self) -> list[str]:
        return await self.page.evaluate("window.__violations || []")


@pytest.fixture
async def visit(browser, site):
    context = await browser.new_context(
        viewport={"width": 1200, "height": 720}, locale="en-GB", timezone_id="Europe/London",
        accept_downloads=True, service_workers="block",
    )
    await context.add_init_script(WATCH_POLICY)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    seen = Visit(page, site)

    async def keep(route):
        # Fetched here and handed to the page, so every answer's body is read, even one the
        # page has left behind by the time a response listener would ask for it.
        response = await route.fetch()
        seen.received.append(await response.text())
        await route.fulfill(response=response)

    def on_socket(socket):
        seen.sockets.append(socket.url)
        socket.on("framereceived", lambda payload: seen.received.append(str(payload)))

    page.on("request", lambda request: seen.requests.append(request.url))
    await page.route(lambda url: url.startswith(site + "/graphql"), keep)
    page.on("websocket", on_socket)
    yield seen
    # A fetch still under way when the context closes would fail in its handler, after the test.
    await page.unroute_all(behavior="ignoreErrors")
    await context.close()


async def _screenshot(page, name: str) -> None:
    if SCREENSHOT_DIR:
        await page.screenshot(path=str(Path(SCREENSHOT_DIR) / name), animations="disabled")


async def _until(condition, what: str, timeout: float = 15):
    for _ in range(int(timeout / 0.1)):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# --- The data -------------------------------------------------------------------------------

@dataclass
class Portal:
    email: str
    september: object  # approved, with a PDF, unpaid
    august: object  # approved, paid, then partly refunded
    draft: object  # the customer's, not approved yet
    theirs: object  # another customer's, approved


async def _portal(world, settings, origin) -> Portal:
    customer = world.users["customer"]
    customer.password_hash = hash_password(PASSWORD)
    await customer.save()
    for account in (world.account, world.other_account):
        account.currency = "EUR"
        await account.save()
    september, august, october = [await f.billing_period(world.org, date(2024, month, 1)) for month in (9, 8, 10)]
    made = Portal(
        email=customer.email,
        september=await _issued(settings, world.account, september, "INV-2024-0007", date(2024, 10, 1), pdf=PDF),
        august=await _issued(settings, world.account, august, "INV-2024-0003", date(2024, 9, 1)),
        draft=await _issued(settings, world.account, october, "INV-2024-0011", date(2024, 11, 1),
                            status="AWAITING_APPROVAL", pdf=PDF),
        theirs=await _issued(settings, world.other_account, september, "INV-2024-0008", date(2024, 10, 1), pdf=PDF),
    )
    async with httpx.AsyncClient(base_url=origin) as http:
        paid = await _pay(http, world, made.august, "30.75", "2024-09-05", "CARD")
        assert paid["data"]["recordPayment"]["__typename"] == "PaymentRecorded", paid
        payment = (await gql(http, "query($n: String!) { invoice(number: $n) { payments { id } } }",
                             {"n": "INV-2024-0003"}, token=world.tokens["owner"]))["data"]["invoice"]["payments"][0]
        refunded = await gql(http, REFUND, {"input": {"paymentId": payment["id"], "amount": "5.00",
                                                      "refundedOn": "2024-09-06"}}, token=world.tokens["owner"])
        assert refunded["data"]["refundPayment"]["__typename"] == "PaymentRefunded", refunded
    return made


async def _issued(settings, account, period, number: str, issue_date: date, *, status="APPROVED", pdf=None):
    """An invoice as generation (and approval) leave it: 30.75 in two lines, due after 30 days."""
    invoice = await f.invoice(account, period, number=number)
    pdf_path = None
    if pdf is not None:
        pdf_path = f"invoices/{invoice.id}/1.pdf"
        storage.save(settings, pdf_path, pdf)
    total, due = Decimal("30.75"), issue_date + timedelta(days=account.payment_terms_days)
    revision = await InvoiceRevision.create(
        invoice=invoice, revision=1, template_version="1", currency=invoice.currency, cost_currency="USD",
        subtotal=total, adjustments=0, charges=0, total=total, issue_date=issue_date, due_date=due,
        pdf_path=pdf_path, snapshot={},
    )
    await InvoiceLineItem.bulk_create([
        InvoiceLineItem(revision=revision, position=1, description="Compute", amount=Decimal("10.25")),
        InvoiceLineItem(revision=revision, position=2, description="Storage", amount=Decimal("20.50")),
    ])
    await Invoice.filter(id=invoice.id).update(
        current_revision_id=revision.id, subtotal=total, total=total, issue_date=issue_date, due_date=due,
        status=status, approved_at=datetime.now(UTC) if status == "APPROVED" else None,
    )
    return await Invoice.get(id=invoice.id)


async def _pay(http, world, invoice, amount: str, paid_on: str, method: str = "BANK_TRANSFER"):
    variables = {"input": {"invoiceId": to_base64("Invoice", str(invoice.id)), "amount": amount, "paidOn": paid_on,
                           "method": method, "reference": "BANK-REF-INTERNAL"}}
    return await gql(http, RECORD, variables, token=world.tokens["owner"])


async def _rows(page) -> list[list[str]]:
    """The invoice table as it reads: one list of cell texts a row."""
    return await page.eval_on_selector_all(
        "#invoice-rows tr", "rows => rows.map(r => [...r.children].map(c => c.innerText.trim()))"
    )


async def _sign_in(page, origin: str, email: str, password: str) -> None:
    await page.goto(origin + "/portal")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


# --- GraphiQL --------------------------------------------------------------------------------

async def test_graphiql_loads_from_the_origin_alone_and_runs_a_query(visit, world):
    page = visit.page
    await page.goto(visit.origin + "/graphql")
    await page.locator(".graphiql-execute-button").wait_for()
    # As a person would: the query typed over the welcome text, the token in the Headers tab.
    await page.locator(".graphiql-query-editor .CodeMirror").click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text("{ viewer { scope } }")
    await page.get_by_text("Headers", exact=True).click()
    await page.locator(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror").click()
    await page.keyboard.insert_text(json.dumps({"Authorization": f"Bearer {world.tokens['owner']}"}))
    await page.locator(".graphiql-execute-button").click()
    result = page.locator(".result-window")
    await result.get_by_text('"OWNER"').wait_for()
    # (CodeMirror shows its indentation as no-break spaces.)
    assert json.loads((await result.inner_text()).replace("\xa0", " ")) == {"data": {"viewer": {"scope": "OWNER"}}}
    await _screenshot(page, "graphiql.png")

    assert visit.foreign() == []
    assert await visit.violations() == []
    loaded = [url.removeprefix(visit.origin) for url in visit.requests]
    assert "/pages/vendor/graphiql@3.8.3/graphiql.min.js" in loaded and "/pages/graphiql.js" in loaded


# --- The portal ------------------------------------------------------------------------------

async def test_the_portal_shows_the_customers_approved_invoices_their_pdf_and_payments_live(visit, world, settings):
    page, origin = visit.page, visit.origin
    made = await _portal(world, settings, origin)
    await _sign_in(page, origin, made.email, PASSWORD)
    await page.get_by_role("heading", name="Your invoices").wait_for()
    await page.get_by_text("Live updates on").wait_for()
    assert await page.get_by_text(world.account.name, exact=True).is_visible()

    # Exactly the customer's approved invoices: not its draft, not another customer's.
    assert await _rows(page) == [
        ["INV-2024-0007", "September 2024", "€30.75", "€30.75", "31 Oct 2024", "Unpaid", "None yet", "None",
         "Download PDF\nLines as CSV"],
        ["INV-2024-0003", "August 2024", "€30.75", "€0.00", "1 Oct 2024", "Partly refunded",
         "Paid €30.75 on 5 Sept 2024 (card)\nRefunded €5.00 on 6 Sept 2024", "None", "PDF not ready yet"],
    ]

    # The PDF, through a freshly signed link of this origin.
    async with page.expect_download() as download:
        await page.get_by_role("button", name="Download INV-2024-0007 as PDF").click()
    pdf = await download.value
    assert pdf.suggested_filename == "INV-2024-0007.pdf"
    assert await asyncio.to_thread(Path(await pdf.path()).read_bytes) == PDF

    # The MSP records payments: the customer's shows at once, without a reload; another
    # customer's never reaches the page.
    await page.evaluate("window.__sameDocument = true")
    await subscribed(SITES[origin], 1)  # the page subscribes once the socket is acknowledged
    async with httpx.AsyncClient(base_url=origin) as http:
        assert (await _pay(http, world, made.theirs, "10.00", "2024-10-09"))["data"]["recordPayment"] == {
            "__typename": "PaymentRecorded"}
        assert (await _pay(http, world, made.september, "30.75", "2024-10-10"))["data"]["recordPayment"] == {
            "__typename": "PaymentRecorded"}
    row = page.locator("#invoice-rows tr", has_text="INV-2024-0007")
    await row.get_by_text("Paid", exact=True).wait_for()
    assert (await _rows(page))[0][3:7] == [
        "€0.00", "31 Oct 2024", "Paid", "Paid €30.75 on 10 Oct 2024 (bank transfer)"
    ]
    assert await page.evaluate("window.__sameDocument") is True
    await _screenshot(page, "portal.png")

    everything = "\n".join(visit.received)
    for hidden in ("INV-2024-0011", "INV-2024-0008", "BANK-REF-INTERNAL", world.other_account.name):
        assert hidden not in everything and hidden not in await page.content()
    assert visit.foreign() == []
    assert await visit.violations() == []

    # Signing out revokes the session's token and leaves nothing of it on screen.
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_text("You are signed out.").wait_for()
    assert not await page.locator("#invoice-rows tr").count()
    assert await page.evaluate("sessionStorage.length") == 0

    async def revoked() -> bool:
        session = await Token.get(user_id=world.users["customer"].id, kind=TokenKind.SESSION)
        return session.revoked_at is not None
    await _until(revoked, "the session's revocation")


async def test_the_portal_says_so_on_a_wrong_password_an_expired_session_and_a_non_customer(visit, world, settings):
    page, origin = visit.page, visit.origin
    made = await _portal(world, settings, origin)

    await _sign_in(page, origin, made.email, "not the password")
    alert = page.locator("#sign-in-message")
    await alert.get_by_text("The e-mail or the password is wrong.").wait_for()
    assert await page.locator("#invoices").is_hidden()
    assert await page.evaluate("document.activeElement.id") == "password", "ready for another try"
    await _screenshot(page, "portal-sign-in.png")

    await page.get_by_label("Password").fill(PASSWORD)
    await page.keyboard.press("Enter")
    await page.get_by_text("Live updates on").wait_for()
    # The session ends on the server (as after its 12 hours); the next action says so.
    now = datetime.now(UTC)
    await Token.filter(user_id=world.users["customer"].id, kind=TokenKind.SESSION).update(
        created_at=now - timedelta(hours=13), expires_at=now - timedelta(hours=1)
    )
    await page.get_by_role("button", name="Download INV-2024-0007 as PDF").click()
    await alert.get_by_text("Your session has expired. Please sign in again.").wait_for()
    assert await page.locator("#invoices").is_hidden() and not await page.locator("#invoice-rows tr").count()
    assert await page.evaluate("sessionStorage.length") == 0

    # A session kept in the tab past its end is not used at all.
    await page.evaluate("""sessionStorage.setItem("invoicing.portal.session",
        JSON.stringify({token: "inv_old", expiresAt: "2024-01-01T00:00:00Z"}))""")
    await page.reload()
    await alert.get_by_text("Your session has expired. Please sign in again.").wait_for()

    # The portal is the customers': an MSP user's session is revoked before anything is read.
    owner = world.users["owner"]
    owner.password_hash = hash_password(PASSWORD)
    await owner.save()
    await _sign_in(page, origin, owner.email, PASSWORD)
    await alert.get_by_text("This portal is for customers.", exact=False).wait_for()

    async def revoked() -> bool:
        session = await Token.get(user_id=owner.id, kind=TokenKind.SESSION)
        return session.revoked_at is not None
    await _until(revoked, "the MSP user's session to be revoked")
    assert "INV-2024-0008" not in "\n".join(visit.received)
    assert visit.foreign() == []
    assert await visit.violations() == []


@pytest.mark.parametrize("path", ["/portal", "/console"])
async def test_the_sign_in_form_says_what_is_missing_and_a_refusal_on_both_pages(visit, world, path):
    """Both pages' sign-in is pages-api.js's: what is missing said and focused, nothing sent;
    a refusal said, the password emptied and focused, the button usable again."""
    page, origin = visit.page, visit.origin
    await page.goto(origin + path)
    alert = page.locator("#sign-in-message")
    focused = "document.activeElement.id"
    await page.get_by_role("button", name="Sign in").click()
    await alert.get_by_text("Enter your e-mail and your password.").wait_for()
    assert await page.evaluate(focused) == "email"
    await page.locator("#email").fill(world.users["customer"].email)
    await page.get_by_role("button", name="Sign in").click()
    assert await page.evaluate(focused) == "password"
    assert not [url for url in visit.requests if url.startswith(origin + "/graphql")], "nothing sent"

    await page.locator("#password").fill("not the password")
    await page.keyboard.press("Enter")
    await alert.get_by_text("The e-mail or the password is wrong.").wait_for()
    assert await alert.get_attribute("class") == "notice error"
    assert await page.locator("#password").input_value() == ""
    assert await page.evaluate(focused) == "password"
    assert await page.get_by_role("button", name="Sign in").is_enabled()
    sent = [json.loads(body) for body in visit.received if '"login"' in body]
    assert sent and sent[-1]["data"]["login"]["__typename"] == "AuthenticationError"
    assert visit.foreign() == []
    assert await visit.violations() == []


# --- Serving (no browser) --------------------------------------------------------------------

@pytest.mark.parametrize("environment", ["development", "production"])
async def test_pages_and_their_files_are_served_with_their_policies(settings, redis, environment):
    from invoicing.app import create_app

    application = create_app(settings.model_copy(update={"environment": environment}))
    application.state.redis = redis
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t") as http:
        portal = await http.get("/portal")
        graphiql = await http.get("/graphql", headers={"Accept": "text/html"})
        portal_files = [await http.get(f"/pages/{name}") for name in sorted(pages.PORTAL.assets())]
        graphiql_script = await http.get("/pages/vendor/graphiql@3.8.3/graphiql.min.js")
        refused = [await http.get(f"/pages/{name}") for name in
                   ("vendor.json", "portal.html", "..%2F..%2Finvoicing%2Fapp.py", "vendor/graphiql@3.8.3/nothing.js")]
    assert portal.status_code == 200 and portal.headers["content-security-policy"] == pages.PORTAL_POLICY
    assert portal.headers["x-frame-options"] == "DENY" and portal.headers["cache-control"] == "no-store"
    for policy in (pages.PORTAL_POLICY, pages.GRAPHIQL_POLICY):
        assert "http" not in policy and "'unsafe-" not in policy and "default-src 'none'" in policy
    assert all(response.status_code == 200 for response in portal_files)
    vendored = next(r for r in portal_files if "/vendor/" in str(r.url))
    assert vendored.headers["cache-control"] == pages.VENDOR_CACHE
    assert vendored.headers["content-security-policy"].startswith("default-src 'none'")
    assert [response.status_code for response in refused] == [404] * 4
    if environment == "development":
        assert graphiql.headers["content-security-policy"] == pages.GRAPHIQL_POLICY
        assert graphiql_script.status_code == 200
    else:
        # GraphiQL is for development only: neither its page nor its files.
        assert graphiql.status_code in (400, 404) and graphiql_script.status_code == 404


def test_every_file_the_pages_load_is_pinned_and_installed():
    pinned = json.loads(pages.PAGES.joinpath("vendor.json").read_text())["packages"]
    integrity = {f"vendor/{spec}/{name}": value for spec, pin in pinned.items() for name, value in pin["files"].items()}
    for page in (pages.PORTAL, pages.GRAPHIQL):
        html = page.path.read_text()
        for tag in re.findall(r"<(?:script|link)\b[^>]*>", html):
            reference = re.search(r'(?:src|href)="/pages/([^"]+)"', tag)
            if reference and reference.group(1).startswith("vendor/"):
                # A third-party file: pinned, and the page checks it (Subresource Integrity).
                assert f'integrity="{integrity[reference.group(1)]}"' in tag, tag
        assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "nothing from another origin"
        assert page.missing_assets() == [], "run scripts/setup.sh: it fetches them"
    assert pages.PORTAL.assets() | pages.GRAPHIQL.assets() >= set(integrity)


def test_a_page_whose_files_are_missing_says_how_to_install_them(tmp_path, monkeypatch):
    shutil.copy(pages.PORTAL.path, tmp_path / "portal.html")
    monkeypatch.setattr(pages, "PAGES", tmp_path)
    response = pages.PORTAL.response()
    assert response.status_code == 503 and b"scripts/setup.sh" in response.body


def test_the_demo_prints_the_console_the_portal_and_its_customer_beside_graphiql(settings, monkeypatch):
    import uvicorn

    from invoicing.cli import servers
    from models.base import Scope
    from models.demo import DemoUser

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    monkeypatch.setattr(servers.signal, "signal", lambda *args: None)
    users = [
        DemoUser("owner@northwind.example", "Owen", Scope.OWNER, "owner-password", "inv_owner"),
        DemoUser("customer@northwind.example", "Chloe", Scope.CUSTOMER, "customer-password", "inv_customer",
                 "Atlas Freight"),
    ]
    with servers.console.capture() as captured:
        servers._serve(settings.model_copy(update={"environment": "development", "public_url": "http://127.0.0.1:8000"}),
                       users)
    lines = captured.get().splitlines()
    at = lines.index("GraphiQL: http://127.0.0.1:8000/graphql")
    assert lines[at + 1] == "Month-end console (owners and viewers): http://127.0.0.1:8000/console"
    assert lines[at + 2] == "Customer portal: http://127.0.0.1:8000/portal"
    assert "customer@northwind.example with the password customer-password (Atlas Freight" in lines[at + 3]
    assert "owner-password" not in captured.get()
