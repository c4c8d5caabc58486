"""The credit note job: print an issued credit note's PDF in the worker's warm browser, keep
it with its SHA-256, then e-mail it to the account's billing e-mails when the owner asked for it.

It does only what is left to do, so running it twice (a retry, the sweeper) is harmless: a PDF
is printed and kept once (the first kept stays, so the stored file, its SHA-256 and what is
e-mailed are the same bytes for good), and the e-mail goes out only while QUEUED. Printing is
byte-stable besides: the same credit note prints to the same bytes (`stable_pdf`)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from datetime import date

from arq import Retry

from infra import storage
from jobs.effects import runs_effects
from jobs.locales import format_month, money_value, page_label
from jobs.mailer import Attachment, render_credit_note_email
from jobs.rendering import render_credit_note_html
from jobs.send import NO_RECIPIENTS, mail
from jobs.xero import push_credit_note
from models.credit_notes import CreditNote
from models.credit_notes.delivery import record_delivery, record_pdf
from models.invoices import DeliveryStatus
from models.managed_accounts import ManagedAccount

log = logging.getLogger(__name__)
MAX_TRIES = 5


@runs_effects
async def issue_credit_note(ctx: dict, credit_note_id: str) -> str:
    note = await CreditNote.get_or_none(id=credit_note_id)
    if note is None:
        return "nothing to do"
    if note.pdf_path is None:
        try:
            await _print(ctx, note)
        except Exception as exc:
            if ctx.get("job_try", 1) < MAX_TRIES:
                log.warning("printing %s failed (try %s), retrying: %r", note.number, ctx.get("job_try"), exc)
                raise Retry(defer=2 * ctx.get("job_try", 1)) from exc
            raise
        note = await CreditNote.get(id=credit_note_id)
        # Printed once: the invoice it corrects is in Xero, so is the credit note.
        await push_credit_note(ctx["redis"], note.id)
    if note.delivery_status != DeliveryStatus.QUEUED:
        return "printed"
    return (await _send(ctx, note)).value


# Chromium stamps the moment of printing into the PDF's metadata, the only bytes that differ
# between two prints of the same page.
_PRINT_DATES = re.compile(rb"/(CreationDate|ModDate) \(D:\d{14}")


def stable_pdf(pdf: bytes, issued: date) -> bytes:
    """The PDF with its creation and modification dates set to the issue date (same length,
    so the file's offsets stay right): a credit note prints to the same bytes every time."""
    stamp = issued.strftime("%Y%m%d000000").encode()
    return _PRINT_DATES.sub(lambda m: b"/" + m.group(1) + b" (D:" + stamp, pdf)


async def print_credit_note(renderer, note: CreditNote) -> bytes:
    """The credit note's PDF, from its snapshot: the same bytes for the same credit note."""
    label = page_label(note.snapshot.get("locale"))
    return stable_pdf(await renderer.render(render_credit_note_html(note.snapshot), page_label=label), note.issue_date)


async def _print(ctx: dict, note: CreditNote) -> None:
    pdf = await print_credit_note(ctx["pdf"], note)
    # Named by content: a second run's file never replaces the one the first run kept.
    sha = hashlib.sha256(pdf).hexdigest()
    path = f"credit_notes/{note.organization_id}/{note.number}-{sha[:16]}.pdf"
    await asyncio.to_thread(storage.save, ctx["settings"], path, pdf)
    await record_pdf(note.id, path, sha, len(pdf))


async def _send(ctx: dict, note: CreditNote) -> DeliveryStatus:
    account = await ManagedAccount.get(id=note.managed_account_id)
    if not account.billing_emails:
        return await record_delivery(note, [], NO_RECIPIENTS)
    view = note.snapshot
    locale = view.get("locale", "en")
    period = format_month(view["period"]["start"], locale) if "start" in view["period"] else view["period"]["label"]
    subject, text, html = render_credit_note_email({
        "msp_company_name": view["msp"]["company_name"], "customer_name": view["customer"]["official_company_name"],
        "number": note.number, "invoice_number": view["invoice"]["number"],
        "period_label": view["period"]["label"] if locale == "en" else period, "locale": locale,
        "total": money_value(note.total, note.currency, locale), "currency": note.currency, "reason": note.reason,
    })
    assert note.pdf_path is not None, "printed before it is sent"
    pdf = await asyncio.to_thread(storage.load, ctx["settings"], note.pdf_path)
    outcomes, failure = await mail(
        ctx, note.organization_id, to=list(account.billing_emails), subject=subject, text=text, html=html,
        attachments=[Attachment(filename=f"{note.number}.pdf", content=pdf)],
    )
    return await record_delivery(note, outcomes, failure)
