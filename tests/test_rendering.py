"""Rendering: the view to HTML (pure), then HTML to PDF in a real Chromium, where the HTML
is treated as hostile: nothing may leave the browser, no file may be read, no script may run."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from pypdf import PdfReader

from jobs.locales import format_date, format_money, format_price, format_quantity
from jobs.pdf import DEBIAN_CHROMIUM, PdfRenderer, browser_environment, chromium_executable, launch_options
from jobs.rendering import TEMPLATE_VERSION, render_invoice_html, sample_view

SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
MARKER = "VISIBLE-MARKER-7351"
PASSWD = "root:x:0:0"


def pdf_text(pdf: bytes) -> str:
    """The PDF's text with whitespace collapsed, so that wrapped lines still match."""
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def page_texts(pdf: bytes) -> list[str]:
    return [" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(pdf)).pages]


def hostile_view(text: str) -> dict:
    """The sample view with `text` in every field a customer or an MSP can type."""
    view = sample_view()
    msp, customer = view["msp"], view["customer"]
    msp["company_name"] = f"Acme {text}"
    msp["address_lines"] = [text, f"Street {text}"]
    msp["business_fields"] = [{"key": text, "value": text}]
    msp["banking_fields"] = [{"key": f"IBAN {text}", "value": text}]
    customer["name"] = text
    customer["official_company_name"] = f"Customer {text}"
    customer["address_lines"] = [text]
    customer["business_fields"] = [{"key": text, "value": text}]
    customer["po_number"] = text
    customer["billing_emails"] = [text]
    for line in view["lines"]:
        line.update(description=text, provider=text, service=text, unit=text)
    for row in view["adjustments"] + view["charges"]:
        row["description"] = text
    view["notes"] = text
    return view


@pytest.fixture(scope="module")
async def renderer(settings):
    async with PdfRenderer(settings, pool_size=2) as pdf:
        yield pdf


@pytest.fixture
async def spy():
    """A real HTTP server on 127.0.0.1 that records every connection and request line."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append("connection")
        try:
            line = await asyncio.wait_for(reader.readline(), 2)
            seen.append(line.decode(errors="replace").strip())
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 14\r\n\r\n<p>LEAKED</p>\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", seen
    server.close()
    await server.wait_closed()


class Traffic:
    """The requests the renderer's pages made, as Playwright reports them on their way to the
    product's guard, and which of them have ended (answered, refused or failed)."""

    def __init__(self) -> None:
        self.asked: list = []
        self.ended: list = []

    def paths(self, url: str) -> set[str]:
        return {request.url.removeprefix(url) for request in self.asked if request.url.startswith(url)}

    async def settled(self, url: str, paths: set[str], timeout: float = 30) -> None:
        """Until the pages have asked for each of `paths` under `url` and every request of theirs
        to `url` has ended: one the guard let through has reached the spy by then, since it
        ends only once the spy has answered."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not (paths <= self.paths(url) and not self.open(url)):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"asked for {sorted(self.paths(url))}, still open {self.open(url)}")
            await asyncio.sleep(0.01)

    def open(self, url: str) -> list[str]:
        return [request.url for request in self.asked
                if request.url.startswith(url) and not any(request is done for done in self.ended)]


@pytest.fixture
async def traffic(renderer):
    seen = Traffic()
    context = renderer._context

    def asked(request) -> None:
        seen.asked.append(request)

    def ended(request) -> None:
        seen.ended.append(request)

    handlers = {"request": asked, "requestfinished": ended, "requestfailed": ended}
    for event, handler in handlers.items():
        context.on(event, handler)
    yield seen
    for event, handler in handlers.items():
        context.remove_listener(event, handler)


# -- HTML ---------------------------------------------------------------------------------


def test_every_field_is_escaped():
    html = render_invoice_html(hostile_view(SCRIPT))

    assert "<script" not in html
    assert ESCAPED_SCRIPT in html
    assert "Acme " + ESCAPED_SCRIPT in html
    assert "Customer " + ESCAPED_SCRIPT in html


def test_quotes_cannot_leave_an_attribute():
    view = sample_view()
    view["msp"]["logo_data_url"] = 'data:image/png;base64,x" onerror="alert(1)'

    html = render_invoice_html(view)

    assert 'onerror="alert(1)' not in html
    assert "x&#34; onerror=&#34;alert(1)" in html


@pytest.mark.parametrize("logo", ["http://127.0.0.1:9/logo.png", "file:///etc/passwd", "javascript:alert(1)"])
def test_a_logo_that_is_not_a_data_image_is_left_out(logo):
    view = sample_view()
    view["msp"]["logo_data_url"] = logo

    html = render_invoice_html(view)

    assert logo not in html
    assert "<img" not in html


def test_html_carries_the_invoice():
    view = sample_view()

    html = render_invoice_html(view)

    assert view["template_version"] == TEMPLATE_VERSION
    assert view["msp"]["logo_data_url"] in html
    for text in (
        "INV-2024-0042", "Northwind Cloud Services GmbH", "Friedrichstraße 68", "DE 298 114 537",
        "Contoso Retail Europe B.V.", "Herengracht 182", "NL 8531 42 976 B01", "PO-77821",
        "1 October 2024", "31 October 2024", "Net 30", "September 2024", "1 September 2024",
        "30 September 2024", "AWS Activate credit", "-150.00", "Managed services fee 8% (Azure, GCP)",
        "VAT 19%", "229.74", "Support plan", "1,209.17", "EUR 1,483.91",
        "1 USD = 0.921 EUR", "DE89 3704 0044 0532 0130 00", "COBADEFFXXX",
        "2,184 Hrs", "0.1766", "385.69", "1,250,000 vCPU-s", "0.0000221",
    ):
        assert text in html, text
    for line in view["lines"]:
        assert line["description"] in html
        assert line["provider"] in html and line["service"] in html


def test_optional_parts_are_left_out():
    view = sample_view()
    view.update(exchange=None, notes=None, adjustments=[], charges=[], payment_terms_days=None)
    view["msp"]["logo_data_url"] = None
    view["customer"]["po_number"] = None
    view["lines"][0].update(quantity=None, unit=None, unit_price=None)

    html = render_invoice_html(view)

    for absent in ("converted from", "Notes", "Adjustments", "Net ", "PO number", "<img"):
        assert absent not in html


def test_zero_day_terms_read_due_on_receipt():
    view = sample_view()
    view["payment_terms_days"] = 0

    assert "Due on receipt" in render_invoice_html(view)


def test_a_missing_field_is_an_error_not_a_blank():
    view = sample_view()
    del view["customer"]["official_company_name"]

    with pytest.raises(Exception, match="official_company_name"):
        render_invoice_html(view)


def test_an_unknown_template_version_is_refused():
    with pytest.raises(ValueError, match="template version"):
        render_invoice_html(dict(sample_view(), template_version="../../etc/passwd"))


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1234.56", "EUR", "1,234.56"),
        ("1234.5", "USD", "1,234.50"),
        ("-1234.56", "USD", "-1,234.56"),
        ("0", "USD", "0.00"),
        ("-0.00", "USD", "0.00"),
        ("1234567", "JPY", "1,234,567"),
        ("-12.345", "KWD", "-12.345"),
    ],
)
def test_money(amount, currency, expected):
    assert format_money(amount, currency) == expected


def test_prices_quantities_and_dates():
    assert format_price("0.0000221", "USD") == "0.0000221"
    assert format_price("3", "USD") == "3.00"
    assert format_price("1500", "JPY") == "1,500"
    assert format_quantity("1250000") == "1,250,000"
    assert format_quantity("4210.500") == "4,210.5"
    assert format_quantity("1E+3") == "1,000"
    assert format_date("2024-10-01") == "1 October 2024"
    assert format_date("2024-02-29") == "29 February 2024"


# -- Browser set-up -----------------------------------------------------------------------


def test_chromium_is_chosen_in_order(settings, tmp_path):
    managed = tmp_path / "chrome"
    managed.write_text("")

    assert chromium_executable(settings.model_copy(update={"chromium_path": "/opt/c"}), str(managed)) == "/opt/c"
    assert chromium_executable(settings, str(managed)) == str(managed)
    assert chromium_executable(settings, str(tmp_path / "not-installed")) == DEBIAN_CHROMIUM


def test_the_browser_gets_its_own_environment(settings):
    env = browser_environment(settings)

    assert set(env) == {"HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"}
    for folder in env.values():
        assert Path(folder).is_relative_to(settings.data_dir.resolve() / "chromium")
        assert Path(folder).is_dir()


@dataclass
class _Seen:
    cmdline: list[str]
    uids: tuple[int, int]
    status: str
    user_namespace: str


def _chromium_processes() -> list[_Seen]:
    """This test process's Chromium processes (Playwright's driver starts them), each read at
    once; one that exits meanwhile (a closed page's renderer) is left out."""
    found = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error, OSError):
            cmdline = process.cmdline()
            if not any("chrom" in part for part in cmdline[:1]):
                continue
            uids = process.uids()
            with open(f"/proc/{process.pid}/status") as proc:
                status = proc.read()
            found.append(_Seen(cmdline, (uids.real, uids.effective), status, os.readlink(f"/proc/{process.pid}/ns/user")))
    return found


