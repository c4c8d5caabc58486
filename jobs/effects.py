"""What follows a committed change: its new states published, then the work it calls for queued.

Every writer (the API, the command line, the worker and the scheduler) calls one of these once
its transaction has committed, never inside it: a rolled-back change must neither be announced
nor acted on. Events go out before jobs are queued, so that subscribers see a job's own changes
after the change that queued it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from arq import ArqRedis

from infra import events
from jobs import dispatch
from models.invoices import DeliveryStatus, Invoice
from models.payments import Refund


async def invoices_changed(redis: ArqRedis, invoices: Iterable[Invoice]) -> None:
    """Invoices changed state (paid, overdue, failed...): subscribers hear of it."""
    await events.publish(redis, invoices)


async def invoice_ids_changed(redis: ArqRedis, invoice_ids: Iterable[Any]) -> None:
    """As `invoices_changed`, for a writer that holds only ids (a closed month's new
    invoices, a job's invoice): their state is read after the commit."""
    await events.publish_ids(redis, invoice_ids)


async def generation_requested(redis: ArqRedis, invoice_ids: Sequence[Any]) -> None:
    """Invoices moved to GENERATING: announced, then one generation job each."""
    await events.publish_ids(redis, invoice_ids)
    await dispatch.enqueue_generation(redis, invoice_ids)


async def generation_stalled(redis: ArqRedis, invoice_ids: Sequence[Any]) -> None:
    """Invoices GENERATING for too long: their job is queued again (a no-op while it still
    exists). Nothing changed, so nothing is announced."""
    await dispatch.enqueue_generation(redis, invoice_ids)


async def invoices_approved(redis: ArqRedis, invoices: Sequence[Invoice]) -> None:
    """Invoices approved: announced, then sent to the customer where approval queued it."""
    await events.publish(redis, invoices)
    for invoice in invoices:
        if invoice.delivery_status == DeliveryStatus.QUEUED:
            await dispatch.enqueue_send(redis, invoice.id)


async def resend_requested(redis: ArqRedis, invoice: Invoice) -> None:
    """An approved invoice is to be e-mailed again: one send job per request."""
    await events.publish(redis, [invoice])
    await dispatch.enqueue_send(redis, invoice.id, attempt=str(invoice.updated_at.timestamp()))


async def invoices_voided(redis: ArqRedis, invoices: Sequence[Invoice], *, notify_customer: bool) -> None:
    """Invoices voided: announced, and the customer told when asked for."""
    await events.publish(redis, invoices)
    if notify_customer:
        for invoice in invoices:
            await dispatch.enqueue_notification(redis, invoice.id, "voided")


async def refund_recorded(redis: ArqRedis, invoice: Invoice, refund: Refund, *, notify_customer: bool) -> None:
    """A payment was refunded: announced, and the customer told when asked for."""
    await events.publish(redis, [invoice])
    if notify_customer:
        await dispatch.enqueue_notification(redis, invoice.id, "refunded", refund.id)


async def token_revoked(redis: ArqRedis, token_id: Any) -> None:
    """A token was revoked: every web process ends its subscriptions at once."""
    await events.publish_revoked(redis, token_id)


async def cost_import_requested(redis: ArqRedis, cost_import_id: Any) -> None:
    """A cost delivery is stored and registered: one import job runs it."""
    await dispatch.enqueue_cost_import(redis, cost_import_id)
