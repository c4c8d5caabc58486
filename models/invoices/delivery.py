"""Recording what happened to an invoice's e-mail."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tortoise.transactions import in_transaction

from models.invoices.tables import DeliveryStatus, Invoice, InvoiceEvent


async def record_delivery(invoice_id: Any, outcomes: list[Any], failure: str | None) -> DeliveryStatus:
    """Set `delivery_status` (SENT when at least one recipient accepted it) and add one
    timeline event per recipient, or one for a failure before any recipient."""
    status = DeliveryStatus.SENT if any(o.delivered for o in outcomes) else DeliveryStatus.FAILED
    async with in_transaction() as conn:
        await Invoice.filter(id=invoice_id).using_db(conn).update(
            delivery_status=status, updated_at=datetime.now(timezone.utc)
        )
        events = [
            InvoiceEvent(
                invoice_id=invoice_id, actor_label="mailer", kind="SENT" if o.delivered else "DELIVERY_FAILED",
                detail={"recipient": o.recipient, "detail": o.detail},
            )
            for o in outcomes
        ]
        if failure:
            events.append(InvoiceEvent(
                invoice_id=invoice_id, actor_label="mailer", kind="DELIVERY_FAILED", detail={"error": failure},
            ))
        await InvoiceEvent.bulk_create(events, using_db=conn)
    return status
