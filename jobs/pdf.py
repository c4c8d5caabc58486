"""Step two of printing an invoice: HTML to PDF in one warm headless Chromium per worker.

The HTML carries text that customers and MSPs typed, so the browser is treated as hostile
ground: JavaScript is off, service workers and downloads are blocked, every request that is
not a data: URL is aborted (a top-level navigation, e.g. a meta refresh, is answered with an
empty 204 instead, because aborting it leaves an error page and so a blank PDF), and host
resolution is mapped to nothing, which also stops the requests the interception never sees
(`<link rel=prefetch>` is fetched by the browser process, past Playwright's routes).

Starting Chromium costs about a second and a fresh page several times a render, so the
browser starts once and a small pool of pages is reused; a page that fails is closed and
replaced by a new one on its next use.

Printing is cheaper by the document than by the page: a print job of eight invoices costs
Chromium about half the CPU per invoice of eight jobs (bench/month_close.py). So when renders
wait for a page (a month closing), the renderer prints those of one organization with the same
template together (`batch_size`): their bodies in one document, each starting on a new page
with an empty anchor that links to itself. Chromium writes a named destination for every
anchor the document links to, which tells the page where each invoice begins (an outline would
too, but only in a tagged PDF, which costs Chromium more than the batching saves). The document
is then split back into one PDF per invoice (pikepdf, on qpdf), each holding only its own pages, with the
invoice's title and no clock in its metadata (the same batch prints the same bytes). Should
anything not line up (another number of destinations than of invoices, a failed print), each
is printed alone as before.

Each document says "Page n of m" on every page in its own language (`page_label`). Chromium's
header and footer templates, and CSS's page counters, count the pages of the whole print job,
which holds several invoices when printing is batched: so the pages are numbered once each
document stands alone, written into its bottom margin with PDF's own Helvetica.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import pwd
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict

from playwright.async_api import Browser, BrowserContext, Page, PdfMargins, Playwright, Route, async_playwright

from infra import metrics
from infra.settings import Settings
from jobs.page_numbers import number_pages

log = logging.getLogger(__name__)

DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"
# /usr/bin/chromium is Debian's wrapper script; the real binary above is preferred.
DEBIAN_CHROMIUM_WRAPPER = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


class PdfOptions(TypedDict):
    """The arguments of `Page.pdf` every invoice is printed with."""

    format: str
    print_background: bool
    margin: PdfMargins


PDF_OPTIONS: PdfOptions = {
    "format": "A4",
    "print_background": True,
    "margin": {"top": "12mm", "right": "12mm", "bottom": "12mm", "left": "12mm"},
}
RENDER_TIMEOUT_MS = 30_000


def chromium_executable(settings: Settings, managed: str | None = None) -> str:
    """The Chromium to launch: `settings.chromium_path`, else the Playwright-managed browser
    (`managed`, the path the running Playwright driver reports) if it is installed, else
    Debian's real binary, else Debian's wrapper."""
    if settings.chromium_path:
        return settings.chromium_path
    for candidate in (managed, DEBIAN_CHROMIUM, DEBIAN_CHROMIUM_WRAPPER):
        if candidate and Path(candidate).is_file():
            return candidate
    raise FileNotFoundError(
        "No Chromium found: set CHROMIUM_PATH, run `playwright install chromium`, "
        "or install Debian's `chromium` package."
    )


def browser_environment(settings: Settings) -> dict[str, str]:
    """The browser's whole environment: its config, cache and home under DATA_DIR/chromium,
    and none of the worker's variables (the database URL and secret key stay out of reach)."""
    root = (settings.data_dir / "chromium").resolve()
    env = {"HOME": root / "home", "XDG_CONFIG_HOME": root / "config", "XDG_CACHE_HOME": root / "cache"}
    for folder in env.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {name: str(folder) for name, folder in env.items()}


class LaunchOptions(TypedDict):
    """The arguments of `BrowserType.launch` that say which Chromium runs, how and as whom."""

    executable_path: str
    args: list[str]
    env: dict[str, str | float | bool]
    # Playwright's own default is off (it adds `--no-sandbox`).
    chromium_sandbox: bool


