"""The send jobs: e-mail the approved invoice's PDF (as Factur-X when the organization chose
it) to the account's billing e-mails, and notify them when an invoice is voided or refunded;
each recipient's outcome goes on the timeline."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq import Retry

from infra import storage
from jobs.effects import runs_effects
from jobs.locales import format_month, money_value
from jobs.mailer import (
    Attachment,
    MailPermanentError,
    MailTransientError,
    organization_sender,
    render_invoice_email,
    render_notification_email,
    send_mail,
)
from models.credit_notes import CreditUse, CreditUseEntry
from models.einvoicing.files import facturx_pdf, frozen_document
from models.invoices import DeliveryStatus, Invoice, InvoiceEvent, InvoiceStatus
from models.invoices.delivery import record_delivery, record_notification
from models.invoices.tables import InvoiceRevision
from models.managed_accounts import ManagedAccount
from models.organizations import EmailAttachment, Organization
from models.payments import Refund

log = logging.getLogger(__name__)
MAX_TRIES = 5
NOTHING_TO_SEND = "nothing to send"
NO_RECIPIENTS = "The account has no billing e-mails: add them, then resend."


@runs_effects
async def send_invoice(ctx: dict, invoice_id: str) -> str:
    # The invoice with its account, revision and organization: one round trip, not four.
    invoice = await Invoice.get_or_none(id=invoice_id).select_related("managed_account", "current_revision", "organization")
    revision = invoice.current_revision if invoice is not None else None
    if invoice is None or invoice.status != InvoiceStatus.APPROVED or revision is None:
        return NOTHING_TO_SEND
    account, organization = invoice.managed_account, invoice.organization
    if not account.billing_emails:
        await record_delivery(invoice.id, [], NO_RECIPIENTS)
        return "no recipients"
    # The customer portal shows the invoice beside its CSV, credit notes and payments, and what is owed.
    portal = f"{ctx['settings'].public_url.rstrip('/')}/portal"
    subject, text, html = render_invoice_email(invoice_email_context(invoice, revision) | {"portal_url": portal})
    assert revision.pdf_path is not None, "a generated revision has its PDF"
    pdf = await asyncio.to_thread(storage.load, ctx["settings"], revision.pdf_path)
    if organization.email_attachment == EmailAttachment.FACTURX:
        # A revision generated before e-invoicing was chosen may lack what EN 16931 needs: its
        # plain PDF goes out rather than nothing.
        frozen = await frozen_document(invoice, revision)
        if frozen is not None:
            pdf = await asyncio.to_thread(facturx_pdf, pdf, frozen[1])
    outcomes, failure = await mail(
        ctx, organization, to=list(account.billing_emails), subject=subject, text=text, html=html,
        attachments=[Attachment(filename=f"{invoice.number}.pdf", content=pdf)],
    )
    await record_delivery(invoice.id, outcomes, failure)
    return DeliveryStatus.SENT.value if any(o.delivered for o in outcomes) else DeliveryStatus.FAILED.value


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


async def mail(ctx: dict, organization: Organization | Any, **message) -> tuple[list, str | None]:
    """Send the message, under the sender name and Reply-To of the organization (or of the
    organization of that id): (each recipient's outcome, None), or ([], why) once retrying
    cannot help. An unreachable server is retried with a growing delay, up to MAX_TRIES."""
    if not isinstance(organization, Organization):
        organization = await Organization.get(id=organization)
    sender = organization_sender(organization)
    try:
        return await send_mail(ctx["settings"], **sender, **message), None
    except MailTransientError as exc:
        if ctx.get("job_try", 1) < MAX_TRIES:
            raise Retry(defer=30 * ctx.get("job_try", 1)) from exc
        return [], f"The mail server could not be reached: {exc}"
    except MailPermanentError as exc:
        return [], f"The mail server refused the message: {exc}"
