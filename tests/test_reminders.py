"""Payment reminders on the organization's schedule, in its time zone: once per step, with the
PDF, on the timeline, stoppable per invoice. Real arq worker and SMTP server."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest
from strawberry.relay import to_base64

from infra import broker, storage
from jobs.reminders import queue_due_reminders
from jobs.rendering import sample_view
from models import BillingPeriod, Invoice, InvoiceEvent
from models.reminders import due_reminders
from tests import factories as f
from tests.graphql import error_codes, gql

RECIPIENTS = ["ap@contoso.example", "cfo@contoso.example"]
# Auckland is UTC+13 in summer: 1 December starts there at 11:00 UTC on 30 November.
BEFORE_MIDNIGHT = datetime(2026, 11, 30, 10, 59, tzinfo=UTC)
AFTER_MIDNIGHT = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
STOP = """mutation($id: ID!) { stopReminders(invoiceId: $id) { __typename
  ... on RemindersChanged { remindersStopped invoice { number } } ... on UserError { code } } }"""
RESUME = """mutation($id: ID!) { resumeReminders(invoiceId: $id) { __typename
  ... on RemindersChanged { remindersStopped } ... on UserError { code } } }"""


async def _overdue(world, settings, *, number="INV-2026-0042", due=date(2026, 11, 30), account=None):
    """An approved invoice with its PDF, due on `due` (30 days' terms)."""
    account = account or world.account
    account.billing_emails = RECIPIENTS
    await account.save()
    world.org.timezone, world.org.reminder_days = "Pacific/Auckland", [1, 7]
    await world.org.save()
    period = await BillingPeriod.get_or_none(organization_id=world.org.id) or await f.billing_period(
        world.org, date(2026, 10, 1)
    )
    pdf_path = f"invoices/{number}.pdf"
    storage.save(settings, pdf_path, b"%PDF-1.4 reminder test")
    return await f.generated_invoice(
        account, period, number=number, status="APPROVED", snapshot=sample_view(), pdf_path=pdf_path,
        issue_date=date.fromordinal(due.toordinal() - account.payment_terms_days),
    )


async def test_the_first_step_is_due_at_midnight_after_the_due_date_where_the_msp_is(world, settings):
    invoice = await _overdue(world, settings)
    assert await due_reminders(BEFORE_MIDNIGHT) == []
    assert await due_reminders(AFTER_MIDNIGHT) == [(invoice.id, 1)]
    # The 7-day step: 7 December in Auckland, still 6 December in UTC.
    assert await due_reminders(datetime(2026, 12, 6, 11, 0, tzinfo=UTC)) == [(invoice.id, 7)]


async def _events(invoice, kind, count):
    for _ in range(300):
        events = await InvoiceEvent.filter(invoice_id=invoice.id, kind=kind).order_by("id")
        if len(events) >= count:
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} {kind} events")


async def test_the_worker_emails_each_step_once_with_the_pdf_on_the_timeline(world, settings, redis, worker, smtp):
    _, mailbox = smtp
    world.org.email_reply_to = "ar@northwind.example"
    invoice = await _overdue(world, settings)
    ctx = {"redis": redis}
    assert await queue_due_reminders(ctx, BEFORE_MIDNIGHT) == 0
    assert await queue_due_reminders(ctx, AFTER_MIDNIGHT) == 1
    events = await _events(invoice, "REMINDER_SENT", 2)
    assert [(e.detail["recipient"], e.detail["daysAfterDue"], e.actor_label) for e in events] == [
        (r, 1, "mailer") for r in RECIPIENTS]
    ((recipients, message),) = mailbox.messages
    assert sorted(recipients) == RECIPIENTS
    assert " ".join(message["Subject"].split()).startswith("Reminder: invoice INV-2026-0042")
    assert message["Reply-To"] == "ar@northwind.example"
    body, attachment = message.get_payload()
    assert "(1 days ago)" in body.get_payload(decode=True).decode()
    assert attachment.get_filename() == "INV-2026-0042.pdf"
    assert attachment.get_payload(decode=True) == b"%PDF-1.4 reminder test"
    # Once per step: the next runs of the same day queue nothing.
    assert await queue_due_reminders(ctx, AFTER_MIDNIGHT) == 0
    assert await queue_due_reminders(ctx, datetime(2026, 12, 6, 11, 0, tzinfo=UTC)) == 1
    await _events(invoice, "REMINDER_SENT", 4)
    assert len(mailbox.messages) == 2
    assert await queue_due_reminders(ctx, datetime(2027, 1, 30, tzinfo=UTC)) == 0


