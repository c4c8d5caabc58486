"""What a log line says of the work it was written for: the request, its operation and
organization, the job and its function.

Each is a context variable, set where the work starts (a request's middleware, the GraphQL
operation, a job's unit of work) and read by the log filter of `invoicing.logs`, so that no
call of `log.info` names them. A request's id and organization travel on into the jobs it
queues (`carried`, added to the job's keyword arguments by `jobs.dispatch`), so that one id
follows a change from the click to the e-mail."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

FIELDS = ("request_id", "operation", "organization_id", "job_id", "function")
_VARS: dict[str, ContextVar[str | None]] = {name: ContextVar(f"log_{name}", default=None) for name in FIELDS}
# What a request hands on to the jobs it queues.
CARRIED = ("request_id", "organization_id")
# A request id a client or a proxy sent (X-Request-Id) is kept when it is plainly an id: it
# is written to every line, so nothing else (no newline, no markup, no long text) gets in.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def request_id(sent: str | None) -> str:
    """The id of a request: the one it came with (a proxy's), if fit to log, else a new one."""
    return sent if sent and _CLIENT_ID.match(sent) else uuid.uuid4().hex


def current() -> dict[str, str]:
    """The fields set for the work under way."""
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}


def carried() -> dict[str, str]:
    """What a job queued now carries of the request that queued it."""
    return {name: value for name in CARRIED if (value := _VARS[name].get()) is not None}


def get(name: str) -> str | None:
    return _VARS[name].get()


def mark(**values: Any) -> None:
    """The fields given set for the rest of the task (one that runs a single job)."""
    for name, value in values.items():
        _VARS[name].set(str(value))


@contextlib.contextmanager
def bound(**values: Any) -> Iterator[None]:
    """The fields given (None ones left as they are) set for the block."""
    tokens = [(_VARS[name], _VARS[name].set(str(value))) for name, value in values.items() if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            try:
                var.reset(token)
            except ValueError:  # ended in another context (a stream closed by another task)
                var.set(None)
