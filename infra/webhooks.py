"""The one client that reaches webhook endpoints (httpx).

Each delivery resolves the endpoint's host now and connects to an address that check allowed
(`infra.egress`), the Host header and TLS's server name (SNI, and the certificate's check)
still the endpoint's name: a name that answers a public address to the check and a private one
to the connection (DNS rebinding) reaches nothing. Redirects are not followed (a 3xx is an
answer that is not a success); the answer is read up to WEBHOOK_RESPONSE_BYTES; one attempt
lasts at most WEBHOOK_TIMEOUT_SECONDS, connecting included. Failures are told in our words,
never with the library's text."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import httpx

from infra import egress
from infra.settings import Settings
from models.errors import ValidationFailed
from models.webhooks import Outcome

_REFUSED = {
    egress.Refusal.UNRESOLVED: "the host name does not resolve",
    egress.Refusal.PRIVATE: "refused: the host is on a loopback, private or link-local address",
}
USER_AGENT = "invoicing-webhooks/1"


async def check_url(settings: Settings, url: str) -> None:
    """Refuse, when it is given, an endpoint whose host does not resolve or resolves to an
    address not to be reached (delivery checks again each time: a name's answer may change)."""
    try:
        await egress.resolve(
            urlsplit(url).hostname or "", allow_private=settings.webhook_private_addresses, timeout=settings.webhook_timeout_seconds
        )
    except egress.EgressRefused as refused:
        if refused.refusal == egress.Refusal.UNRESOLVED:
            raise ValidationFailed("The endpoint's host name does not resolve.", field="url") from None
        raise ValidationFailed(
            "The endpoint is on a loopback, private or link-local address, which this server does not reach.",
            field="url",
        ) from None


class Sender:
    """One lane's connections (kept alive between deliveries to the same address)."""

    def __init__(self, settings: Settings, *, connections: int = 16):
        self.settings = settings
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(settings.webhook_timeout_seconds),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers={"User-Agent": USER_AGENT},
        )

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        await self._client.aclose()

    async def post(self, url: str, headers: dict[str, str], body: str) -> Outcome:
        """POST the body to the endpoint; what came of it."""
        started = time.monotonic()
        settings = self.settings
        try:
            async with asyncio.timeout(settings.webhook_timeout_seconds):
                parts = urlsplit(url)
                host = parts.hostname or ""
                addresses = await egress.resolve(
                    host, allow_private=settings.webhook_private_addresses, timeout=settings.webhook_timeout_seconds, port=parts.port
                )
                return await self._post(parts, host, addresses[0], headers, body, started)
        except egress.EgressRefused as refused:
            return Outcome(None, _elapsed(started), error=_REFUSED[refused.refusal])
        except (TimeoutError, httpx.TimeoutException):
            return Outcome(None, _elapsed(started), error="timed out")
        except httpx.ConnectError:
            return Outcome(None, _elapsed(started), error="could not connect (refused, unreachable or TLS failed)")
        except httpx.HTTPError:
            return Outcome(None, _elapsed(started), error="the connection failed before a whole answer came")

    async def _post(self, parts, host: str, address: egress.IPAddress, headers: dict[str, str], body: str, started: float) -> Outcome:
        literal = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
        netloc = f"{literal}:{parts.port}" if parts.port else literal
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = f"{host}:{parts.port}" if parts.port else host
        request = self._client.build_request(
            "POST",
            pinned,
            content=body.encode(),
            headers={**headers, "Host": host_header, "Content-Type": "application/json"},
            extensions={"sni_hostname": host},
        )
        response = await self._client.send(request, stream=True)
        try:
            answer = bytearray()
            async for chunk in response.aiter_raw():
                answer += chunk
                if len(answer) >= self.settings.webhook_response_bytes:
                    break
        finally:
            await response.aclose()
        text = bytes(answer[: self.settings.webhook_response_bytes]).decode("utf-8", "replace")
        return Outcome(response.status_code, _elapsed(started), response=text)


def _elapsed(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
