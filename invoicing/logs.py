"""What the access log may say of a request.

A signed link is its own credential for its minutes (`/files/<token>`), and the Xero callback's
`code` and `state` complete a connection: whoever reads the log could use either. uvicorn's access
log writes every request's path and query, so its records pass through `AccessLogRedaction`
first, which keeps the route and hides those values.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
HIDDEN = "[hidden]"
# OAuth's parameters (RFC 6749), and GraphQL variables sent with GET.
SECRET_PARAMETERS = ("code", "state", "session_state", "token", "access_token", "id_token", "variables")
_LINK = re.compile(r"^/files/[^?]*")
_PARAMETER = re.compile(rf"(?i)(^|&)({'|'.join(SECRET_PARAMETERS)})=[^&]*")


def redacted(path: str) -> str:
    """`path` (with its query) with link tokens and secret parameters' values hidden."""
    route, separator, query = path.partition("?")
    route = _LINK.sub(f"/files/{HIDDEN}", route)
    return route + separator + _PARAMETER.sub(rf"\1\2={HIDDEN}", query)


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
