"""Who causes a change, as every timeline (invoices, periods, payments, Xero pushes) and the
audit log record it.

The unit of work around a change (a mutation, a command) says who acts with `acting(actor)`;
`current()` is that actor wherever the change is written, so that a domain operation records
who made it without every signature carrying a request."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Actor:
    """Who causes a change: a user (through the token it presented, from an address), or a
    named part of the system (`cli`, `worker`)."""

    user_id: Any = None
    label: str = ""
    token_id: Any = None
    address: str | None = None

    @classmethod
    def system(cls, label: str) -> Actor:
        return cls(label=label)


_acting: ContextVar[Actor | None] = ContextVar("acting", default=None)


@contextlib.contextmanager
def acting(actor: Actor) -> Iterator[Actor]:
    """Changes made within are made by `actor`."""
    token = _acting.set(actor)
    try:
        yield actor
    finally:
        _acting.reset(token)


def current() -> Actor:
    """Who is acting now; the system itself where no unit of work said (a job, the scheduler)."""
    return _acting.get() or Actor.system("system")
