"""Recording what happened to an invoice's e-mails: the invoice itself, and the notices
sent to the customer when it is voided or refunded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from models.invoices.tables import DeliveryStatus, Invoice, InvoiceEvent
from models.outbox import Entity, Transition, record


async def record_delivery(invoice_id: Any, outcomes: list[Any], failure: str | None) -> DeliveryStatus:
    """Set `delivery_status` (SENT when at least one recipient accepted it) and add one
    timeline event per recipient, or one for a failure before any recipient."""
    status = DeliveryStatus.SENT if any(o.delivered for o in outcomes) else DeliveryStatus.FAILED
    async with in_transaction() as conn:
        await Invoice.filter(id=invoice_id).using_db(conn).update(
            delivery_status=status, updated_at=datetime.now(UTC)
        )
        await InvoiceEvent.bulk_create(
            _events(invoice_id, outcomes, failure, ("SENT", "DELIVERY_FAILED"), {}), using_db=conn
        )
    record(Entity.INVOICE, Transition.DELIVERED, [invoice_id])
    return status


async def record_void_copy(invoice_id: Any, path: str) -> bool:
    """Keep the path of a voided invoice's copy marked VOID, unless one is kept already (its
    revision's frozen PDF is never touched); whether this one was kept."""
    return await Invoice.filter(id=invoice_id, void_pdf_path__isnull=True).update(void_pdf_path=path) == 1


async def record_notification(invoice_id: Any, notice: str, outcomes: list[Any], failure: str | None) -> None:
    """Add the outcome of a notice (`voided`, `refunded`, `credit_refunded`) to the timeline,
    one event per recipient; the invoice's own delivery status is not the notice's."""
    await InvoiceEvent.bulk_create(_events(
        invoice_id, outcomes, failure, ("NOTIFICATION_SENT", "NOTIFICATION_FAILED"), {"notice": notice},
    ))


def _events(invoice_id: Any, outcomes: list[Any], failure: str | None, kinds: tuple[str, str], detail: dict):
    sent, failed = kinds
    events = [
        InvoiceEvent(
            invoice_id=invoice_id, actor_label="mailer", kind=sent if o.delivered else failed,
            detail={**detail, "recipient": o.recipient, "detail": o.detail},
        )
        for o in outcomes
    ]
    if failure:
        events.append(InvoiceEvent(
            invoice_id=invoice_id, actor_label="mailer", kind=failed, detail={**detail, "error": failure},
        ))
    return events
