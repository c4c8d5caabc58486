"""ASGI wiring: routes, lifespan and middleware."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET
from tortoise import connections

from infra import broker, db, links, metrics, storage
from infra.embedded import resolve_urls
from infra.events import Hub
from infra.settings import Settings, get_settings
from invoicing import pages
from invoicing.bodies import BodyLimits
from invoicing.logs import RequestIds, configure_logging
from invoicing.root import schema
from models.auth import principal_of_link
from models.einvoicing.files import facturx_pdf
from models.errors import DomainError, RequestErrorCode
from models.xero.connections import BROWSER_COOKIE, take_authorization
from models.xero.tokens import browser_bound, webhook_signed
from resolvers.xero import complete_connection, webhook_received
from schema.core import fanout
from schema.core.context import Context
from schema.core.permissions import authenticate_bearer

log = logging.getLogger(__name__)

class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, settings: Settings, events: Hub, **kwargs: Any):
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.environment == "development" else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            allowed_origins=settings.allowed_origins,
            multipart_uploads_enabled=True,
            connection_init_wait_timeout=timedelta(seconds=10),
            **kwargs,
        )
        self.settings = settings
        self.events = events
        # Live events: one execution and one encoding per group of alike subscribers (schema/core/fanout.py).
        if settings.subscription_fanout:
            self.graphql_transport_ws_handler_class = fanout.FanOutHandler
        # Every operation on a WebSocket counts, queries included.
        self.max_subscriptions_per_connection = settings.subscriptions_per_connection

    def encode_json(self, data: object) -> str:
        """Answers and WebSocket messages as compact JSON, encoded by orjson (a page of a
        list is thousands of values: the standard library took a tenth of the request). Text,
        not bytes: strawberry sends bytes on a WebSocket as binary frames."""
        try:
            return orjson.dumps(data).decode()
        except TypeError:  # what orjson does not encode (an integer past 64 bits in JSON)
            return json.dumps(data, separators=(",", ":"))

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if not isinstance(request, Request):  # a WebSocket
            return await super().run(request, context, root_value)
        try:
            if _is_upload(request):
                # Uploads are for signed-in users only: refused before a byte of the body is
                # read, so that no one without a token makes the server spool anything.
                principal, reason = await authenticate_bearer(request.headers.get("authorization"))
                if principal is None:
                    return _unauthenticated(reason)
                request.state.authenticated = principal, reason
            return await super().run(request, context, root_value)
        finally:
            # The upload's spooled files, closed (and so deleted) once the operation is done,
            # rather than at the next full garbage collection.
            await request.close()

    async def get_context(self, request, response) -> Context:
        context = Context(
            settings=self.settings, redis=request.app.state.redis, request=request, response=response,
            events=self.events,
        )
        if request.scope["type"] == "http":
            authenticated = getattr(request.state, "authenticated", None)
            context.principal, context.auth_error = authenticated or await authenticate_bearer(
                request.headers.get("authorization")
            )
        return context

    async def on_ws_connect(self, context: Context):
        # graphql-transport-ws: the token travels in connection_init; without a valid one
        # the socket closes with 4403 before any operation runs.
        value = context.connection_params.get("authorization")
        principal, _ = await authenticate_bearer(value if isinstance(value, str) else None)
        if principal is None:
            raise ConnectionRejectionError()
        context.principal, context.bearer = principal, value
        return UNSET

    async def render_graphql_ide(self, request: Request) -> Response:
        # The product's own GraphiQL page (static/pages), not strawberry's: its assets come
        # from this origin, never from a CDN.
        return pages.GRAPHIQL.response()


def _is_upload(request: Request) -> bool:
    return request.method == "POST" and request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def _unauthenticated(reason: str | None) -> JSONResponse:
    """What the upload mutations answer without a valid token, as their permission would."""
    message = reason or "Authentication required: send a bearer token."
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": RequestErrorCode.UNAUTHENTICATED.value}}]},
        headers={"connection": "close"},
    )


async def healthz(request: Request) -> JSONResponse:
    """Liveness and readiness: the database, Redis and a worker heartbeat."""
    checks: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        await connections.get("default").execute_query("SELECT 1")
        checks["database"] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
    except Exception as exc:  # any failure means "not ready", reported, not raised
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    started = time.perf_counter()
    try:
        redis = request.app.state.redis
        await redis.ping()
        checks["redis"] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
        heartbeat = await redis.get(broker.HEALTH_CHECK_KEY)
        checks["worker"] = {"ok": heartbeat is not None, "heartbeat": heartbeat.decode() if heartbeat else None}
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": type(exc).__name__}
        checks["worker"] = {"ok": False, "heartbeat": None}
    ready = checks["database"]["ok"] and checks["redis"]["ok"]
    # A missing worker degrades the service (nothing gets generated or sent) but the API
    # still answers, so it does not fail readiness.
    status = "ok" if ready and checks["worker"]["ok"] else ("degraded" if ready else "unavailable")
    reasons = [HEALTH_REASONS[name] for name in HEALTH_REASONS if not checks[name]["ok"]]
    return JSONResponse({"status": status, "reasons": reasons, **checks}, status_code=200 if ready else 503)


HEALTH_REASONS = {
    "database": "PostgreSQL does not answer: nothing can be read or written.",
    "redis": "Redis does not answer: changes are kept, their jobs and events wait for it.",
    "worker": "No worker heartbeat: invoices are not generated or sent until a worker runs.",
}


# Downloads are private to whoever holds the link, and are files, never pages to render.
DOWNLOAD_HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


async def download(request: Request) -> Response:
    """`GET /files/<token>`: the file a signed link names, if the link is genuine and
    unexpired and its requester may still see the file. Every refusal looks the same."""
    settings = request.app.state.settings
    claims = links.verify(settings, request.path_params["token"])
    principal = await principal_of_link(**links.requester(claims)) if claims else None
    found = await links.signed_download(principal, claims["k"], claims["t"], claims["f"]) if principal and claims else None
    missing = PlainTextResponse("Not found.", status_code=404, headers=DOWNLOAD_HEADERS)
    if found is None:
        return missing
    headers = {**DOWNLOAD_HEADERS, "Content-Disposition": f'attachment; filename="{found.filename}"'}
    if found.stored is None:
        return Response(found.data, media_type=found.content_type, headers=headers)
    # Served from the store through this process, never redirected to the bucket: the link is
    # checked at each download, and the store stays private to the product.
    try:
        if found.embed is not None:
            # Made when asked, from the frozen revision, off the event loop (PDF work is CPU-bound).
            pdf = await asyncio.to_thread(storage.load, settings, found.stored)
            data = await asyncio.to_thread(facturx_pdf, pdf, found.embed)
            return Response(data, media_type=found.content_type, headers=headers)
        size, chunks = await storage.stream(settings, found.stored)
    except FileNotFoundError:
        return missing
    headers["Content-Length"] = str(size)
    return StreamingResponse(chunks, media_type=found.content_type, headers=headers)


async def portal(request: Request) -> Response:
    """`GET /portal`: the customer portal, a static page that talks to /graphql."""
    return pages.PORTAL.response()


async def console_page(request: Request) -> Response:
    """`GET /console`: the MSP's month-end console, a static page that talks to /graphql."""
    return pages.CONSOLE.response()


