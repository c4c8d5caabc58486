"""What the logs say, and how: lines for a person, or JSON for a log pipeline (LOG_FORMAT).

A signed link is its own credential for its minutes (`/files/<token>`), and the Xero callback's
`code` and `state` complete a connection: whoever reads the log could use either. uvicorn's access
log writes every request's path and query, so its records pass through `AccessLogRedaction`
first, which keeps the route and hides those values. With LOG_FORMAT=json every line also passes
through `SecretRedaction`, which hides a bearer token or a URL's password wherever a message or
a traceback would carry one.

Every request gets an id (`RequestIds`): the one a proxy sent as X-Request-Id when it is fit to
log, else a new one; it is answered in the same header and written on each of the request's
lines, with its operation and organization (`infra.log_context`), and it goes on into the jobs
the request queues, whose lines carry it beside their own job id and function.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from infra import log_context
from infra.settings import Settings

ACCESS_LOGGER = "uvicorn.access"
HIDDEN = "[hidden]"
# OAuth's parameters (RFC 6749), and GraphQL variables sent with GET.
SECRET_PARAMETERS = ("code", "state", "session_state", "token", "access_token", "id_token", "variables")
_LINK = re.compile(r"^/files/[^?]*")
_PARAMETER = re.compile(rf"(?i)(^|&)({'|'.join(SECRET_PARAMETERS)})=[^&]*")
# A bearer token, the password of a URL (a DSN in a connection error), and a sealed value (a
# Fernet token: Xero's tokens as a revocation job's argument, which arq writes when it starts).
_SECRETS = (
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), rf"\1{HIDDEN}"),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@]*:)[^@\s/]+@"), rf"\1{HIDDEN}@"),
    (re.compile(r"\bgAAAAA[A-Za-z0-9_=-]+"), HIDDEN),
)
# The loggers that bring their own handlers (uvicorn's, arq's): in JSON they write through ours.
OWN_HANDLERS = ("uvicorn", "uvicorn.error", ACCESS_LOGGER, "arq", "arq.worker")
REQUEST_ID_HEADER = b"x-request-id"


def redacted(path: str) -> str:
    """`path` (with its query) with link tokens and secret parameters' values hidden."""
    route, separator, query = path.partition("?")
    route = _LINK.sub(f"/files/{HIDDEN}", route)
    return route + separator + _PARAMETER.sub(rf"\1\2={HIDDEN}", query)


def without_secrets(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class AccessLogRedaction(logging.Filter):
    """uvicorn's access records, `(client, method, path, http version, status)`, with the path
    redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redacted(args[2]), *args[3:])
        return True


def redact_access_log() -> None:
    """Install the redaction on uvicorn's access logger (once, however many apps are made)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, AccessLogRedaction) for existing in logger.filters):
        logger.addFilter(AccessLogRedaction())


class SecretRedaction(logging.Filter):
    """The record's message and traceback, formatted now, with secrets hidden."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = without_secrets(record.getMessage()), None
        # uvicorn's second copy of a message, with terminal colours: the JSON line has it once.
        record.__dict__.pop("color_message", None)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            # Written from the text alone: formatters format `exc_info` afresh when it is there.
            record.exc_text, record.exc_info = without_secrets(record.exc_text), None
        if record.stack_info:
            record.stack_info = without_secrets(record.stack_info)
        return True


class WorkFields(logging.Filter):
    """The fields of the work under way (`infra.log_context`) on each record, null when unset."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = log_context.current()
        for name in log_context.FIELDS:
            setattr(record, name, current.get(name))
        return True


class _JsonHandler(logging.StreamHandler):
    """The one handler of LOG_FORMAT=json, on the root logger."""


def json_handler() -> logging.Handler:
    handler = _JsonHandler(sys.stderr)
    handler.addFilter(WorkFields())
    handler.addFilter(SecretRedaction())
    handler.setFormatter(JsonFormatter(
        "{levelname}{name}{message}", style="{", timestamp="time",
        rename_fields={"levelname": "level", "name": "logger"},
    ))
    return handler


def configure_logging(settings: Settings) -> None:
    """The access log redacted; with LOG_FORMAT=json, every logger (uvicorn's and arq's
    included) writing JSON lines to stderr through one handler. Once, however often called."""
    redact_access_log()
    if settings.log_format != "json":
        return
    root = logging.getLogger()
    if not any(isinstance(handler, _JsonHandler) for handler in root.handlers):
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(json_handler())
    root.setLevel(logging.INFO)
    for name in OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


class RequestIds:
    """ASGI middleware: each HTTP request and WebSocket gets its id, bound for the logs while
    it is served and answered in X-Request-Id."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER)
        request_id = log_context.request_id(sent.decode("latin-1") if sent else None)

        async def send_with_id(message: Any) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        with log_context.bound(request_id=request_id):
            await self.app(scope, receive, send_with_id)