# Chromium's sandbox (user namespaces and seccomp) cannot start as root. A worker running as
# root starts it as CHROMIUM_USER through this script: setpriv (util-linux) drops to that user,
# and Playwright's pipes (fds 3 and 4) pass through to Chromium. The profile Playwright made as
# root lies in the worker's temporary folder, which that user may not reach: Chromium gets a
# profile of that user's own in /tmp instead (its home and caches in it too, out of DATA_DIR's
# reach: the database, the secret key), removed when it exits.
_AS_USER_SCRIPT = """#!/bin/sh
profile=$(mktemp -d /tmp/invoicing-chromium-XXXXXXXX) || exit 1
chown {uid}:{gid} "$profile"
for arg; do
    shift
    case $arg in
        --user-data-dir=*) set -- "$@" "--user-data-dir=$profile" ;;
        *) set -- "$@" "$arg" ;;
    esac
done
export HOME="$profile" XDG_CONFIG_HOME="$profile/.config" XDG_CACHE_HOME="$profile/.cache"
setpriv --reuid={uid} --regid={gid} --clear-groups -- {executable} "$@"
status=$?
rm -rf "$profile"
exit $status
"""


def launch_options(settings: Settings, managed: str | None = None) -> LaunchOptions:
    """How to launch Chromium: sandboxed unless CHROMIUM_SANDBOX is off, and, when this process
    is root, as CHROMIUM_USER (see `_AS_USER_SCRIPT`)."""
    executable = chromium_executable(settings, managed)
    options = LaunchOptions(
        executable_path=executable, args=list(LAUNCH_ARGS), env=dict(browser_environment(settings)),
        chromium_sandbox=settings.chromium_sandbox,
    )
    if settings.chromium_sandbox and os.geteuid() == 0:
        options["executable_path"] = str(_as_user_script(settings, executable))
    return options


def _as_user_script(settings: Settings, executable: str) -> Path:
    try:
        user = pwd.getpwnam(settings.chromium_user)
    except KeyError:
        raise RuntimeError(
            f"CHROMIUM_USER {settings.chromium_user!r} is no user of this system: Chromium's sandbox cannot start as root."
        ) from None
    if user.pw_uid == 0:
        raise RuntimeError("CHROMIUM_USER must not be root: Chromium's sandbox cannot start as root.")
    script = (settings.data_dir / "chromium" / f"as-{settings.chromium_user}").resolve()
    script.parent.mkdir(parents=True, exist_ok=True)
    text = _AS_USER_SCRIPT.format(uid=user.pw_uid, gid=user.pw_gid, executable=shlex.quote(executable))
    if not script.is_file() or script.read_text() != text:
        # Written aside and renamed: another worker may be starting its browser with it.
        written = script.with_name(f".{script.name}.{os.getpid()}")
        written.write_text(text)
        written.chmod(0o700)
        written.replace(script)
    return script


async def _guard(route: Route) -> None:
    request = route.request
    if request.url.startswith("data:"):
        await route.continue_()
    elif request.is_navigation_request() and request.frame.parent_frame is None:
        await route.fulfill(status=204)
    else:
        await route.abort()


_TITLE = re.compile(r"<title>(.*?)</title>", re.S)
# The metadata of every split PDF besides its title: fixed, so that nothing varies but content.
_SPLIT_METADATA = {"/Producer": "invoicing (Chromium, qpdf)", "/Creator": "invoicing"}


@dataclass
class _Request:
    html: str
    group: Any
    future: asyncio.Future = field(repr=False)
    label: str | None = None
    # What must be equal to print together: the organization, and the document around the
    # body (the template's stylesheet), title aside.
    key: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.key = (self.group, _TITLE.sub("", self.html.split("<body>", 1)[0]))


def _body(html: str) -> str:
    return html.split("<body>", 1)[1].rsplit("</body>", 1)[0]


# The anchor starting each invoice of a combined document (its own link makes Chromium write
# a named destination for it). Template text cannot make one: every value is escaped.
_START = "invoicing-start-"
_NEW_PAGE = ' style="break-before: page"'


def combine(htmls: list[str]) -> str:
    """One document of several invoices of the same template, each from a new page, starting
    with an anchor named after its position."""
    head = _TITLE.sub("<title>Invoices</title>", htmls[0].split("<body>", 1)[0])
    parts = [
        f'<div{_NEW_PAGE if i else ""}><a id="{_START}{i}" href="#{_START}{i}"></a>{_body(html)}</div>'
        for i, html in enumerate(htmls)
    ]
    return head + "<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n"


