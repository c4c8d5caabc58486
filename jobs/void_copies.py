"""The copy of a voided invoice that the customer downloads from then on: the frozen revision's
view printed again, in the language it was printed in, marked VOID on every page. It is a new
file beside the approved one, which is never altered."""

from __future__ import annotations

import asyncio

from infra import storage
from jobs.effects import runs_effects
from jobs.invoice_templates import render_invoice
from jobs.locales import page_label
from models.invoice_templates import printed_with
from models.invoices import Invoice, InvoiceStatus
from models.invoices.delivery import record_void_copy
from models.invoices.tables import InvoiceRevision


def void_view(revision: InvoiceRevision, invoice: Invoice) -> dict:
    """The revision's stored view, marked VOID as of the day the invoice was voided."""
    voided = (invoice.voided_at or invoice.updated_at).date()
    return {**revision.snapshot, "void": {"date": voided.isoformat()}}


@runs_effects
async def print_void_copy(ctx: dict, invoice_id: str) -> str:
    """Print and keep the VOID copy of a voided invoice's current revision, once."""
    invoice = await Invoice.get_or_none(id=invoice_id)
    if invoice is None or invoice.status != InvoiceStatus.VOIDED or invoice.current_revision_id is None:
        return "nothing to do"
    if invoice.void_pdf_path:
        return "printed already"
    revision = await InvoiceRevision.get(id=invoice.current_revision_id)
    if revision.pdf_path is None:  # never printed: there is nothing to mark
        return "nothing to do"
    view = void_view(revision, invoice)
    # Printed with the template it was printed with: the organization's own version, if it was.
    own = await printed_with(invoice.organization_id, revision.template_version)
    html = await render_invoice(view, own.source if own else None)
    pdf = await ctx["pdf"].render(html, page_label=page_label(revision.locale))
    path = f"invoices/{invoice.organization_id}/{invoice.number or invoice.id}-r{revision.revision}-void.pdf"
    await asyncio.to_thread(storage.save, ctx["settings"], path, pdf)
    return "printed" if await record_void_copy(invoice.id, path) else "printed already"
