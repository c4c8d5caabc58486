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
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import TracebackType
from typing import TypedDict

from playwright.async_api import Browser, BrowserContext, Page, PdfMargins, Playwright, Route, async_playwright

from infra.settings import Settings

log = logging.getLogger(__name__)

DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"
# /usr/bin/chromium is Debian's wrapper script; the real binary above is preferred.
DEBIAN_CHROMIUM_WRAPPER = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # workers run as root, where Chromium's sandbox cannot start
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


async def _guard(route: Route) -> None:
    request = route.request
    if request.url.startswith("data:"):
        await route.continue_()
    elif request.is_navigation_request() and request.frame.parent_frame is None:
        await route.fulfill(status=204)
    else:
        await route.abort()


class PdfRenderer:
    """`await start()` once, `await render(html)` many times, `await close()` at the end;
    or `async with PdfRenderer(settings) as renderer:`."""

    def __init__(self, settings: Settings, pool_size: int = 2) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.settings = settings
        self.pool_size = pool_size
        self.executable: str | None = None
        self.pages_created = 0
        self.pages_replaced = 0
        self.renders = 0
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._pool: asyncio.Queue[Page | None] = asyncio.Queue()
        self._restart_lock = asyncio.Lock()

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
        if self._browser is not None:
            await self._browser.close()
        if self._playwright is not None:
            await self._playwright.stop()
        self._playwright = self._browser = self._context = None
        self._pool = asyncio.Queue()

    async def render(self, html: str) -> bytes:
        """The PDF of `html`; at most `pool_size` renders run at once, the rest wait."""
        page = await self._pool.get()
        try:
            if page is None or page.is_closed():
                page = await self._new_page()
            await page.set_content(html, wait_until="load", timeout=RENDER_TIMEOUT_MS)
            pdf = await page.pdf(**PDF_OPTIONS)
        except BaseException:
            # Its state is unknown (timed out, cancelled, crashed): the next render gets a
            # new page. The slot goes back first so that the pool never shrinks.
            self._pool.put_nowait(None)
            self.pages_replaced += 1
            if page is not None:
                await self._discard(page)
            raise
        self._pool.put_nowait(page)
        self.renders += 1
        return pdf

    async def _launch(self) -> None:
        assert self._playwright is not None and self.executable is not None
        self._browser = await self._playwright.chromium.launch(
            executable_path=self.executable,
            args=LAUNCH_ARGS,
            # A copy typed as Playwright's parameter is (a dict of str | float | bool).
            env=dict(browser_environment(self.settings)),
            headless=True,
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