async def xero_callback(request: Request) -> Response:
    """`GET /xero/callback?code=...&state=...`: where Xero sends the owner's browser back. The
    state names the authorization `connectXero` started (bound to its organization and owner,
    short-lived, used once); the code is exchanged with its PKCE verifier. Only the browser that
    started it, holding its cookie, may come back with it (whatever XERO_RETURN_URL is): any
    other (one sent the authorize link) changes nothing."""
    settings, params = request.app.state.settings, request.query_params
    state = params.get("state", "")
    if not browser_bound(settings, state, request.cookies.get(BROWSER_COOKIE)):
        return PlainTextResponse(
            "Xero was not connected: this browser did not start this connection. Start it again from the console, "
            "in the browser that goes to Xero.", status_code=403,
        )
    if settings.xero_return_url:
        # The console finishes with `completeXeroConnection` under the owner's own token.
        separator = "&" if "?" in settings.xero_return_url else "?"
        return RedirectResponse(f"{settings.xero_return_url}{separator}{request.url.query}", status_code=303)
    try:
        if params.get("error"):
            await take_authorization(settings, state)
            answer = PlainTextResponse(f"Xero was not connected: {params['error']}.", status_code=400)
        else:
            connection = await complete_connection(settings, params.get("code", ""), state)
            answer = PlainTextResponse(f"Xero organisation {connection.tenant_name} is connected. You can close this page.")
            answer.delete_cookie(BROWSER_COOKIE, path=urlsplit(settings.xero_callback_url).path or "/")
    except DomainError as exc:
        answer = PlainTextResponse(exc.message, status_code=400)
    return answer


