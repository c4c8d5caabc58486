"""What the worker records about an issued credit note: its PDF (stored once) and the
outcome of its e-mail, each recipient's on the invoice's timeline."""

from __future__ import annotations

from typing import Any

from tortoise.transactions import in_transaction

from models.credit_notes.tables import CreditNote
from models.invoices.tables import DeliveryStatus, InvoiceEvent
from models.outbox import Entity, Transition, record


async def record_pdf(credit_note_id: Any, path: str, sha256: str, size: int) -> bool:
    """Keep the rendered PDF, unless one is kept already (a job run twice): the first stays,
    so the file, its SHA-256 and what was e-mailed never change. True when this one is kept."""
    changed = await CreditNote.filter(id=credit_note_id, pdf_path__isnull=True).update(
        pdf_path=path, pdf_sha256=sha256, pdf_size=size,
    )
    return changed == 1


async def record_delivery(note: CreditNote, outcomes: list[Any], failure: str | None) -> DeliveryStatus:
    """Set the credit note's delivery status (SENT when at least one recipient accepted it)
    and add one event per recipient (or one for a failure before any) to its invoice's timeline."""
    status = DeliveryStatus.SENT if any(o.delivered for o in outcomes) else DeliveryStatus.FAILED
    detail = {"creditNote": str(note.id), "creditNoteNumber": note.number}
    events = [
        InvoiceEvent(
            invoice_id=note.invoice_id, actor_label="mailer",
            kind="CREDIT_NOTE_SENT" if o.delivered else "CREDIT_NOTE_DELIVERY_FAILED",
            detail={**detail, "recipient": o.recipient, "detail": o.detail},
        )
        for o in outcomes
    ]
    if failure:
        events.append(InvoiceEvent(
            invoice_id=note.invoice_id, actor_label="mailer", kind="CREDIT_NOTE_DELIVERY_FAILED",
            detail={**detail, "error": failure},
        ))
    async with in_transaction() as conn:
        await CreditNote.filter(id=note.id).using_db(conn).update(delivery_status=status)
        await InvoiceEvent.bulk_create(events, using_db=conn)
    record(Entity.CREDIT_NOTE, Transition.DELIVERED, [note.id], invoice=note.invoice_id)
    return status
