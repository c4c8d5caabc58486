"""A real HTTP receiver of webhooks for the tests, on a loopback port: it verifies every
delivery's signature with `standardwebhooks` against the secrets of the path it was posted to,
keeps what it received (and the connection it came on), and answers as the test tells it (a status per request, a hang
longer than the sender's timeout, a redirect, a delay per path while it counts the requests
it holds at once)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    # The sender's end of the connection it came on (the same on a connection kept alive).
    peer: str = ""
    # When it arrived (time.monotonic()).
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def type(self) -> str:
        return self.json["type"]


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.secrets: dict[str, list[str]] = defaultdict(list)
        # Per path, what to answer next: an HTTP status, "hang", "redirect" or "close" (200 and
        # the connection closed); empty: 200.
        self.answers: dict[str, list[Any]] = defaultdict(list)
        # Per path, how long each answer takes (seconds), and the most requests it had at once.
        self.delay: dict[str, float] = defaultdict(float)
        self.peak: dict[str, int] = defaultdict(int)
        self._open: dict[str, int] = defaultdict(int)
        self.address = ""
        self.app = Starlette(routes=[Route("/{path}", self._receive, methods=["POST", "GET"])])

    def url(self, path: str) -> str:
        return f"http://{self.address}/{path}"

    def at(self, path: str) -> list[Received]:
        return [one for one in self.received if one.path == path]

    async def wait_for(self, path: str, count: int, timeout: float = 30) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.at(path)) < count:  # noqa: ASYNC110 (the server signals nothing)
                await asyncio.sleep(0.02)
        return self.at(path)

    async def _receive(self, request: Request) -> Response:
        path = request.path_params["path"]
        body = await request.body()
        headers = dict(request.headers)
        verified = False
        for secret in self.secrets[path]:
            with contextlib.suppress(WebhookVerificationError):
                Webhook(secret).verify(body, headers)
                verified = True
        peer = f"{request.client.host}:{request.client.port}" if request.client else ""
        self.received.append(Received(path, headers, body, verified, peer))
        if self.delay[path]:
            self._open[path] += 1
            self.peak[path] = max(self.peak[path], self._open[path])
            try:
                await asyncio.sleep(self.delay[path])
            finally:
                self._open[path] -= 1
        answer = self.answers[path].pop(0) if self.answers[path] else 200
        if answer == "hang":
            await asyncio.sleep(3)
            return PlainTextResponse("too late")
        if answer == "close":
            return PlainTextResponse("ok", headers={"Connection": "close"})
        if answer == "redirect":
            return Response(status_code=302, headers={"Location": self.url("redirected")})
        return PlainTextResponse("ok" if verified else "bad signature", status_code=answer if verified else 401)