async def test_only_the_latest_step_due_is_sent(world, settings):
    invoice = await _overdue(world, settings)
    later = datetime(2026, 12, 20, tzinfo=UTC)
    assert await due_reminders(later) == [(invoice.id, 7)]


async def test_paid_voided_and_stopped_invoices_are_not_reminded(client, world, settings):
    paid = await _overdue(world, settings, number="INV-2026-0001")
    await Invoice.filter(id=paid.id).update(amount_paid=paid.total, payment_status="PAID")
    voided = await _overdue(world, settings, number="INV-2026-0002", account=world.other_account)
    await Invoice.filter(id=voided.id).update(status="VOIDED", voided_at=datetime.now(UTC))
    third = await f.managed_account(world.org, name="Wingtip")
    stopped = await _overdue(world, settings, number="INV-2026-0003", account=third)
    assert await due_reminders(AFTER_MIDNIGHT) == [(stopped.id, 1)]
    result = await gql(client, STOP, {"id": to_base64("Invoice", str(stopped.id))}, token=world.tokens["owner"])
    assert result["data"]["stopReminders"] == {
        "__typename": "RemindersChanged", "remindersStopped": True, "invoice": {"number": "INV-2026-0003"},
    }
    assert await due_reminders(AFTER_MIDNIGHT) == []
    assert await InvoiceEvent.filter(invoice_id=stopped.id, kind="REMINDERS_STOPPED").count() == 1
    shown = 'query { invoices(first: 5, orderBy: {field: NUMBER, direction: ASC}) { edges { node { number remindersStopped } } } }'
    listed = (await gql(client, shown, token=world.tokens["viewer"]))["data"]["invoices"]["edges"]
    assert [(e["node"]["number"], e["node"]["remindersStopped"]) for e in listed] == [
        ("INV-2026-0001", False), ("INV-2026-0002", False), ("INV-2026-0003", True),
    ]
    resumed = await gql(client, RESUME, {"id": to_base64("Invoice", str(stopped.id))}, token=world.tokens["owner"])
    assert resumed["data"]["resumeReminders"]["remindersStopped"] is False
    assert await due_reminders(AFTER_MIDNIGHT) == [(stopped.id, 1)]


@pytest.mark.parametrize("role", ["viewer", "customer", "foreign_owner"])
async def test_only_owners_stop_reminders_of_their_own_invoices(client, world, settings, role):
    invoice = await _overdue(world, settings)
    result = await gql(client, STOP, {"id": to_base64("Invoice", str(invoice.id))}, token=world.tokens[role])
    if role == "foreign_owner":
        assert result["data"]["stopReminders"]["code"] == "NOT_FOUND"
    else:
        assert error_codes(result) == ["FORBIDDEN"]
    assert await due_reminders(AFTER_MIDNIGHT) == [(invoice.id, 1)]


async def test_an_account_without_billing_emails_gets_one_failed_reminder(world, settings, redis, worker):
    invoice = await _overdue(world, settings)
    world.account.billing_emails = []
    await world.account.save()
    await queue_due_reminders({"redis": redis}, AFTER_MIDNIGHT)
    (event,) = await _events(invoice, "REMINDER_FAILED", 1)
    assert "no billing e-mails" in event.detail["error"]
    assert await queue_due_reminders({"redis": redis}, AFTER_MIDNIGHT) == 0
    assert await redis.zcard(broker.QUEUE_NAME) == 0
