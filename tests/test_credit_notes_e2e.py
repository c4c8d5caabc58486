"""Credit notes end to end: issued through GraphQL, printed to PDF by a real arq worker in real
Chromium (read back with pdftotext), e-mailed to a real SMTP server, downloaded through their
signed link, and announced live to the invoice's subscribers."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from decimal import Decimal
from urllib.parse import urlsplit

from strawberry.relay import to_base64

from infra import broker, storage
from jobs import dispatch
from jobs.credit_notes import issue_credit_note, print_credit_note
from jobs.generate import requeue_stuck
from models import CreditNote, InvoiceEvent
from tests.graphql import LiveClient, gql, subscribed
from tests.test_credit_notes import approved, issued_year
from tests.workers import idle

CREATE = """mutation($input: CreateCreditNoteInput!) { createCreditNote(input: $input) { __typename
  ... on CreditNoteCreated { creditNote { id number total } } ... on UserError { code message } } }"""
PDF_URL = """query($id: ID!) { node(id: $id) { ... on CreditNote { number deliveryStatus pdfUrl } } }"""
WATCH = """subscription { invoiceStatusChanged { paymentStatus invoice { number amountCredited amountDue } } }"""


def _text(pdf: bytes) -> str:
    done = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True)
    return " ".join(done.stdout.decode().split())


async def _wait(condition, timeout=60):
    for _ in range(int(timeout / 0.1)):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def _issue(client, world, invoice, **fields):
    variables = {"input": {"invoiceId": to_base64("Invoice", str(invoice.id)), "reason": "EC2 hours billed twice",
                           "mode": "LINES", "lines": [{"position": 1}], **fields}}
    done = (await gql(client, CREATE, variables, token=world.tokens["owner"]))["data"]["createCreditNote"]
    assert done["__typename"] == "CreditNoteCreated", done
    return done["creditNote"]


async def _customer_details(world):
    world.account.official_company_name = "Contoso Holdings Ltd"
    world.account.billing_emails = ["ap@contoso.example", "cfo@contoso.example"]
    world.account.po_number = "PO-CONTOSO-7"
    await world.account.save()
    world.profile.company_name = "Northwind Cloud Partners"
    await world.profile.save()


async def test_a_credit_note_is_printed_emailed_and_downloaded(client, world, worker, smtp, settings, redis):
    _, mailbox = smtp
    await _customer_details(world)
    invoice = await approved(world.account, "INV-2024-0001")
    issued = await _issue(client, world, invoice)
    note_id = issued["id"]
    await _wait(lambda: _delivered(issued["number"]))
    note = await CreditNote.get(number=issued["number"])

    pdf = storage.load(settings, note.pdf_path)
    assert hashlib.sha256(pdf).hexdigest() == note.pdf_sha256 and len(pdf) == note.pdf_size
    text = _text(pdf)
    year = await issued_year()
    for printed in ("CREDIT NOTE", f"CN-{year}-0001", "INV-2024-0001", "Contoso Holdings Ltd", "PO-CONTOSO-7",
                    "Northwind Cloud Partners", "EC2 hours billed twice", "AWS Amazon EC2", "Discount: Loyalty",
                    "VAT (20%)", "Support plan", "September 2024", "USD 122.00"):
        assert printed in text, printed

    assert len(mailbox.messages) == 1
    recipients, message = mailbox.messages[0]
    assert sorted(recipients) == ["ap@contoso.example", "cfo@contoso.example"]
    assert " ".join(message["Subject"].split()) == (
        f"Credit note CN-{year}-0001 from Northwind Cloud Partners (invoice INV-2024-0001)")
    attachment = next(p for p in message.walk() if p.get_filename() == f"CN-{year}-0001.pdf")
    assert attachment.get_payload(decode=True) == pdf
    body = next(p for p in message.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    assert "122.00 USD" in body and "EC2 hours billed twice" in body
    events = await InvoiceEvent.filter(invoice_id=invoice.id, kind="CREDIT_NOTE_SENT").order_by("id")
    assert sorted(e.detail["recipient"] for e in events) == ["ap@contoso.example", "cfo@contoso.example"]

    # The customer downloads the very file that was e-mailed; another customer cannot see it.
    shown = (await gql(client, PDF_URL, {"id": note_id}, token=world.tokens["customer"]))["data"]["node"]
    assert shown["deliveryStatus"] == "SENT"
    response = await client.get(urlsplit(shown["pdfUrl"]).path)
    assert response.status_code == 200 and response.content == pdf
    assert response.headers["content-disposition"] == f'attachment; filename="CN-{year}-0001.pdf"'
    assert (await gql(client, PDF_URL, {"id": note_id}, token=world.tokens["other_customer"]))["data"]["node"] is None
    assert (await gql(client, PDF_URL, {"id": note_id}, token=world.tokens["foreign_owner"]))["data"]["node"] is None
    # A customer's link stops working for another account's customer who gets hold of it.
    world.users["customer"].managed_account_id = world.other_account.id
    await world.users["customer"].save()
    assert (await client.get(urlsplit(shown["pdfUrl"]).path)).status_code == 404

    # Byte-stable: printing the credit note again gives the very same bytes.
    assert await print_credit_note(worker.ctx["pdf"], note) == pdf
    # The job run again (a retry, the sweeper) changes nothing: same file, no second e-mail.
    assert await issue_credit_note(worker.ctx, str(note.id)) == "printed"
    again = await CreditNote.get(id=note.id)
    assert (again.pdf_path, again.pdf_sha256) == (note.pdf_path, note.pdf_sha256)
    assert storage.load(settings, again.pdf_path) == pdf
    await idle(redis)
    assert len(mailbox.messages) == 1


async def _finished(worker):
    """The worker's job is over (its last step, the live event, included): stopping it now
    cancels nothing."""
    return worker.jobs_complete >= 1 and worker.job_tasks == {}


async def _delivered(number):
    note = await CreditNote.get_or_none(number=number)
    return note is not None and note.delivery_status == "SENT"


async def test_without_notifying_it_is_printed_but_not_sent(client, world, worker, smtp):
    _, mailbox = smtp
    await _customer_details(world)
    invoice = await approved(world.account, "INV-2024-0001")
    issued = await _issue(client, world, invoice, notifyCustomer=False, mode="AMOUNT", amount="10", lines=None)

    async def printed():
        return (await CreditNote.get(number=issued["number"])).pdf_path is not None

    await _wait(printed)
    await _wait(lambda: _finished(worker))
    assert (await CreditNote.get(number=issued["number"])).delivery_status == "NOT_SENT"
    assert mailbox.messages == []


async def test_an_account_without_billing_emails_gets_a_failed_delivery(client, world, worker, smtp):
    invoice = await approved(world.account, "INV-2024-0001")
    issued = await _issue(client, world, invoice)

    async def failed():
        return (await CreditNote.get(number=issued["number"])).delivery_status == "FAILED"

    await _wait(failed)
    await _wait(lambda: _finished(worker))
    event = await InvoiceEvent.get(invoice_id=invoice.id, kind="CREDIT_NOTE_DELIVERY_FAILED")
    assert "no billing e-mails" in event.detail["error"]


async def test_the_invoice_change_is_pushed_live_to_its_customer(live_server, client, world, app):
    invoice = await approved(world.account, "INV-2024-0001")
    async with LiveClient(live_server, world.tokens["customer"]) as customer, \
            LiveClient(live_server, world.tokens["other_customer"]) as other:
        mine, theirs = await customer.subscribe(WATCH), await other.subscribe(WATCH)
        await subscribed(app, 2)
        await _issue(client, world, invoice, mode="FULL", lines=None, notifyCustomer=False)
        seen = [m["payload"]["data"]["invoiceStatusChanged"] for m in await customer.drain(mine)]
        assert await other.drain(theirs, quiet=0.1) == []
    assert seen == [{"paymentStatus": "PAID", "invoice": {
        "number": "INV-2024-0001", "amountCredited": "183.00", "amountDue": "0.00"}}]
    assert (await CreditNote.get()).total == Decimal("183.00")


async def test_the_sweeper_queues_a_credit_note_whose_job_never_reached_redis(client, world, redis, settings):
    invoice = await approved(world.account, "INV-2024-0001")
    issued = await _issue(client, world, invoice)
    note = await CreditNote.get(number=issued["number"])
    assert [job.job_id for job in await redis.queued_jobs(queue_name=broker.QUEUE_NAME)] == [
        dispatch.credit_note_job_id(note.id)]
    await redis.flushdb()
    # Waited long enough: no wait at all.
    impatient = settings.model_copy(update={"stuck_after_seconds": 0})
    for _ in range(2):  # a second sweep finds it queued and queues nothing more
        await requeue_stuck({"redis": redis, "settings": impatient})
        assert [job.job_id for job in await redis.queued_jobs(queue_name=broker.QUEUE_NAME)] == [
            dispatch.credit_note_job_id(note.id)]
