"""The one client that reaches webhook endpoints: HTTP/1.1 (h11's protocol state machine) over
asyncio's connections, kept alive per endpoint name and checked address.

Each delivery resolves the endpoint's host now and connects to an address that check allowed
(`infra.egress`), the Host header and TLS's server name (SNI, and the certificate's check)
still the endpoint's name: a name that answers a public address to the check and a private one
to the connection (DNS rebinding) reaches nothing. A kept-alive connection serves only the
name it was opened for and the address it was opened to: a delivery whose check answers
another address (or refuses) never posts on it. Redirects are not followed (a 3xx is an answer
that is not a success); the answer is read up to WEBHOOK_RESPONSE_BYTES; one attempt lasts at
most WEBHOOK_TIMEOUT_SECONDS, connecting included. Failures are told in our words, never with
the library's text.

Why not a general client (httpx before): a delivery is one small POST to a connection kept
alive, and httpx's layers (its pool, anyio's streams and cancel scopes, cookies, URL merging)
cost four fifths of a delivery's CPU; this posts the same request for a fraction of it."""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections import OrderedDict
from types import TracebackType
from typing import NamedTuple
from urllib.parse import SplitResult, urlsplit

import certifi
import h11

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


class _Origin(NamedTuple):
    """Where a kept-alive connection goes: the endpoint's scheme, name and port, and the address
    the check allowed when it was opened."""

    scheme: str
    host: str
    port: int
    address: egress.IPAddress


class _Failed(Exception):
    """The connection failed: before (`connecting`) or after it was open."""

    def __init__(self, connecting: bool):
        super().__init__("connect" if connecting else "exchange")
        self.connecting = connecting


class _Connection:
    """One connection to an endpoint, and its HTTP/1.1 state."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.http = h11.Connection(h11.CLIENT)
        self.idle_since = time.monotonic()

    @property
    def usable(self) -> bool:
        """Still open at our end and not closed by the endpoint while idle."""
        return not self.writer.is_closing() and not self.reader.at_eof()

    async def post(self, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes, cap: int) -> tuple[int, bytes, bool]:
        """The answer's status and its first `cap` bytes, and whether the connection may serve
        another request."""
        send = self.http.send
        self.writer.write(
            b"".join(
                send(event) or b""
                for event in (h11.Request(method=b"POST", target=target, headers=headers), h11.Data(data=body), h11.EndOfMessage())
            )
        )
        await self.writer.drain()
        status, answer = 0, bytearray()
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                self.http.receive_data(await self.reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                answer += event.data
                if len(answer) >= cap:
                    return status, bytes(answer[:cap]), False
            elif isinstance(event, h11.EndOfMessage):
                reusable = self.http.our_state is h11.DONE and self.http.their_state is h11.DONE
                if reusable:
                    self.http.start_next_cycle()
                return status, bytes(answer), reusable
            elif isinstance(event, h11.ConnectionClosed):
                raise _Failed(connecting=False)

    def close(self) -> None:
        self.writer.close()


@functools.cache
def public_tls() -> ssl.SSLContext:
    """TLS with the public authorities (certifi's), made once per process: reading them costs
    some 30 ms of CPU, which each lane paid as it started, while the worker's other jobs ran."""
    return ssl.create_default_context(cafile=certifi.where())


class Sender:
    """One lane's connections: kept alive between deliveries to the same endpoint name and
    checked address, `connections` of them idle at most (the longest idle closed first) and
    none idle longer than KEEP_ALIVE_SECONDS."""

    KEEP_ALIVE_SECONDS = 5.0

    def __init__(self, settings: Settings, *, connections: int = 16, tls: ssl.SSLContext | None = None):
        self.settings = settings
        self._most_idle = connections
        self._idle: OrderedDict[_Connection, _Origin] = OrderedDict()
        # The public authorities; the tests' own authority in their place.
        self._tls = tls or public_tls()

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()

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
                origin = _Origin(parts.scheme, host, parts.port or (443 if parts.scheme == "https" else 80), addresses[0])
                status, answer = await self._post(origin, parts, headers, body.encode())
        except egress.EgressRefused as refused:
            return Outcome(None, _elapsed(started), error=_REFUSED[refused.refusal])
        except TimeoutError:
            return Outcome(None, _elapsed(started), error="timed out")
        except _Failed as failed:
            if failed.connecting:
                return Outcome(None, _elapsed(started), error="could not connect (refused, unreachable or TLS failed)")
            return Outcome(None, _elapsed(started), error="the connection failed before a whole answer came")
        return Outcome(status, _elapsed(started), response=answer.decode("utf-8", "replace"))

    async def _post(self, origin: _Origin, parts: SplitResult, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        target = ((parts.path or "/") + (f"?{parts.query}" if parts.query else "")).encode()
        default_port = parts.port is None or parts.port == (443 if origin.scheme == "https" else 80)
        name = f"[{origin.host}]" if ":" in origin.host else origin.host
        request_headers = [
            (b"Host", (name if default_port else f"{name}:{origin.port}").encode("idna")),
            (b"User-Agent", USER_AGENT.encode()),
            (b"Content-Type", b"application/json"),
            (b"Content-Length", str(len(body)).encode()),
            *((name.encode(), value.encode()) for name, value in headers.items()),
        ]
        cap = self.settings.webhook_response_bytes
        connection = self._kept(origin)
        if connection is not None:
            try:
                return await self._exchange(origin, connection, target, request_headers, body, cap)
            except _Failed:
                pass  # the endpoint closed it as it was taken: the delivery goes on a new one
        return await self._exchange(origin, await self._connect(origin), target, request_headers, body, cap)

    async def _exchange(
        self, origin: _Origin, connection: _Connection, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes, cap: int
    ) -> tuple[int, bytes]:
        try:
            status, answer, reusable = await connection.post(target, headers, body, cap)
        except (OSError, h11.ProtocolError, _Failed):
            connection.close()
            raise _Failed(connecting=False) from None
        except BaseException:
            connection.close()
            raise
        if reusable:
            self._keep(origin, connection)
        else:
            connection.close()
        return status, answer

    async def _connect(self, origin: _Origin) -> _Connection:
        tls = origin.scheme == "https"
        try:
            reader, writer = await asyncio.open_connection(
                str(origin.address), origin.port, ssl=self._tls if tls else None, server_hostname=origin.host if tls else None
            )
        except (OSError, ssl.SSLError, ValueError):
            raise _Failed(connecting=True) from None
        return _Connection(reader, writer)

    def _kept(self, origin: _Origin) -> _Connection | None:
        """An idle connection to this origin still open, if any; closes the stale ones met."""
        expired = time.monotonic() - self.KEEP_ALIVE_SECONDS
        for connection, kept_for in list(self._idle.items()):
            if connection.idle_since < expired or not connection.usable:
                del self._idle[connection]
                connection.close()
            elif kept_for == origin:
                del self._idle[connection]
                return connection
        return None

    def _keep(self, origin: _Origin, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        self._idle[connection] = origin
        while len(self._idle) > self._most_idle:
            oldest, _ = self._idle.popitem(last=False)
            oldest.close()


def _elapsed(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