async def xero_webhook(request: Request) -> Response:
    """`POST /xero/webhook`: Xero's events, signed with the app's webhook key. A correctly
    signed request answers 200 with no body, any other 401 (Xero's "intent to receive" check
    relies on both); invoices that changed in Xero have their payments read at once."""
    settings = request.app.state.settings
    if not settings.xero_webhook_key:
        return PlainTextResponse("Not found.", status_code=404)
    body = await request.body()
    if not webhook_signed(settings, body, request.headers.get("x-xero-signature", "")):
        return Response(status_code=401)
    try:
        payload = json.loads(body)
    except ValueError:
        return Response(status_code=200)
    await webhook_received(request.app.state.redis, payload)
    return Response(status_code=200)


# Every answer: not to be sniffed into another type, framed, or sent on as a referrer.
SECURITY_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
}
# API answers (JSON, files) are data, never a page that runs anything. The pages (GraphiQL,
# the portal) bring their own policy, which allows this origin alone (invoicing/pages.py).
API_POLICY = b"default-src 'none'; frame-ancestors 'none'"


class SecurityHeaders:
    """Adds the security headers to every HTTP answer, and `Cache-Control: no-store` to
    those that say nothing of caching: API answers are private and change."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                added = {**SECURITY_HEADERS, b"content-security-policy": API_POLICY}
                if b"cache-control" not in present:
                    added[b"cache-control"] = b"no-store"
                headers.extend((name, value) for name, value in added.items() if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# A web process keeps many objects alive for long (the schema, and every open subscription's
# execution state); with the default thresholds the collector walks them all again and again.
# bench/subscriptions.py at 1,000 subscribers: p50 470 -> 155 ms, p99 850 -> 310 ms.
GC_THRESHOLDS = (20_000, 20, 100)


def tune_garbage_collector() -> None:
    """Start-up objects move out of the collector's sight (`gc.freeze`), and collections of
    cyclic garbage come less often (reference counting still frees everything else at once)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = resolve_urls(settings or get_settings())
    configure_logging(settings)

    events = Hub(queue_size=settings.subscription_queue_size,
                 recheck_seconds=settings.subscription_recheck_seconds,
                 send=fanout.send if settings.subscription_fanout else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await db.init(settings)
        app.state.redis = await broker.connect(settings)
        tune_garbage_collector()
        try:
            yield
        finally:
            await events.close()
            await app.state.redis.aclose()
            await db.close()

    graphql = GraphQLApp(settings, events)
    # GraphiQL in development only, as its GET /graphql; the portal and the console everywhere.
    served_pages = [pages.PORTAL, pages.CONSOLE, *([pages.GRAPHIQL] if graphql.graphql_ide else [])]
    application = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics.endpoint, methods=["GET"]),
            Route("/files/{token}", download, methods=["GET"]),
            Route("/portal", portal, methods=["GET"]),
            Route("/console", console_page, methods=["GET"]),
            Mount("/pages", pages.PageAssets(served_pages)),
            Route("/xero/callback", xero_callback, methods=["GET"]),
            Route("/xero/webhook", xero_webhook, methods=["POST"]),
        ],
        middleware=[
            Middleware(RequestIds),
            Middleware(SecurityHeaders),
            Middleware(BodyLimits, settings=settings),
            Middleware(
                CORSMiddleware,
                allow_origins=settings.allowed_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", "x-request-id"],
                expose_headers=["x-request-id"],
            )
        ],
        lifespan=lifespan,
    )
    application.state.events = events
    application.state.settings = settings
    return application
