"""Xero in the background: pushing documents, reading payments back, revoking tokens.

A push is idempotent by our number: the document is looked up in Xero by its number first,
and created only when Xero has none (with an idempotency key, so that a request whose answer
was lost creates it once). A push that Xero or the network refuses for a while is retried
with a doubling delay; every failed attempt is on the invoice's timeline, and the last one
leaves the sync FAILED with Xero's message until an owner pushes again."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

from arq import Retry

from infra import metrics, xero
from infra.settings import Settings
from jobs import dispatch
from jobs.effects import following, runs_effects
from models.actors import Actor
from models.currencies import round_money
from models.errors import DomainError
from models.outbox import Entity, Transition, record
from models.xero import connections, sync
from models.xero.documents import FrozenDocument, account_map, load_view, not_ours, to_xero, xero_url
from models.xero.payments import import_payment
from models.xero.tables import ConnectionStatus, DocumentKind, XeroConnection, XeroSync
from models.xero.tokens import TokenSet, unseal_tokens

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")
# Payments are read again from a little before the last read: Xero's clock and ours differ.
PAYMENTS_OVERLAP = timedelta(minutes=5)


class _Permanent(Exception):
    """A push that cannot succeed until someone changes something (the message says what)."""


# What an exchange answers when it did not do its work (the others did, or had none to do).
_NOT_DONE = ("failed", "refused", "unreadable", "unavailable")


def _counted(kind: str) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Count each exchange of this kind with Xero by outcome: ok, retrying (Xero or the network
    refused for a while), or what it answered when it did not do its work."""

    def counting(exchange: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(exchange)
        async def counted(*args: P.args, **kwargs: P.kwargs) -> T:
            outcome = "failed"
            try:
                result = await exchange(*args, **kwargs)
                outcome = result if isinstance(result, str) and result in _NOT_DONE else "ok"
                return result
            except Retry:
                outcome = "retrying"
                raise
            finally:
                metrics.XERO_SYNCS.labels(kind, outcome).inc()

        return counted

    return counting


def _refresher(settings: Settings) -> Callable[[TokenSet], Awaitable[TokenSet]]:
    async def refresh(tokens: TokenSet) -> TokenSet:
        try:
            return await xero.refresh(settings, tokens.refresh_token)
        except (xero.XeroRefused, xero.XeroUnauthorized) as exc:
            raise connections.ConnectionLost(
                f"Xero refused to renew the connection ({exc.message}): an owner must connect Xero again."
            ) from exc

    return refresh


async def with_token(
    settings: Settings, organization_id: Any, call: Callable[[XeroConnection, str], Awaitable[T]]
) -> T:
    """`call(connection, access_token)` with a fresh token; a token Xero refuses anyway is
    refreshed once and the call made again. A refused refresh marks the connection
    NEEDS_RECONNECT and raises `ConnectionLost`."""
    refresh = _refresher(settings)
    try:
        connection, tokens = await connections.fresh_tokens(settings, organization_id, refresh)
        try:
            return await call(connection, tokens.access_token)
        except xero.XeroUnauthorized:
            connection, tokens = await connections.fresh_tokens(settings, organization_id, refresh, force=True)
            return await call(connection, tokens.access_token)
    except connections.ConnectionLost as exc:
        await connections.connection_lost(organization_id, str(exc))
        raise


async def _push(settings: Settings, view: FrozenDocument) -> tuple[str, str, str]:
    """Push one document: (Xero's id, its deep link, what was done)."""
    try:
        document = to_xero(view, await account_map(view.organization_id))
    except ValueError as exc:
        raise _Permanent(f"Xero cannot take this document: {exc}") from exc
    find = xero.find_credit_note if view.kind == DocumentKind.CREDIT_NOTE else xero.find_invoice

    async def call(connection: XeroConnection, token: str) -> tuple[str, str, str]:
        found = await find(settings, token, connection.tenant_id, view.number)
        if found is None:
            if view.voided:
                raise _Permanent(f"{view.number} is voided and Xero does not have it: nothing to push.")
            created = await xero.create_document(settings, token, connection.tenant_id, document, f"{view.kind.value}-{view.id}")
            return created.xero_id, xero_url(view.kind, created.xero_id, connection.short_code), "created"
        problem = not_ours(view, found.total, found.contact_name)
        if problem:
            raise _Permanent(problem)
        action = "found"
        if view.voided and found.status != "VOIDED":
            await xero.void_document(settings, token, connection.tenant_id, document, found.xero_id)
            action = "voided"
        return found.xero_id, xero_url(view.kind, found.xero_id, connection.short_code), action

    return await with_token(settings, view.organization_id, call)


async def _allocate(settings: Settings, current: XeroSync, view: FrozenDocument, xero_id: str) -> Decimal | None:
    """A credit note Xero has is allocated there to its invoice, once Xero has that too (Xero
    then owes what we say the invoice owes): as much of its credit as the invoice still owes
    in Xero. The amount allocated (0 when Xero had nothing left to allocate: a request whose
    answer was lost did it), or None when it is not for now."""
    if view.kind != DocumentKind.CREDIT_NOTE or view.voided or current.allocated_at is not None:
        return None
    invoice_xero_id = await sync.invoice_in_xero(view.invoice_id)
    if invoice_xero_id is None:
        return None

    async def call(connection: XeroConnection, token: str) -> Decimal:
        credit = await xero.credit_note_balance(settings, token, connection.tenant_id, xero_id)
        owed = await xero.invoice_balance(settings, token, connection.tenant_id, invoice_xero_id)
        amount = round_money(min(credit.remaining, owed.remaining), view.currency)
        if credit.status != "AUTHORISED" or owed.status != "AUTHORISED" or amount <= 0:
            return Decimal(0)
        await xero.allocate_credit_note(
            settings, token, connection.tenant_id, xero_id, invoice_xero_id, amount, view.issue_date, f"ALLOCATION-{view.id}",
        )
        return amount

    return await with_token(settings, view.organization_id, call)


@runs_effects
@_counted("push")
async def push_to_xero(ctx: dict, sync_id: str) -> str:
    settings: Settings = ctx["settings"]
    current = await sync.begin_attempt(sync_id)
    if current is None:
        return "nothing to push"
    try:
        view = await load_view(current.document_kind, current.document_id)
        xero_id, url, action = await _push(settings, view)
        allocated = await _allocate(settings, current, view, xero_id)
    except xero.XeroUnavailable as exc:
        tries = ctx.get("job_try", 1)
        if tries < settings.xero_push_tries:
            await sync.record_failure(current, exc.message, retrying=True)
            raise Retry(defer=exc.retry_after or settings.xero_retry_seconds * 2 ** (tries - 1)) from exc
        await sync.record_failure(current, f"{exc.message} Gave up after {tries} attempts: push again later.", retrying=False)
        return "failed"
    except (xero.XeroRefused, xero.XeroUnauthorized) as exc:
        await sync.record_failure(current, f"Xero refused it: {exc.message}", retrying=False)
        return "refused"
    except (_Permanent, connections.ConnectionLost, DomainError) as exc:
        await sync.record_failure(current, getattr(exc, "message", None) or str(exc), retrying=False)
        return "failed"
    await sync.record_pushed(current, xero_id, url, action, allocated)
    record(Entity.XERO_SYNC, Transition.QUEUED, [s.id for s in await sync.after_push(current, action)])
    return action


async def push_credit_note(redis: Any, credit_note_id: Any) -> bool:
    """A credit note was issued: it goes to Xero when Xero holds the invoice it corrects (its
    push queued at once)."""
    async with following(redis):
        queued = await sync.credit_note_push(credit_note_id, Actor.system("worker"))
        record(Entity.XERO_SYNC, Transition.QUEUED, [queued.id] if queued else [])
    return queued is not None


async def push_at_rollover(redis: Any, organization_id: Any, actor: Actor) -> int:
    """The month rolled over: the organization's approved invoices not yet in Xero are
    pushed, when it asks for it (their pushes queued at once)."""
    async with following(redis):
        queued = await sync.rollover_pushes(organization_id, actor)
        record(Entity.XERO_SYNC, Transition.QUEUED, [s.id for s in queued])
    return len(queued)


@_counted("payments")
async def poll_payments_of(settings: Settings, connection: XeroConnection) -> int:
    """Bring back the payments Xero has for our invoices since the last read: how many were
    recorded (those our rules refuse are on the invoice's timeline instead)."""
    started = datetime.now(UTC)
    since = connection.payments_checked_at - PAYMENTS_OVERLAP if connection.payments_checked_at else None

    async def call(current: XeroConnection, token: str) -> list:
        return await xero.payments(settings, token, current.tenant_id, since)

    recorded = 0
    for seen in await with_token(settings, connection.organization_id, call):
        done = await import_payment(connection.organization_id, seen)
        recorded += done is not None and done.recorded
    await XeroConnection.filter(id=connection.id).update(payments_checked_at=started)
    return recorded


@runs_effects
async def poll_xero_payments(ctx: dict) -> int:
    """Every connected organization's new Xero payments, one organization at a time; one
    that fails is logged and tried again at the next poll."""
    count = 0
    for connection in await XeroConnection.filter(status=ConnectionStatus.CONNECTED):
        try:
            count += await poll_payments_of(ctx["settings"], connection)
        except (xero.XeroError, connections.ConnectionLost) as exc:
            log.warning("Xero payments of organization %s not read: %s", connection.organization_id, exc)
    return count


@runs_effects
async def read_xero_payments(ctx: dict, organization_id: str) -> int:
    """One organization's new Xero payments, now (a webhook said its invoices changed)."""
    connection = await XeroConnection.get_or_none(organization_id=organization_id, status=ConnectionStatus.CONNECTED)
    return await poll_payments_of(ctx["settings"], connection) if connection else 0


@runs_effects
@_counted("revoke")
async def revoke_xero_tokens(ctx: dict, sealed_tokens: str) -> str:
    """Revoke a disconnected organization's refresh token at Xero (its connection goes with it)."""
    tokens = unseal_tokens(ctx["settings"], sealed_tokens)
    if tokens is None:
        return "unreadable"
    try:
        await xero.revoke(ctx["settings"], tokens.refresh_token)
    except xero.XeroUnavailable as exc:
        if ctx.get("job_try", 1) < 5:
            raise Retry(defer=60 * ctx.get("job_try", 1)) from exc
        return "unavailable"
    except xero.XeroError as exc:
        log.info("Xero refused the revocation (already revoked?): %s", exc.message)
    return "revoked"


async def requeue_stalled_pushes(redis: Any, stuck_after: timedelta) -> int:
    """The sweeper's part: pushes that stayed QUEUED (their job was never queued, or lost)."""
    ids = await sync.stalled_syncs(datetime.now(UTC) - stuck_after).values_list("id", flat=True)
    await dispatch.requeue_jobs(redis, dispatch.XERO_PUSH, dispatch.xero_push_job_id, ids)
    return len(ids)

