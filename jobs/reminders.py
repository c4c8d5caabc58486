"""The reminder jobs: every hour, the payment reminders that are due are queued, one job per
invoice and step; each e-mails the invoice's PDF to the account's billing e-mails."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from infra import storage
from jobs import dispatch
from jobs.effects import runs_effects
from jobs.locales import money_value
from jobs.mailer import Attachment, render_reminder_email
from jobs.send import NO_RECIPIENTS, invoice_email_context, mail
from models.invoices import Invoice, amount_due
from models.invoices.tables import InvoiceRevision
from models.managed_accounts import ManagedAccount
from models.organizations import Organization
from models.reminders import due_reminders, record_reminder, reminder_due

log = logging.getLogger(__name__)


@runs_effects
async def queue_due_reminders(ctx: dict, now: datetime | None = None) -> int:
    """Queue the reminders due by `now` (default: the current time). Hourly, like the
    overdue marking: each organization's day starts at another hour. A job already queued
    for an invoice and step is not queued twice (its id is theirs)."""
    now = now or datetime.now(UTC)
    due = await due_reminders(now)
    for invoice_id, step in due:
        await dispatch.enqueue_reminder(ctx["redis"], invoice_id, step, now.isoformat())
    if due:
        log.info("%d payment reminders queued", len(due))
    return len(due)


@runs_effects
async def send_reminder(ctx: dict, invoice_id: str, step: int, as_of: str) -> str:
    """E-mail one reminder, if it is still the one due as of when it was queued (`as_of`: not
    paid, voided or stopped since), and record it on the timeline."""
    now = datetime.fromisoformat(as_of)
    if not await reminder_due(invoice_id, step, now):
        return "not due"
    invoice = await Invoice.get(id=invoice_id)
    account = await ManagedAccount.get(id=invoice.managed_account_id)
    if not account.billing_emails:
        await record_reminder(invoice.id, step, [], NO_RECIPIENTS)
        return "no recipients"
    organization = await Organization.get(id=invoice.organization_id)
    revision = await InvoiceRevision.get(id=invoice.current_revision_id)
    assert invoice.due_date is not None and revision.pdf_path is not None, "an approved invoice is complete"
    today = now.astimezone(ZoneInfo(organization.timezone)).date()
    subject, text = render_reminder_email({
        **invoice_email_context(invoice, revision), "days_after_due": (today - invoice.due_date).days,
        "amount_due": money_value(amount_due(invoice), invoice.currency, revision.locale),
    })
    pdf = await asyncio.to_thread(storage.load, ctx["settings"], revision.pdf_path)
    outcomes, failure = await mail(
        ctx, invoice.organization_id, to=list(account.billing_emails), subject=subject, text=text,
        attachments=[Attachment(filename=f"{invoice.number}.pdf", content=pdf)],
    )
    await record_reminder(invoice.id, step, outcomes, failure)
    return "sent" if any(o.delivered for o in outcomes) else "failed"