async def test_chromium_prints_inside_its_sandbox_and_never_as_root(renderer):
    """No `--no-sandbox`; a worker that is root starts Chromium as CHROMIUM_USER; its renderers
    (where an invoice's HTML is parsed) run under seccomp in user namespaces of their own."""
    assert (await renderer.render(render_invoice_html(sample_view()))).startswith(b"%PDF-")
    processes = _chromium_processes()
    assert processes
    for process in processes:
        assert "--no-sandbox" not in process.cmdline
        if os.geteuid() == 0:
            assert process.uids[0] != 0 and process.uids[1] != 0
    browser = next(p for p in processes if not any(a.startswith("--type=") for a in p.cmdline))
    renderers = [p for p in processes if "--type=renderer" in p.cmdline]
    assert renderers
    for process in renderers:
        assert re.search(r"^Seccomp:\s+2$", process.status, re.M), "a renderer without its seccomp filter"
        assert process.user_namespace != browser.user_namespace


def test_a_root_worker_needs_an_existing_chromium_user(settings):
    if os.geteuid() != 0:
        pytest.skip("only a worker running as root starts Chromium as another user")
    with pytest.raises(RuntimeError, match="no user of this system"):
        launch_options(settings.model_copy(update={"chromium_user": "no-such-user-here"}))
    with pytest.raises(RuntimeError, match="must not be root"):
        launch_options(settings.model_copy(update={"chromium_user": "root"}))
    assert launch_options(settings.model_copy(update={"chromium_sandbox": False}))["chromium_sandbox"] is False


