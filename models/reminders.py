"""Payment reminders: an approved invoice with something still due is reminded on its
organization's schedule (days after the due date, counted in the organization's time zone),
once per step, until it is paid, voided or its reminders are stopped.

Only the latest step that is due is sent: an invoice 20 days overdue under a schedule of 3, 7
and 14 days gets one reminder (the 14-day one), not three at once, and no earlier step after a
later one. A step is recorded (`invoice_reminders`, unique per invoice and step) once its
e-mail went out or failed for good, together with its timeline events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise import fields
from tortoise.migrations.constraints import UniqueConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.auth import Principal
from models.base import Scope
from models.errors import NotFound
from models.invoices.tables import Invoice, InvoiceEvent


class InvoiceReminder(Model):
    """One step of the schedule, done for one invoice."""

    id = fields.UUIDField(primary_key=True)
    invoice: fields.ForeignKeyRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name=False, on_delete=fields.CASCADE
    )
    days_after_due = fields.SmallIntField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "invoice_reminders"
        constraints = (
            UniqueConstraint(fields=("invoice_id", "days_after_due"), name="invoice_reminders_step_unique"),
        )


class ReminderStop(Model):
    """An invoice whose reminders an owner stopped (a dispute, a payment plan)."""

    id = fields.UUIDField(primary_key=True)
    invoice: fields.OneToOneRelation[Invoice] = fields.OneToOneField(
        "models.Invoice", related_name=False, on_delete=fields.CASCADE
    )
    stopped_by_id = fields.UUIDField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "invoice_reminder_stops"


# For every invoice still owed, the latest step of its organization's schedule whose day has
# come where the organization is, unless that step or a later one was done. $2: one invoice,
# or NULL for all.
_DUE = """
SELECT inv.id, step.day FROM invoices AS inv
JOIN organizations AS o ON o.id = inv.organization_id
CROSS JOIN LATERAL (
    SELECT max(d::int) AS day FROM jsonb_array_elements_text(o.reminder_days) AS d
    WHERE inv.due_date + d::int <= ($1::timestamptz AT TIME ZONE o.timezone)::date
) AS step
WHERE inv.status = 'APPROVED' AND inv.payment_status IN ('UNPAID', 'PARTIALLY_PAID', 'OVERDUE')
  AND inv.amount_paid + inv.credit_applied < inv.total - inv.amount_credited AND step.day IS NOT NULL
  AND ($2::uuid IS NULL OR inv.id = $2::uuid)
  AND NOT EXISTS (SELECT 1 FROM invoice_reminder_stops AS s WHERE s.invoice_id = inv.id)
  AND NOT EXISTS (SELECT 1 FROM invoice_reminders AS r WHERE r.invoice_id = inv.id AND r.days_after_due >= step.day)
ORDER BY inv.due_date, inv.id
"""


async def due_reminders(now: datetime) -> list[tuple[Any, int]]:
    """(invoice id, step) of every reminder due by `now`."""
    rows = await Invoice._meta.db.execute_query_dict(_DUE, [now, None])
    return [(row["id"], row["day"]) for row in rows]


async def reminder_due(invoice_id: Any, step: int, now: datetime) -> bool:
    """Whether the invoice's reminder of `step` is (still) the one due by `now`."""
    rows = await Invoice._meta.db.execute_query_dict(_DUE, [now, str(invoice_id)])
    return bool(rows) and rows[0]["day"] == step


async def record_reminder(invoice_id: Any, step: int, outcomes: list[Any], failure: str | None) -> bool:
    """The step is done: one timeline event per recipient (`REMINDER_SENT` or
    `REMINDER_FAILED`), or one for a failure before any recipient. False when the step had
    already been recorded (nothing is added)."""
    detail = {"daysAfterDue": step}
    async with in_transaction() as connection:
        rows = await connection.execute_query_dict(
            "INSERT INTO invoice_reminders (id, invoice_id, days_after_due, created_at)"
            " VALUES (gen_random_uuid(), $1, $2, now()) ON CONFLICT (invoice_id, days_after_due) DO NOTHING RETURNING id",
            [str(invoice_id), step],
        )
        if not rows:
            return False
        events = [
            InvoiceEvent(
                invoice_id=invoice_id, actor_label="mailer", kind="REMINDER_SENT" if o.delivered else "REMINDER_FAILED",
                detail={**detail, "recipient": o.recipient, "detail": o.detail},
            )
            for o in outcomes
        ]
        if failure:
            events.append(InvoiceEvent(
                invoice_id=invoice_id, actor_label="mailer", kind="REMINDER_FAILED", detail={**detail, "error": failure}
            ))
        await InvoiceEvent.bulk_create(events, using_db=connection)
    return True


async def set_reminders_stopped(principal: Principal, invoice_id: Any, stopped: bool) -> tuple[Invoice, bool]:
    """Stop (or resume) the reminders of an invoice of the principal's organization (owners),
    with a timeline event when it changes. Answers the invoice and whether they are stopped."""
    if principal.scope != Scope.OWNER:
        raise NotFound("No such invoice.", field="invoiceId")
    async with in_transaction() as connection:
        invoice = await Invoice.filter(
            id=invoice_id, organization_id=principal.organization_id
        ).select_for_update().using_db(connection).first()
        if invoice is None:
            raise NotFound(f"No invoice with id {invoice_id}.", field="invoiceId")
        if stopped:
            rows = await connection.execute_query_dict(
                "INSERT INTO invoice_reminder_stops (id, invoice_id, stopped_by_id, created_at)"
                " VALUES (gen_random_uuid(), $1, $2, now()) ON CONFLICT (invoice_id) DO NOTHING RETURNING id",
                [str(invoice.id), str(principal.user.id)],
            )
            changed = bool(rows)
        else:
            changed = bool(await ReminderStop.filter(invoice_id=invoice.id).using_db(connection).delete())
        if changed:
            await InvoiceEvent.create(
                invoice_id=invoice.id, actor_id=principal.user.id, kind="REMINDERS_STOPPED" if stopped else "REMINDERS_RESUMED",
                detail={}, using_db=connection,
            )
    return invoice, stopped

