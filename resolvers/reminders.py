"""Payment reminders: stopping and resuming them per invoice."""

from __future__ import annotations

import strawberry

from models import reminders
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid
from schema.core.permissions import OWNERS
from schema.invoices import Invoice
from schema.reminders import RemindersChanged, RemindersPayload


async def _set(info: Info, invoice_id: strawberry.ID, stopped: bool) -> RemindersChanged:
    invoice, now_stopped = await reminders.set_reminders_stopped(
        info.context.authenticated(), node_uuid(invoice_id, "Invoice", "invoiceId"), stopped
    )
    return RemindersChanged(invoice=Invoice.from_model(invoice), reminders_stopped=now_stopped)


@strawberry.type
class Mutation:
    @mutation(
        description="Send this invoice no more payment reminders (a dispute, a payment plan); "
        "the organization's `reminderDays` schedule goes on for the others.",
        scopes=OWNERS,
    )
    async def stop_reminders(self, info: Info, invoice_id: strawberry.ID) -> RemindersPayload:
        return await _set(info, invoice_id, True)

    @mutation(
        description="Remind this invoice again on the schedule (the next step due is sent at the "
        "next hourly run; steps already sent are not sent again).",
        scopes=OWNERS,
    )
    async def resume_reminders(self, info: Info, invoice_id: strawberry.ID) -> RemindersPayload:
        return await _set(info, invoice_id, False)
