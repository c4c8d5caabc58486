"""Request bodies bounded per route, while they are read.

Each route has a limit (`Settings`): GraphQL JSON `MAX_REQUEST_BYTES`, `/xero/webhook`
`MAX_WEBHOOK_BYTES`, a multipart upload to /graphql `MAX_UPLOAD_BYTES` plus one JSON body's
worth for its `operations` and `map` fields. A `Content-Length` past the limit is answered 413
before a byte is read; a body that grows past it as it arrives (chunked, or longer than it said)
is cut off at the first chunk beyond and answered 413 the same way. Nothing past the limit is
ever buffered or spooled, whatever the route does with what it reads.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from infra.settings import Settings
from models.errors import RequestErrorCode

MULTIPART = b"multipart/form-data"


class BodyTooLarge(Exception):
    """Raised from `receive` once a body passes its route's limit."""


def body_limit(settings: Settings, scope: Any) -> int:
    """The most bytes the body of this request may have."""
    if scope["path"] == "/xero/webhook":
        return settings.max_webhook_bytes
    content_type = dict(scope["headers"]).get(b"content-type", b"")
    if scope["path"] == "/graphql" and content_type.lower().startswith(MULTIPART):
        return settings.max_upload_bytes + settings.max_request_bytes
    return settings.max_request_bytes


def too_large(limit: int) -> JSONResponse:
    """The answer to a body past `limit`: a GraphQL-shaped error, so that clients read it as
    they read every refusal."""
    return JSONResponse(
        {"data": None, "errors": [{
            "message": f"The request body is larger than this route accepts ({limit:,} bytes).",
            "extensions": {"code": RequestErrorCode.PAYLOAD_TOO_LARGE.value, "limit": limit},
        }]},
        status_code=413, headers={"connection": "close"},
    )


class BodyLimits:
    """ASGI middleware: the body of every HTTP request bounded by `body_limit`."""

    def __init__(self, app: Any, settings: Settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(self.settings, scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large(limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def bounded_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        async def watched_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, watched_send)
        except BodyTooLarge:
            if started:  # an answer is on its way: the connection ends with it
                return
            await too_large(limit)(scope, receive, send)
