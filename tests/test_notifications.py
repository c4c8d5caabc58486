"""Customers hear about approved, voided and refunded invoices unless the owner says not to;
every notice's outcome goes on the timeline. Real arq worker, real SMTP server."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from strawberry.relay import to_base64

from infra import broker
from jobs.rendering import sample_view
from models import Invoice, InvoiceEvent
from tests import factories as f
from tests.graphql import gql
from tests.workers import idle

VOID = """mutation($ids: [ID!]!, $notify: Boolean!) { voidInvoices(ids: $ids, notifyCustomer: $notify,
  reason: "Billed twice") { ... on InvoiceActionResults { results { error { code } } } } }"""
PAY = """mutation($id: ID!) { recordPayment(input: {invoiceId: $id, amount: "30.75", paidOn: "2024-10-10",
  method: BANK_TRANSFER}) { ... on PaymentRecorded { payment { id } } } }"""
REFUND = """mutation($id: ID!, $notify: Boolean!) { refundPayment(input: {paymentId: $id, amount: "10.75",
  refundedOn: "2024-10-11", notifyCustomer: $notify}) { __typename } }"""
APPROVE = """mutation($ids: [ID!]!, $notify: Boolean!) { approveInvoices(ids: $ids, notifyCustomer: $notify) {
  ... on InvoiceActionResults { results { invoice { status deliveryStatus } } } } }"""
RECIPIENTS = ["ap@contoso.example", "cfo@contoso.example"]


async def _invoice(world, status="APPROVED", emails=RECIPIENTS, number="INV-2024-0042", month=date(2024, 9, 1)):
    world.account.billing_emails = emails
    await world.account.save()
    period = await f.billing_period(world.org, month)
    return await f.generated_invoice(
        world.account, period, number=number, status=status, snapshot=sample_view(),
        issue_date=date.today() - timedelta(days=1),
    )


def _gid(invoice):
    return to_base64("Invoice", str(invoice.id))


async def _notices(invoice, count):
    for _ in range(300):
        events = await InvoiceEvent.filter(invoice_id=invoice.id, kind__startswith="NOTIFICATION").order_by("id")
        if len(events) >= count:
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} notification events")


async def test_voiding_an_approved_invoice_tells_the_billing_emails(client, world, worker, smtp):
    _, mailbox = smtp
    invoice = await _invoice(world)
    await gql(client, VOID, {"ids": [_gid(invoice)], "notify": True}, token=world.tokens["owner"])
    events = await _notices(invoice, 2)
    assert [(e.kind, e.detail["notice"], e.detail["recipient"], e.actor_label) for e in events] == [
        ("NOTIFICATION_SENT", "voided", r, "mailer") for r in RECIPIENTS]
    ((recipients, message),) = mailbox.messages
    assert sorted(recipients) == RECIPIENTS
    assert " ".join(message["Subject"].split()) == f"Invoice INV-2024-0042 from {sample_view()['msp']['company_name']} has been voided"
    assert "Reason: Billed twice" in message.get_payload(decode=True).decode()


async def test_a_refund_tells_the_billing_emails_its_amount(client, world, worker, smtp):
    _, mailbox = smtp
    invoice = await _invoice(world)
    paid = await gql(client, PAY, {"id": _gid(invoice)}, token=world.tokens["owner"])
    payment = paid["data"]["recordPayment"]["payment"]["id"]
    await gql(client, REFUND, {"id": payment, "notify": True}, token=world.tokens["owner"])
    await _notices(invoice, 2)
    ((_, message),) = mailbox.messages
    assert " ".join(message["Subject"].split()).startswith("Refund for invoice INV-2024-0042")
    assert "refunded 10.75 USD on invoice INV-2024-0042" in message.get_payload(decode=True).decode()


async def test_a_refund_of_credit_tells_the_billing_emails_its_amount_and_credit_note(client, world, worker, smtp, redis):
    from models import CreditNote
    from tests.test_credit_notes import REFUND as REFUND_CREDIT
    from tests.test_credit_notes import approved, credit, pay

    _, mailbox = smtp
    world.account.billing_emails = RECIPIENTS
    await world.account.save()
    invoice = await approved(world.account, "INV-2024-0042", snapshot=sample_view())
    await pay(client, world, invoice, "183.00")
    note = (await credit(client, world, invoice, mode="AMOUNT", amount="50"))["creditNote"]
    for amount, notify in (("5", False), ("20", True)):
        done = await gql(client, REFUND_CREDIT, {"input": {
            "creditNoteId": note["id"], "amount": amount, "refundedOn": str(date.today()), "notifyCustomer": notify,
        }}, token=world.tokens["owner"])
        assert done["data"]["refundCredit"]["__typename"] == "CreditRefunded", done
    events = await _notices(invoice, 2)
    assert [(e.kind, e.detail["notice"], e.detail["recipient"]) for e in events] == [
        ("NOTIFICATION_SENT", "credit_refunded", r) for r in RECIPIENTS]
    number = (await CreditNote.get(invoice_id=invoice.id)).number
    await idle(redis)  # the job a notice that should not be there would run in has run
    ((recipients, message),) = mailbox.messages
    assert sorted(recipients) == RECIPIENTS
    assert " ".join(message["Subject"].split()) == f"Refund of credit note {number} from {sample_view()['msp']['company_name']}"
    assert (f"refunded 20.00 {invoice.currency} of the credit left by credit note {number} on invoice INV-2024-0042"
            in message.get_payload(decode=True).decode())


async def test_no_notice_when_the_owner_switches_it_off(client, world, redis):
    invoice = await _invoice(world)
    paid = await gql(client, PAY, {"id": _gid(invoice)}, token=world.tokens["owner"])
    for _ in range(2):
        refunded = await gql(client, REFUND, {"id": paid["data"]["recordPayment"]["payment"]["id"], "notify": False},
                             token=world.tokens["owner"])
        assert refunded["data"]["refundPayment"]["__typename"] == "PaymentRefunded"
    assert await redis.queued_jobs(queue_name=broker.QUEUE_NAME) == []
    # An approved invoice, which the customer received (a draft is never notified anyway).
    other = await _invoice(world, number="INV-2024-0043", month=date(2024, 8, 1))
    voided = await gql(client, VOID, {"ids": [_gid(other)], "notify": False}, token=world.tokens["owner"])
    assert voided["data"]["voidInvoices"]["results"] == [{"error": None}]
    assert (await Invoice.get(id=other.id)).status == "VOIDED"
    assert await redis.queued_jobs(queue_name=broker.QUEUE_NAME) == []


async def test_a_draft_the_customer_never_received_is_voided_silently(client, world, worker, smtp):
    _, mailbox = smtp
    invoice = await _invoice(world, status="AWAITING_APPROVAL")
    approved = await _invoice(world, number="INV-2024-0043", month=date(2024, 8, 1))
    await gql(client, VOID, {"ids": [_gid(invoice), _gid(approved)], "notify": True}, token=world.tokens["owner"])
    await _notices(approved, 2)
    assert len(mailbox.messages) == 1
    assert not await InvoiceEvent.filter(invoice_id=invoice.id, kind__startswith="NOTIFICATION").exists()


async def test_failed_notices_are_on_the_timeline(client, world, worker, smtp):
    _, mailbox = smtp
    mailbox.refused.add("cfo@contoso.example")
    invoice = await _invoice(world)
    await gql(client, VOID, {"ids": [_gid(invoice)], "notify": True}, token=world.tokens["owner"])
    events = await _notices(invoice, 2)
    assert {e.detail["recipient"]: e.kind for e in events} == {
        "ap@contoso.example": "NOTIFICATION_SENT", "cfo@contoso.example": "NOTIFICATION_FAILED"}


async def test_an_account_without_billing_emails_gets_a_failed_notice(client, world, worker):
    invoice = await _invoice(world, emails=[])
    await gql(client, VOID, {"ids": [_gid(invoice)], "notify": True}, token=world.tokens["owner"])
    (event,) = await _notices(invoice, 1)
    assert event.kind == "NOTIFICATION_FAILED" and "no billing e-mails" in event.detail["error"]


async def test_approving_without_notifying_leaves_the_invoice_unsent(client, world, redis):
    quiet = await _invoice(world, status="AWAITING_APPROVAL")
    result = await gql(client, APPROVE, {"ids": [_gid(quiet)], "notify": False}, token=world.tokens["owner"])
    assert result["data"]["approveInvoices"]["results"][0]["invoice"] == {"status": "APPROVED", "deliveryStatus": "NOT_SENT"}
    assert await redis.queued_jobs(queue_name=broker.QUEUE_NAME) == []
    event = await InvoiceEvent.get(invoice_id=quiet.id, kind="APPROVE")
    assert event.detail == {"notifyCustomer": False}
    loud = await _invoice(world, status="AWAITING_APPROVAL", number="INV-2024-0043", month=date(2024, 8, 1))
    result = await gql(client, APPROVE, {"ids": [_gid(loud)], "notify": True}, token=world.tokens["owner"])
    assert result["data"]["approveInvoices"]["results"][0]["invoice"]["deliveryStatus"] == "QUEUED"
    assert len(await redis.queued_jobs(queue_name=broker.QUEUE_NAME)) == 1
