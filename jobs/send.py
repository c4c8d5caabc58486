"""The send jobs: e-mail the approved invoice's PDF (as Factur-X when the organization chose
it) to the account's billing e-mails, and notify them when an invoice is voided or refunded;
each recipient's outcome goes on the timeline."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq import Retry

from infra import storage
from jobs.effects import following, runs_effects
from jobs.locales import format_month, money_value
from jobs.mailer import (
    Attachment,
    Mail,
    MailPermanentError,
    MailTransientError,
    organization_sender,
    render_invoice_email,
    render_notification_email,
    send_mail,
    send_mails,
)
from models.credit_notes import CreditUse, CreditUseEntry
from models.einvoicing.document import EDocument
from models.einvoicing.files import facturx_pdf, frozen_documents
from models.invoices import DeliveryStatus, Invoice, InvoiceEvent, InvoiceStatus
from models.invoices.delivery import record_deliveries, record_delivery, record_notification
from models.invoices.tables import InvoiceRevision
from models.managed_accounts import ManagedAccount
from models.organizations import EmailAttachment, Organization
from models.outbox import Entity, Transition, record
from models.payments import Refund

log = logging.getLogger(__name__)
MAX_TRIES = 5
NOTHING_TO_SEND = "nothing to send"
NO_RECIPIENTS = "The account has no billing e-mails: add them, then resend."


@runs_effects
async def send_invoice(ctx: dict, invoice_id: str) -> str:
    """E-mail the approved invoice: "nothing to send" (not approved), "no recipients", SENT or
    FAILED. The worker's send jobs running at once are sent together (`InvoiceMailings`);
    an unreachable server is retried with a growing delay, up to MAX_TRIES."""
    mailings = ctx.get("mailings") or InvoiceMailings(ctx["settings"])
    outcome = await mailings.send(invoice_id, ctx.get("redis"))
    if isinstance(outcome, MailTransientError):
        if ctx.get("job_try", 1) < MAX_TRIES:
            raise Retry(defer=30 * ctx.get("job_try", 1)) from outcome
        await record_delivery(invoice_id, [], f"The mail server could not be reached: {outcome}")
        return DeliveryStatus.FAILED.value
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


# Invoices e-mailed over one SMTP connection, and batches sent at once by a worker: a message
# takes four round trips to the server, so connections side by side keep a distant server's
# latency from adding up (a worker runs `worker_max_jobs` send jobs at once at most).
SEND_BATCH = 25
CONNECTIONS_AT_ONCE = 4


class InvoiceMailings:
    """A worker's invoice e-mails: the send jobs running at once hand their invoices over and
    wait for their own outcome, while the invoices go out together, up to SEND_BATCH over one
    SMTP connection, their rows read and their deliveries written by a few statements for all
    of them (`deliver_invoices`); CONNECTIONS_AT_ONCE batches at a time. Those that come while
    the connections are busy make the next batch, as printing does (jobs/pdf.py). A batch is a
    unit of work of its own: its deliveries are announced together once it is over."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._waiting: list[tuple[str, asyncio.Future]] = []
        self._redis: Any = None
        self._connections = asyncio.Semaphore(CONNECTIONS_AT_ONCE)
        self._dispatcher: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()

    async def send(self, invoice_id: str, redis: Any) -> str | BaseException:
        """What became of the invoice's e-mail (see `deliver_invoices`); `redis` is where its
        delivery is announced."""
        self._redis = redis
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((str(invoice_id), future))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())
        return await future

    async def close(self) -> None:
        for task in [self._dispatcher, *self._batches]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._dispatcher, *self._batches] if t is not None), return_exceptions=True)
        for _, future in self._waiting:
            if not future.done():
                future.set_exception(RuntimeError("the worker is stopping"))

    async def _dispatch(self) -> None:
        while self._waiting:
            await self._connections.acquire()
            # An invoice once per batch: a resend asked for while its first e-mail is waiting
            # goes out after it, as its own.
            batch: list[tuple[str, asyncio.Future]] = []
            later: list[tuple[str, asyncio.Future]] = []
            for item in self._waiting:
                if len(batch) < SEND_BATCH and all(item[0] != taken for taken, _ in batch):
                    batch.append(item)
                else:
                    later.append(item)
            self._waiting = later
            task = asyncio.create_task(self._send(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _send(self, batch: list[tuple[str, asyncio.Future]]) -> None:
        try:
            async with following(self._redis):
                outcomes = await deliver_invoices(self.settings, [invoice_id for invoice_id, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the batch failed as a whole: each of its jobs fails with it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for invoice_id, future in batch:
                if not future.done():
                    future.set_result(outcomes[invoice_id])
        finally:
            self._connections.release()


async def deliver_invoices(settings: Any, ids: list[str]) -> dict[str, str | BaseException]:
    """E-mail the approved invoices among `ids` (the PDF, as Factur-X when their organization
    chose it) to their accounts' billing e-mails, over one SMTP connection, and write each one's
    delivery: what became of each, "nothing to send" (not approved), "no recipients", SENT or
    FAILED (written, and recorded as DELIVERED), or the error that kept it from the server (not
    written: a `MailTransientError` is worth another try)."""
    outcomes: dict[str, str | BaseException] = dict.fromkeys(ids, NOTHING_TO_SEND)
    invoices = await Invoice.filter(id__in=ids, status=InvoiceStatus.APPROVED, current_revision_id__isnull=False)
    if not invoices:
        return outcomes
    accounts = {a.id: a for a in await ManagedAccount.filter(id__in={i.managed_account_id for i in invoices})}
    revisions = {r.id: r for r in await InvoiceRevision.filter(id__in=[i.current_revision_id for i in invoices])}
    organizations = {o.id: o for o in await Organization.filter(id__in={i.organization_id for i in invoices})}
    # A revision generated before e-invoicing was chosen may lack what EN 16931 needs: its
    # plain PDF goes out rather than nothing.
    documents = await frozen_documents(
        [i for i in invoices if organizations[i.organization_id].email_attachment == EmailAttachment.FACTURX], revisions
    )
    # The customer portal shows the invoice beside its CSV, credit notes and payments, and what is owed.
    portal = f"{settings.public_url.rstrip('/')}/portal"
    deliveries: list[tuple[Any, list, str | None]] = []
    mails: list[Mail] = []
    mailed: list[Invoice] = []
    for invoice in invoices:
        account = accounts[invoice.managed_account_id]
        if not account.billing_emails:
            deliveries.append((invoice.id, [], NO_RECIPIENTS))
            outcomes[str(invoice.id)] = "no recipients"
            continue
        revision = revisions[invoice.current_revision_id]  # type: ignore[index]
        try:
            pdf = await _attachment(settings, revision, documents.get(invoice.id))
        except Exception as exc:  # this invoice's job fails alone, as it would have on its own
            outcomes[str(invoice.id)] = exc
            continue
        subject, text, html = render_invoice_email(invoice_email_context(invoice, revision) | {"portal_url": portal})
        mails.append(Mail(
            to=list(account.billing_emails), subject=subject, text=text, html=html,
            attachments=[Attachment(filename=f"{invoice.number}.pdf", content=pdf)],
            **organization_sender(organizations[invoice.organization_id]),
        ))
        mailed.append(invoice)
    for invoice, sent in zip(mailed, await send_mails(settings, mails), strict=True):
        if isinstance(sent, MailPermanentError):
            deliveries.append((invoice.id, [], f"The mail server refused the message: {sent}"))
        elif isinstance(sent, BaseException):
            outcomes[str(invoice.id)] = sent
            continue
        else:
            deliveries.append((invoice.id, sent, None))
    for (invoice_id, _, _), status in zip(deliveries, await record_deliveries(deliveries), strict=True):
        if outcomes[str(invoice_id)] == NOTHING_TO_SEND:
            outcomes[str(invoice_id)] = status.value
    record(Entity.INVOICE, Transition.DELIVERED, [invoice_id for invoice_id, _, _ in deliveries])
    return outcomes


async def _attachment(settings: Any, revision: InvoiceRevision, document: EDocument | None) -> bytes:
    """The revision's PDF, as Factur-X with `document` inside when given."""
    assert revision.pdf_path is not None, "a generated revision has its PDF"
    pdf = await asyncio.to_thread(storage.load, settings, revision.pdf_path)
    return pdf if document is None else await asyncio.to_thread(facturx_pdf, pdf, document)


@runs_effects
async def notify_customer(ctx: dict, invoice_id: str, notice: str, refund_id: str | None = None) -> str:
    """Tell the billing e-mails that an invoice of theirs was voided or refunded, or that
    credit one of its credit notes left was refunded (`refund_id` names the refund, or the
    credit note's refund entry). Only invoices the customer received (approved ones) are
    notified about."""
    invoice = await Invoice.get_or_none(id=invoice_id)
    if invoice is None or invoice.approved_at is None or invoice.current_revision_id is None:
        return "nothing to notify"
    account = await ManagedAccount.get(id=invoice.managed_account_id)
    if not account.billing_emails:
        await record_notification(invoice.id, notice, [], NO_RECIPIENTS)
        return "no recipients"
    context = invoice_email_context(invoice, await InvoiceRevision.get(id=invoice.current_revision_id))
    if notice == "voided":
        voided = await InvoiceEvent.filter(invoice_id=invoice.id, kind="VOID").order_by("-id").first()
        context["reason"] = voided.detail.get("reason", "") if voided else ""
    if notice == "credit_refunded":
        entry = await CreditUseEntry.get(
            id=refund_id, kind=CreditUse.REFUND, credit_note__invoice_id=invoice.id
        ).prefetch_related("credit_note")
        context["refund_amount"] = money_value(entry.amount, invoice.currency, context["locale"])
        context["credit_note_number"] = entry.credit_note.number
    elif refund_id:
        refund = await Refund.get(id=refund_id, invoice_id=invoice.id)
        context["refund_amount"] = money_value(refund.amount, invoice.currency, context["locale"])
    subject, text = render_notification_email(notice, context)
    outcomes, failure = await mail(ctx, invoice.organization_id, to=list(account.billing_emails), subject=subject, text=text)
    await record_notification(invoice.id, notice, outcomes, failure)
    return "sent" if any(o.delivered for o in outcomes) else "failed"


def invoice_email_context(invoice: Invoice, revision: InvoiceRevision) -> dict:
    """What the e-mails about an invoice say of it (invoice, notices, reminders)."""
    # The customer-facing names and amounts as printed on the invoice, not as they are now.
    view = revision.snapshot
    period = view["period"]["label"] if revision.locale == "en" else format_month(view["period"]["start"], revision.locale)
    return {
        "msp_company_name": view["msp"]["company_name"], "customer_name": view["customer"]["official_company_name"],
        "number": invoice.number, "period_label": period, "total": view["total"],
        "currency": invoice.currency, "due_date": view["due_date"], "payment_terms_days": view["payment_terms_days"],
        "locale": revision.locale,
    }


async def mail(ctx: dict, organization_id: Any, **message) -> tuple[list, str | None]:
    """Send the message, under the organization's sender name and Reply-To: (each
    recipient's outcome, None), or ([], why) once retrying cannot help. An unreachable
    server is retried with a growing delay, up to MAX_TRIES."""
    sender = organization_sender(await Organization.get(id=organization_id))
    try:
        return await send_mail(ctx["settings"], **sender, **message), None
    except MailTransientError as exc:
        if ctx.get("job_try", 1) < MAX_TRIES:
            raise Retry(defer=30 * ctx.get("job_try", 1)) from exc
        return [], f"The mail server could not be reached: {exc}"
    except MailPermanentError as exc:
        return [], f"The mail server refused the message: {exc}"