def _written(source: Any, pages: range, title: str, label: str | None = None) -> bytes:
    """The pages of `source` (a pikepdf.Pdf) as a PDF of their own, with fixed metadata, each
    page numbered with `label` when given."""
    import pikepdf

    pdf = pikepdf.new()
    pdf.pages.extend(source.pages[pages.start:pages.stop])
    if label:
        number_pages(pdf, label)
    for key, value in {**_SPLIT_METADATA, "/Title": title}.items():
        pdf.docinfo[key] = pikepdf.String(value)
    buffer = io.BytesIO()
    # The file identifier from the content, not from a clock or a random number.
    pdf.save(buffer, deterministic_id=True)
    return buffer.getvalue()


def _title(html: str) -> str:
    return match.group(1).strip() if (match := _TITLE.search(html)) else "Invoice"


def normalized(pdf: bytes, title: str, label: str | None = None) -> bytes:
    """A PDF printed alone, written as a split one is: the same metadata, no clock."""
    import pikepdf

    with pikepdf.open(io.BytesIO(pdf)) as source:
        return _written(source, range(len(source.pages)), title, label)


def split(pdf: bytes, titles: list[str], labels: list[str | None] | None = None) -> list[bytes] | None:
    """The PDF of each of `len(titles)` invoices printed together by `combine`, or None when
    its named destinations do not give each invoice its own first page, in order."""
    import pikepdf

    with pikepdf.open(io.BytesIO(pdf)) as source:
        destinations = source.Root.get("/Dests")
        names = [f"/{_START}{i}" for i in range(len(titles))]
        if not isinstance(destinations, pikepdf.Dictionary) or sorted(destinations.keys()) != sorted(names):
            return None
        numbers: dict[tuple[int, int], int] = {page.obj.objgen: number for number, page in enumerate(source.pages)}
        starts = []
        for name in names:
            target = destinations[name]
            page = target[0] if isinstance(target, pikepdf.Array) and len(target) else None
            if page is None or page.objgen not in numbers:
                return None
            starts.append(numbers[page.objgen])
        if starts != sorted(set(starts)) or starts[0] != 0:
            return None
        ends = starts[1:] + [len(source.pages)]
        labels = labels or [None] * len(titles)
        return [
            _written(source, range(start, end), title, label)
            for title, label, start, end in zip(titles, labels, starts, ends)
        ]