# -- PDF ----------------------------------------------------------------------------------


async def test_pdf_shows_the_invoice(renderer):
    view = sample_view()

    pdf = await renderer.render(render_invoice_html(view))

    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf)
    for expected in ("INV-2024-0042", "Contoso Retail Europe B.V.", "EUR 1,483.91", "PO-77821", "Net 30"):
        assert expected in text
    for line in view["lines"]:
        assert line["description"] in text


async def test_a_long_invoice_repeats_the_table_header(renderer):
    view = sample_view()
    view["lines"] = [dict(view["lines"][0], description=f"Line item {n:03d}") for n in range(200)]

    pdf = await renderer.render(render_invoice_html(view))

    pages = page_texts(pdf)
    assert len(pages) > 1
    with_items = [text for text in pages if "Line item" in text]
    assert len(with_items) > 1
    assert all("UNIT PRICE" in text for text in with_items)
    assert all(f"Line item {n:03d}" in " ".join(pages) for n in range(200))


async def test_fields_with_markup_stay_text_and_fetch_nothing(renderer, spy, traffic):
    url, seen = spy
    payloads = [
        f"<img src={url}/x>",
        f"<link rel=stylesheet href={url}/css>",
        "<iframe src=file:///etc/passwd></iframe>",
        f'<meta http-equiv="refresh" content="0;url={url}/r">',
        "<object data=file:///etc/passwd></object>",
        f"<div style=\"background:url('{url}/bg')\">x</div>",
        "x</style><style>body{background:url(" + url + "/css-url)}</style>",
    ]
    view = hostile_view(" ".join(payloads))
    # A request of the test's own, after every field: once it has ended, so has any the fields
    # started while the page loaded. (A meta refresh that fired later is the subject of
    # test_a_meta_refresh_that_fired_leaves_the_page_printable.)
    html = render_invoice_html(view).replace("</body>", f"<img src={url}/probe></body>")

    pdf = await renderer.render(html)
    await traffic.settled(url, {"/probe"})

    assert traffic.paths(url) == {"/probe"}, "no field became markup"
    assert seen == []
    text = pdf_text(pdf)
    assert "INV-2024-0042" in text
    assert f"<img src={url}/x>" in text
    assert PASSWD not in text


