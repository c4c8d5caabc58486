"""The product's pages, served by the app itself from static/pages: GraphiQL (development
only, at `GET /graphql`), the customer portal (`/portal`) and the MSP's month-end console
(`/console`).

Nothing they load comes from anywhere but this origin: their own scripts and styles, and the
third-party files scripts/setup.sh fetched from the npm registry into static/pages/vendor,
pinned and checked (static/pages/vendor.json); each page's Content-Security-Policy allows this
origin alone. `/pages/...` serves exactly the files the enabled pages name, no other."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.staticfiles import StaticFiles

log = logging.getLogger(__name__)

PAGES = Path(__file__).resolve().parents[1] / "static" / "pages"
# What a page's HTML loads: `src="/pages/..."` and `href="/pages/..."`.
_REFERENCE = re.compile(r'\b(?:src|href)="/pages/([^"?#]+)"')

# Both pages: scripts, styles and connections (fetch and the WebSocket) of this origin only,
# nothing framed, no <base>, no form sent anywhere (the forms are scripts' business).
_COMMON = "default-src 'none'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# GraphiQL's stylesheet carries its fonts as data: URLs (part of the pinned file, not a request).
GRAPHIQL_POLICY = f"{_COMMON}; style-src 'self'; img-src 'self'; font-src data:"
# The portal and the console write text, never markup: Trusted Types turn any markup sink into an error.
PORTAL_POLICY = f"{_COMMON}; style-src 'self'; img-src 'self'; require-trusted-types-for 'script'; trusted-types 'none'"

# Vendored files have their version in their path: cached for good. The pages' own files
# are checked again each time (ETag), the HTML not kept at all.
VENDOR_CACHE = "public, max-age=31536000, immutable"
OWN_CACHE = "no-cache"


@dataclass(frozen=True)
class Page:
    filename: str
    policy: str

    @property
    def path(self) -> Path:
        return PAGES / self.filename

    def assets(self) -> set[str]:
        """The files under /pages/ that the page loads (none while the page itself is absent)."""
        return set(_REFERENCE.findall(self.path.read_text())) if self.path.is_file() else set()

    def missing_assets(self) -> list[str]:
        """The page's files that are not where they are served from, the page included."""
        return sorted(name for name in {self.filename, *self.assets()} if not (PAGES / name).is_file())

    def response(self) -> Response:
        missing = self.missing_assets()
        if missing:
            # A clone where scripts/setup.sh has not fetched them yet: say so, not a blank page.
            return PlainTextResponse(
                "This page's files are not installed (" + ", ".join(missing) + "): run ./run or "
                "scripts/setup.sh, which fetch them from the npm registry.", status_code=503,
            )
        return HTMLResponse(self.path.read_text(), headers={"Content-Security-Policy": self.policy})


GRAPHIQL = Page("graphiql.html", GRAPHIQL_POLICY)
PORTAL = Page("portal.html", PORTAL_POLICY)
CONSOLE = Page("console.html", PORTAL_POLICY)


class PageAssets(StaticFiles):
    """`/pages/<file>`: only the files that `pages` load, each with its caching rule."""

    def __init__(self, pages: list[Page]):
        super().__init__(directory=PAGES, check_dir=False)
        self.allowed = set().union(*(page.assets() for page in pages))
        for page in pages:
            if page.missing_assets():
                log.warning("%s needs files not installed yet (%s): run scripts/setup.sh",
                            page.filename, ", ".join(page.missing_assets()))

    async def get_response(self, path: str, scope: Any) -> Response:
        if path not in self.allowed:
            return PlainTextResponse("Not found.", status_code=404)
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = VENDOR_CACHE if path.startswith("vendor/") else OWN_CACHE
        return response