class PdfRenderer:
    """`await start()` once, `await render(html)` many times, `await close()` at the end;
    or `async with PdfRenderer(settings) as renderer:`. With `batch_size` above 1, renders
    that wait for a page are printed together (see the module)."""

    def __init__(self, settings: Settings, pool_size: int = 2, batch_size: int = 1) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.settings = settings
        self.pool_size = pool_size
        self.batch_size = batch_size
        self.batches = 0  # print jobs of more than one invoice
        self.executable: str | None = None
        self.pages_created = 0
        self.pages_replaced = 0
        self.renders = 0
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._pool: asyncio.Queue[Page | None] = asyncio.Queue()
        self._restart_lock = asyncio.Lock()
        self._waiting: list[_Request] = []
        self._dispatcher: asyncio.Task | None = None
        self._wake = asyncio.Event()

    async def __aenter__(self) -> PdfRenderer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        self._playwright = await async_playwright().start()
        try:
            self.executable = chromium_executable(self.settings, self._playwright.chromium.executable_path)
            await self._launch()
            for _ in range(self.pool_size):
                self._pool.put_nowait(await self._new_page())
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._dispatcher = None
        for request in self._waiting:
            if not request.future.done():
                request.future.set_exception(RuntimeError("PdfRenderer closed"))
        self._waiting = []
        if self._browser is not None:
            await self._browser.close()
        if self._playwright is not None:
            await self._playwright.stop()
        self._playwright = self._browser = self._context = None
        self._pool = asyncio.Queue()

    async def render(self, html: str, *, group: Any = None, page_label: str | None = None) -> bytes:
        """The PDF of `html`; at most `pool_size` print jobs run at once, the rest wait (and
        with `batch_size` above 1, those of the same `group` and template wait together).
        With `page_label` ("Page {page} of {pages}"), every page says which it is."""
        if self.batch_size == 1:
            pdf = await self._render_one(html)
            return await asyncio.to_thread(normalized, pdf, _title(html), page_label) if page_label else pdf
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(_Request(html, group, future, page_label))
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch())
        self._wake.set()
        return await future

    async def _dispatch(self) -> None:
        """Gives each free page the oldest waiting render and those that can go with it."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                page = await self._pool.get()
                first = self._waiting[0]
                key = first.key
                batch = [first] + [r for r in self._waiting[1:] if r.key == key][: self.batch_size - 1]
                taken = {id(r) for r in batch}
                self._waiting = [r for r in self._waiting if id(r) not in taken]
                task = asyncio.create_task(self._print(page, batch))
                task.add_done_callback(_retrieve)

    async def _print(self, page: Page | None, batch: list[_Request]) -> None:
        if len(batch) > 1:
            try:
                pdfs = await self._print_batch(page, [r.html for r in batch], [r.label for r in batch])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("a batch of %d invoices failed to print; printing each alone", len(batch), exc_info=True)
                pdfs = None
            if pdfs is not None:
                for request, pdf in zip(batch, pdfs):
                    if not request.future.done():
                        request.future.set_result(pdf)
                return
            page = None  # `_print_batch` gave it back
        # Alone, each as before: one that fails fails alone. Written as a split PDF is, so that
        # every PDF of a batching renderer has the same metadata and none has a clock in it.
        for request in batch:
            try:
                pdf = await self._render_one(request.html, page)
                pdf = await asyncio.to_thread(normalized, pdf, _title(request.html), request.label)
            except BaseException as exc:
                if not request.future.done():
                    request.future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                if not request.future.done():
                    request.future.set_result(pdf)
            page = None

    async def _print_batch(self, page: Page | None, htmls: list[str], labels: list[str | None]) -> list[bytes] | None:
        """The invoices printed together, split; None when the split does not line up (the
        page goes back to the pool either way, or is replaced when the print failed)."""
        timer = metrics.Timer()
        try:
            if page is None or page.is_closed():
                page = await self._new_page()
            await page.set_content(combine(htmls), wait_until="load", timeout=RENDER_TIMEOUT_MS)
            pdf = await page.pdf(**PDF_OPTIONS)
        except BaseException:
            metrics.PDF_PRINTS.labels("failed").observe(timer.seconds)
            self._pool.put_nowait(None)
            self.pages_replaced += 1
            if page is not None:
                await self._discard(page)
            raise
        self._pool.put_nowait(page)
        titles = [_title(html) for html in htmls]
        # Off the event loop, so that other jobs' queries go on meanwhile.
        pdfs = await asyncio.to_thread(split, pdf, titles, labels)
        if pdfs is None:
            log.warning("a batch of %d invoices did not split by its anchors; printing each alone", len(htmls))
            return None
        self.batches += 1
        self.renders += len(pdfs)
        metrics.PDF_PRINTS.labels("ok").observe(timer.seconds)
        metrics.PDFS_PRINTED.inc(len(pdfs))
        return pdfs

    async def _render_one(self, html: str, page: Page | None = None) -> bytes:
        """`html` printed alone, on `page` (taken from the pool) or the next free one."""
        if page is None:
            page = await self._pool.get()
        timer = metrics.Timer()
        try:
            if page is None or page.is_closed():
                page = await self._new_page()
            await page.set_content(html, wait_until="load", timeout=RENDER_TIMEOUT_MS)
            pdf = await page.pdf(**PDF_OPTIONS)
        except BaseException:
            metrics.PDF_PRINTS.labels("failed").observe(timer.seconds)
            # Its state is unknown (timed out, cancelled, crashed): the next render gets a
            # new page. The slot goes back first so that the pool never shrinks.
            self._pool.put_nowait(None)
            self.pages_replaced += 1
            if page is not None:
                await self._discard(page)
            raise
        self._pool.put_nowait(page)
        self.renders += 1
        metrics.PDF_PRINTS.labels("ok").observe(timer.seconds)
        metrics.PDFS_PRINTED.inc()
        return pdf

    async def _launch(self) -> None:
        assert self._playwright is not None and self.executable is not None
        self._browser = await self._playwright.chromium.launch(
            **launch_options(self.settings, self._playwright.chromium.executable_path), headless=True
        )
        self._context = await self._browser.new_context(
            java_script_enabled=False, service_workers="block", accept_downloads=False
        )
        await self._context.route("**/*", _guard)

    async def _new_page(self) -> Page:
        async with self._restart_lock:
            if self._browser is None or not self._browser.is_connected():
                if self._playwright is None:
                    raise RuntimeError("PdfRenderer is not started")
                log.warning("Chromium is gone; starting it again")
                await self._launch()
            assert self._context is not None
            page = await self._context.new_page()
        page.set_default_timeout(RENDER_TIMEOUT_MS)
        self.pages_created += 1
        return page

    @staticmethod
    async def _discard(page: Page) -> None:
        try:
            await page.close()
        except Exception:  # the browser may already be gone; the page is dropped either way
            log.debug("closing a failed page failed", exc_info=True)


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a print job failed", exc_info=task.exception())
