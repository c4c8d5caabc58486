"""Marking approved invoices OVERDUE once their due date has passed in the organization's
time zone."""

from __future__ import annotations

from datetime import datetime

from tortoise.transactions import in_transaction

from models.actors import Actor
from models.invoices.tables import Invoice, InvoiceEvent, PaymentStatus
from models.outbox import Entity, Transition, record

# One statement for every organization: "today" is taken in each organization's time zone,
# so an invoice due on the 5th turns overdue at midnight on the 6th where the MSP is. Only
# UNPAID and PARTIALLY_PAID invoices match, so running it again changes nothing; the lock in
# the sub-select makes a payment committing meanwhile either come first (and be seen) or wait.
_MARK_OVERDUE = """
UPDATE invoices AS i SET payment_status = 'OVERDUE', updated_at = $1
FROM (
    SELECT inv.id, inv.payment_status FROM invoices AS inv
    JOIN organizations AS o ON o.id = inv.organization_id
    WHERE inv.status = 'APPROVED' AND inv.payment_status IN ('UNPAID', 'PARTIALLY_PAID')
      AND inv.amount_paid + inv.credit_applied < inv.total - inv.amount_credited
      AND inv.due_date < ($1::timestamptz AT TIME ZONE o.timezone)::date
    FOR UPDATE OF inv
) AS before
WHERE i.id = before.id
RETURNING i.id, i.due_date, before.payment_status AS previous
"""


async def mark_overdue(now: datetime, actor: Actor) -> list[Invoice]:
    """Mark what fell due before `now` (in each organization's time zone) OVERDUE, with a
    timeline event each; returns the invoices changed, read after commit."""
    async with in_transaction() as conn:
        rows = await conn.execute_query_dict(_MARK_OVERDUE, [now])
        await InvoiceEvent.bulk_create([
            InvoiceEvent(
                invoice_id=row["id"], actor_id=actor.user_id, actor_label=actor.label, kind="OVERDUE",
                detail={"dueDate": row["due_date"].isoformat(), "paymentStatus": PaymentStatus.OVERDUE.value,
                        "previousPaymentStatus": row["previous"]},
            )
            for row in rows
        ], using_db=conn)
    if not rows:
        return []
    changed = await Invoice.filter(id__in=[row["id"] for row in rows]).order_by("due_date", "id")
    record(Entity.INVOICE, Transition.OVERDUE, changed)
    return changed
