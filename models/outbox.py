"""What a unit of work changed, told by the domain to whatever follows its commits.

A domain operation records each transition it made (`record`) once its transaction has
committed, never inside it: a change that rolls back raises before its record line, so it is
neither announced nor acted on. A transaction that calls such operations within it (their
commit is then its own) opens with `transaction()`: their records wait for its commit and go
with its rollback. The records go to the outbox of the unit of work around it
(a mutation, a command, a job), which hands them to `jobs.effects` once it is over. Outside
any unit of work (a test calling the domain directly) nothing is collected: the domain never
knows what follows its changes, only which changes it made."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tortoise.transactions import in_transaction


class Entity(StrEnum):
    INVOICE = "INVOICE"
    PERIOD = "PERIOD"
    PAYMENT = "PAYMENT"
    CREDIT_NOTE = "CREDIT_NOTE"
    COST_IMPORT = "COST_IMPORT"
    TOKEN = "TOKEN"
    USER = "USER"
    INVITATION = "INVITATION"
    XERO_SYNC = "XERO_SYNC"
    XERO_CONNECTION = "XERO_CONNECTION"
    COST_SOURCE = "COST_SOURCE"
    WEBHOOK_DELIVERY = "WEBHOOK_DELIVERY"
    WEBHOOK_ENDPOINT = "WEBHOOK_ENDPOINT"


class Transition(StrEnum):
    CHANGED = "CHANGED"
    GENERATION_REQUESTED = "GENERATION_REQUESTED"
    GENERATED = "GENERATED"
    APPROVED = "APPROVED"
    RESEND_REQUESTED = "RESEND_REQUESTED"
    DELIVERED = "DELIVERED"
    VOIDED = "VOIDED"
    CLOSED = "CLOSED"
    RECORDED = "RECORDED"
    REFUNDED = "REFUNDED"
    ISSUED = "ISSUED"
    APPLIED = "APPLIED"
    CREDIT_REFUNDED = "CREDIT_REFUNDED"
    QUEUED = "QUEUED"
    REVOKED = "REVOKED"
    SCOPE_CHANGED = "SCOPE_CHANGED"
    DEACTIVATED = "DEACTIVATED"
    CREATED = "CREATED"
    DISCONNECTED = "DISCONNECTED"
    INVOICES_CHANGED = "INVOICES_CHANGED"
    OVERDUE = "OVERDUE"
    REISSUED = "REISSUED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    FAILING = "FAILING"
    DISABLED = "DISABLED"


@dataclass(frozen=True)
class Happened:
    """One committed transition: what it changed (rows, or their ids) and the details its
    effect needs (whether the customer is to be told, the refund...)."""

    entity: Entity
    transition: Transition
    subjects: tuple[Any, ...]
    details: dict[str, Any] = field(default_factory=dict)


_outbox: ContextVar[list[Happened] | None] = ContextVar("outbox", default=None)


def record(entity: Entity, transition: Transition, subjects: Iterable[Any], **details: Any) -> None:
    """Tell the unit of work that this transition committed, for these rows (none: nothing
    happened, nothing is recorded)."""
    outbox = _outbox.get()
    subjects = tuple(subjects)
    if outbox is not None and subjects:
        outbox.append(Happened(entity, transition, subjects, details))


@contextlib.contextmanager
def collecting() -> Iterator[list[Happened]]:
    """A unit of work: the transitions recorded within it, in the order they committed. A
    unit of work within another (a job's step that is a unit of its own) keeps its own."""
    outbox: list[Happened] = []
    token = _outbox.set(outbox)
    try:
        yield outbox
    finally:
        _outbox.reset(token)


@contextlib.asynccontextmanager
async def transaction() -> AsyncIterator[Any]:
    """`in_transaction()` for a transaction that calls recording operations: what they record
    reaches the unit of work once it committed, and nothing if it rolls back."""
    outer = _outbox.get()
    held: list[Happened] = []
    token = _outbox.set(held if outer is not None else None)
    try:
        async with in_transaction() as connection:
            yield connection
    finally:
        _outbox.reset(token)
    if outer is not None:
        outer.extend(held)
