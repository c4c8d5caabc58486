"""The send job: e-mail the approved invoice's PDF to the account's billing e-mails and
record each recipient's outcome on the timeline."""

from __future__ import annotations

import logging

from arq import Retry

import events
import storage
from jobs.mailer import Attachment, MailPermanentError, MailTransientError, render_invoice_email, send_mail
from models.invoices import DeliveryStatus, Invoice, InvoiceStatus
from models.invoices.delivery import record_delivery
from models.invoices.tables import InvoiceRevision
from models.managed_accounts import ManagedAccount

log = logging.getLogger(__name__)
MAX_TRIES = 5
NOTHING_TO_SEND = "nothing to send"


async def send_invoice(ctx: dict, invoice_id: str) -> str:
    outcome = await _send(ctx, invoice_id)
    if outcome != NOTHING_TO_SEND:
        await events.publish_ids(ctx["redis"], [invoice_id])
    return outcome


async def _send(ctx: dict, invoice_id: str) -> str:
    invoice = await Invoice.get_or_none(id=invoice_id)
    if invoice is None or invoice.status != InvoiceStatus.APPROVED or invoice.current_revision_id is None:
        return NOTHING_TO_SEND
    account = await ManagedAccount.get(id=invoice.managed_account_id)
    revision = await InvoiceRevision.get(id=invoice.current_revision_id)
    if not account.billing_emails:
        await record_delivery(invoice.id, [], "The account has no billing e-mails: add them, then resend.")
        return "no recipients"
    view = revision.snapshot
    subject, text, html = render_invoice_email({
        "msp_company_name": view["msp"]["company_name"], "customer_name": view["customer"]["official_company_name"],
        "number": invoice.number, "period_label": view["period"]["label"], "total": view["total"],
        "currency": invoice.currency, "due_date": view["due_date"], "payment_terms_days": view["payment_terms_days"],
    })
    pdf = storage.load(ctx["settings"], revision.pdf_path)
    try:
        outcomes = await send_mail(
            ctx["settings"], to=list(account.billing_emails), subject=subject, text=text, html=html,
            attachments=[Attachment(filename=f"{invoice.number}.pdf", content=pdf)],
        )
    except MailTransientError as exc:
        if ctx.get("job_try", 1) < MAX_TRIES:
            raise Retry(defer=30 * ctx.get("job_try", 1)) from exc
        await record_delivery(invoice.id, [], f"The mail server could not be reached: {exc}")
        return "failed"
    except MailPermanentError as exc:
        await record_delivery(invoice.id, [], f"The mail server refused the message: {exc}")
        return "failed"
    await record_delivery(invoice.id, outcomes, None)
    return DeliveryStatus.SENT.value if any(o.delivered for o in outcomes) else DeliveryStatus.FAILED.value