RAW_ATTACKS = {
    "img": "<img src={url}/img>",
    "img-srcset": '<img srcset="{url}/srcset 1x">',
    "svg-image": '<svg width="10" height="10"><image href="{url}/svg"/></svg>',
    "stylesheet": "<link rel=stylesheet href={url}/css>",
    "prefetch": "<link rel=prefetch href={url}/prefetch>",
    "preload": "<link rel=preload as=image href={url}/preload>",
    "preconnect": "<link rel=preconnect href={url}/><link rel=dns-prefetch href={url}/>",
    "css-url": "<style>body {{ background: url({url}/css-url) }}</style>",
    "css-import": "<style>@import url({url}/import);</style>",
    "font-face": "<style>@font-face {{ font-family: x; src: url({url}/font) }} p {{ font-family: x }}</style>",
    "inline-style-url": "<div style=\"background-image: url('{url}/inline')\">.</div>",
    "iframe-http": "<iframe src={url}/iframe></iframe>",
    "iframe-file": "<iframe src=file:///etc/passwd></iframe>",
    "object-file": "<object data=file:///etc/passwd></object>",
    "embed": "<embed src={url}/embed>",
    "media": "<video src={url}/video></video><audio src={url}/audio></audio>",
    "meta-refresh": '<meta http-equiv="refresh" content="0;url={url}/refresh">',
    "meta-refresh-file": '<meta http-equiv="refresh" content="0;url=file:///etc/passwd">',
    "base-href": "<base href={url}/base/><img src=relative.png>",
}
# What each attack has the page ask for (and the guard refuse): the positive sign that the
# attempt was made and is over. The file: attacks do not aim at the spy: their PDF shows what
# they read.
ASKED = {
    "img": {"/img"}, "img-srcset": {"/srcset"}, "svg-image": {"/svg"}, "stylesheet": {"/css"},
    "prefetch": {"/prefetch"}, "preload": {"/preload"}, "css-url": {"/css-url"},
    "css-import": {"/import"}, "font-face": {"/font"}, "inline-style-url": {"/inline"},
    "iframe-file": set(), "object-file": set(), "meta-refresh": {"/refresh"}, "meta-refresh-file": set(),
    "base-href": {"/base/relative.png"},
}
# Those with no sign to wait for: a preconnect or dns-prefetch asks the page for nothing (the
# browser process resolves the host itself, refused by the host resolver rules, and no event
# says when), and Chromium asks for an iframe, an embed or media only some of the time (after
# earlier renders on the same pool, not at all), so their absence proves nothing either way.
UNSIGNALLED = {"preconnect", "iframe-http", "embed", "media"}


@pytest.mark.parametrize("attack", list(RAW_ATTACKS))
async def test_raw_html_cannot_reach_out_or_read_files(renderer, spy, traffic, attack):
    url, seen = spy
    html = f"<!DOCTYPE html><html><head>{RAW_ATTACKS[attack].format(url=url)}</head><body><p>{MARKER}</p></body></html>"

    pdf = await renderer.render(html)
    # A meta refresh or a prefetch fires after load: waited for until it has ended.
    if attack in UNSIGNALLED:
        await asyncio.sleep(0.3)  # no sign to wait for (see UNSIGNALLED): the time it takes, guessed
    else:
        await traffic.settled(url, ASKED[attack])
    again = await renderer.render(f"<p>{MARKER} again</p>")

    assert seen == []
    text = pdf_text(pdf)
    assert MARKER in text
    assert PASSWD not in text
    assert "LEAKED" not in text
    assert f"{MARKER} again" in pdf_text(again)


async def test_all_attacks_at_once_in_the_body(renderer, spy, traffic):
    url, seen = spy
    body = "".join(attack.format(url=url) for attack in RAW_ATTACKS.values())

    pdf = await renderer.render(f"<html><body><p>{MARKER}</p>{body}</body></html>")
    # A <base> or a meta refresh in the body is not obeyed; those of UNSIGNALLED give no sign.
    await traffic.settled(url, set().union(*ASKED.values()) - {"/base/relative.png", "/refresh"})
    await asyncio.sleep(0.3)  # for UNSIGNALLED: the time they take, guessed

    assert seen == []
    text = pdf_text(pdf)
    assert MARKER in text and PASSWD not in text


@pytest.mark.parametrize(
    "script",
    [
        "<script>document.body.innerHTML='JS RAN'</script>",
        "<img src=data:, onerror=\"document.body.innerHTML='JS RAN'\">",
        "<body onload=\"document.body.innerHTML='JS RAN'\">",
    ],
)
async def test_javascript_does_not_run(renderer, script):
    pdf = await renderer.render(f"<html><body><p>{MARKER}</p>{script}</body></html>")

    text = pdf_text(pdf)
    assert MARKER in text
    assert "JS RAN" not in text


async def test_pages_are_reused_and_a_failed_page_is_replaced(settings, monkeypatch):
    html = render_invoice_html(sample_view())
    async with PdfRenderer(settings, pool_size=2) as pdf:
        results = await asyncio.gather(*(pdf.render(html) for _ in range(20)))

        assert all(result.startswith(b"%PDF-") for result in results)
        assert (pdf.renders, pdf.pages_created, pdf.pages_replaced) == (20, 2, 0)

        monkeypatch.setattr("jobs.pdf.RENDER_TIMEOUT_MS", 1)
        with pytest.raises(Exception, match="Timeout"):
            await pdf.render(html)
        monkeypatch.undo()

        results = await asyncio.gather(*(pdf.render(html) for _ in range(4)))
        assert all(result.startswith(b"%PDF-") for result in results)
        assert (pdf.renders, pdf.pages_created, pdf.pages_replaced) == (24, 3, 1)


async def test_a_crashed_browser_is_started_again(settings):
    async with PdfRenderer(settings, pool_size=1) as pdf:
        await pdf._browser.close()  # as if Chromium had died under the worker

        result = await pdf.render(f"<p>{MARKER}</p>")

        assert MARKER in pdf_text(result)
        assert (pdf.pages_created, pdf.renders) == (2, 1)


async def test_a_render_cut_short_gives_its_page_back(settings):
    async with PdfRenderer(settings, pool_size=1) as pdf:
        task = asyncio.create_task(pdf.render(render_invoice_html(sample_view())))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        result = await asyncio.wait_for(pdf.render(f"<p>{MARKER}</p>"), 10)

        assert MARKER in pdf_text(result)


def test_the_view_is_not_changed_by_rendering():
    view = sample_view()
    before = copy.deepcopy(view)

    render_invoice_html(view)

    assert view == before


async def test_a_meta_refresh_that_fired_leaves_the_page_printable(renderer, spy, traffic):
    # render() prints right after load, usually before the refresh timer fires; print later
    # on a pool page to see what a refresh that won the race would leave behind.
    url, seen = spy
    page = await renderer._pool.get()
    try:
        await page.set_content(
            f'<meta http-equiv="refresh" content="0;url={url}/refresh"><p>{MARKER}</p>', wait_until="load"
        )
        await traffic.settled(url, {"/refresh"})  # it fired, and the guard answered it
        pdf = await page.pdf(format="A4")
    finally:
        renderer._pool.put_nowait(page)

    assert seen == []
    assert MARKER in pdf_text(pdf)


# -- Several invoices per print job ------------------------------------------------------

def _views(count: int) -> list[dict]:
    views = []
    for n in range(count):
        view = sample_view()
        view["number"] = f"INV-2024-{n + 1:04d}"
        view["customer"]["official_company_name"] = f"Customer {n + 1} B.V."
        # Invoices of one, two and more pages side by side.
        view["lines"] = [dict(view["lines"][0], description=f"Line {n + 1}.{i}") for i in range(1 + 25 * (n % 3))]
        views.append(view)
    return views


async def test_invoices_printed_together_each_get_their_own_pdf(settings):
    views = _views(5)
    htmls = [render_invoice_html(view) for view in views]
    async with PdfRenderer(settings, pool_size=1) as alone:
        single = [await alone.render(html) for html in htmls]
    async with PdfRenderer(settings, pool_size=1, batch_size=4) as together:
        first = await asyncio.gather(*(together.render(html, group="org") for html in htmls))
        again = await asyncio.gather(*(together.render(html, group="org") for html in htmls))
        assert together.batches >= 2  # the renders waited for the one page, and went together
    for view, pdf, own in zip(views, first, single):
        reader = PdfReader(io.BytesIO(pdf))
        text = pdf_text(pdf)
        assert len(reader.pages) == len(PdfReader(io.BytesIO(own)).pages)
        assert view["number"] in text and view["customer"]["official_company_name"] in text
        others = [v for v in views if v is not view]
        assert not any(v["number"] in text or v["customer"]["official_company_name"] in text for v in others)
        assert reader.metadata.title == f"Invoice {view['number']}" and reader.metadata.creation_date is None
    # Printed in the same company, an invoice's PDF is the same bytes again.
    assert first == list(again)


async def test_other_organizations_and_documents_that_do_not_split_print_alone(settings):
    html = render_invoice_html(sample_view())
    # Its stylesheet hides the anchors that mark where each document begins: no destinations.
    no_anchors = "<!DOCTYPE html><html><head><style>a { display: none }</style></head><body><p>Plain</p></body></html>"
    async with PdfRenderer(settings, pool_size=1, batch_size=8) as renderer:
        pdfs = await asyncio.gather(*(renderer.render(html, group=n) for n in range(3)))
        assert renderer.batches == 0
        plain = await asyncio.gather(*(renderer.render(no_anchors, group="org") for _ in range(3)))
        assert renderer.batches == 0
    assert all("INV-2024-0042" in pdf_text(pdf) for pdf in pdfs)
    assert all(pdf_text(pdf).strip() == "Plain" for pdf in plain)
