"""E-invoices: Factur-X (CII, EN 16931) and Peppol BIS Billing 3.0 UBL from the frozen revision,
checked against the official XSDs and the EN 16931 schematrons; the identifiers they need,
the e-invoicing settings, and who may download what."""

from __future__ import annotations

import io
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from arq.constants import in_progress_key_prefix
from facturx import get_xml_from_pdf
from lxml import etree
from pypdf import PdfReader
from strawberry.relay import to_base64

from infra import broker, links, storage
from models import BillingProfile, Invoice, ManagedAccount, Organization
from models.einvoicing.cii import cii_xml
from models.einvoicing.document import DocumentKind, DocumentReference, document_from
from models.einvoicing.files import facturx_pdf
from models.einvoicing.ubl import ubl_xml
from models.invoices import LineKind
from tests.einvoice_checks import (
    cii_rule_failures,
    cii_xsd_errors,
    empty_elements,
    ubl_rule_failures,
    ubl_xsd_errors,
)
from tests.graphql import error_codes, gql
from tests.test_exports import _principal
from tests.test_pipeline_e2e import BULK, CLOSE, _month_of_costs, _wait, sample_totals

RAM = "{urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100}"
CBC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}"
CAC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2}"

SELLER = {
    "countryCode": "fr", "vatId": "FR40 303265045", "legalRegistrationId": "303265045",
    "electronicAddressScheme": "0009", "electronicAddress": "30326504500018",
    "iban": "FR76 3000 6000 0112 3456 7890 189", "bic": "AGRIFRPP",
}
BUYER = {
    "countryCode": "DE", "vatId": "DE136695976", "legalRegistrationId": "HRB 12345",
    "electronicAddressScheme": "9930", "electronicAddress": "DE136695976",
}
UPDATE_PROFILE = """mutation($id: ID!, $input: UpdateBillingProfileInput!) { updateBillingProfile(id: $id, input: $input) {
  __typename ... on BillingProfileSaved { billingProfile { countryCode vatId iban bic vatCategory electronicAddress } }
  ... on UserError { code field message } } }"""
UPDATE_ACCOUNT = """mutation($id: ID!, $input: UpdateManagedAccountInput!) { updateManagedAccount(id: $id, input: $input) {
  __typename ... on ManagedAccountSaved { managedAccount { countryCode vatId electronicAddressScheme } }
  ... on UserError { code field message } } }"""
CREATE_ACCOUNT = """mutation($input: CreateManagedAccountInput!) { createManagedAccount(input: $input) {
  __typename ... on UserError { code field message } } }"""
SETTINGS = """mutation($e: Boolean, $a: EmailAttachment) { updateEInvoicingSettings(einvoicing: $e, emailAttachment: $a) {
  __typename ... on EInvoicingSettingsUpdated { organization { einvoicing emailAttachment } }
  ... on UserError { code field message } } }"""
LINKS = "query($id: ID!) { node(id: $id) { ... on Invoice { number facturxUrl ublUrl } } }"


def _fatal(failures: list[str]) -> list[str]:
    return [failure for failure in failures if "[warning]" not in failure]


# A frozen view as generation leaves it, by hand: two usage lines (one a credit), a markup and
# a discount, 20 % VAT on the subtotal, and an untaxed support charge.
def _party(name: str, country: str, vat_id: str, scheme: str, endpoint: str) -> dict:
    return {
        "name": name, "legal_id": "303265045", "vat_id": vat_id, "country_code": country,
        "lines": ["1 Main Street", "Building B", "Floor 3"], "city": "Paris", "postal_code": "75001",
        "region": "", "scheme": scheme, "endpoint": endpoint,
    }


VIEW = {
    "number": "INV-2024-0001", "issue_date": "2024-10-01", "due_date": "2024-10-31", "payment_terms_days": 30,
    "period": {"start": "2024-09-01", "end": "2024-09-30"}, "currency": "EUR", "total": "150.60",
    "einvoice": {
        "version": 1,
        "seller": _party("Northwind SAS", "FR", "FR40303265045", "0009", "30326504500018"),
        "buyer": _party("Contoso GmbH", "DE", "DE136695976", "9930", "DE136695976"),
        "buyer_reference": "PO-7", "order_reference": "PO-7",
        "payment": {"iban": "FR7630006000011234567890189", "bic": "AGRIFRPP", "account_name": "Northwind SAS"},
        "vat": {"category": "STANDARD", "rate": "20", "exemption_reason": "", "exemption_code": ""},
        "charge_roles": ["VAT", "CHARGE"], "problems": [],
    },
}


def _line(position, kind, description, amount, quantity=None, unit=None):
    return SimpleNamespace(
        position=position, kind=kind, description=description, quantity=quantity, unit=unit, amount=Decimal(amount)
    )


LINES = [
    _line(1, LineKind.USAGE, "AWS Amazon EC2", "100.0000", Decimal("744"), "Hours"),
    _line(2, LineKind.USAGE, "AWS Support credit", "-5.5000"),
    _line(3, LineKind.RULE, "Markup: managed service", "9.45"),
    _line(4, LineKind.RULE, "Discount: loyalty", "-3.95"),
    _line(5, LineKind.TAX, "VAT (20%)", "20.00"),
    _line(6, LineKind.CHARGE, "Support plan", "30.60"),
]


@pytest.mark.parametrize("kind", list(DocumentKind))
def test_the_builders_write_valid_cii_and_ubl_for_invoices_and_credit_notes(kind):
    preceding = DocumentReference("INV-2024-0000", "2024-09-01") if kind is DocumentKind.CREDIT_NOTE else None
    document = document_from(VIEW, LINES, kind, preceding)
    assert (document.line_total, document.allowance_total, document.charge_total) == (
        Decimal("94.50"), Decimal("3.95"), Decimal("40.05"),
    )
    assert (document.tax_exclusive, document.tax_total, document.grand_total) == (
        Decimal("130.60"), Decimal("20.00"), Decimal("150.60"),
    )
    cii, ubl = cii_xml(document), ubl_xml(document)
    assert cii_xsd_errors(cii) == [] and ubl_xsd_errors(ubl) == []
    assert _fatal(cii_rule_failures(cii)) == [] and _fatal(ubl_rule_failures(ubl)) == []
    # Peppol BIS rules the EN 16931 schematron does not cover: no empty element (R008; the CII
    # schema itself requires its empty delivery group), a buyer or order reference (R003), the
    # Peppol customization and profile (R004, R001), both parties' electronic addresses (R010,
    # R020) and one tax total (R053).
    assert empty_elements(ubl) == [] and empty_elements(cii) == ["ApplicableHeaderTradeDelivery"]
    root = etree.fromstring(ubl)
    assert root.findtext(f"{CBC}BuyerReference") == "PO-7"
    assert root.findtext(f"{CBC}CustomizationID").endswith("urn:fdc:peppol.eu:2017:poacc:billing:3.0")
    assert root.findtext(f"{CBC}ProfileID") == "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
    endpoints = root.findall(f".//{CAC}Party/{CBC}EndpointID")
    assert [(e.get("schemeID"), e.text) for e in endpoints] == [("0009", "30326504500018"), ("9930", "DE136695976")]
    assert len(root.findall(f"{CAC}TaxTotal")) == 1
    assert etree.QName(root).localname == ("Invoice" if kind is DocumentKind.INVOICE else "CreditNote")
    assert etree.fromstring(cii).findtext(f".//{RAM}TypeCode") == kind.type_code
    if preceding is not None:
        assert root.findtext(f"{CAC}BillingReference/{CAC}InvoiceDocumentReference/{CBC}ID") == "INV-2024-0000"


def test_the_rules_catch_a_document_whose_totals_disagree():
    """The schematron runs for real: a grand total one cent off is refused (BR-CO-15)."""
    cii = cii_xml(document_from(VIEW, LINES)).replace(b">150.60<", b">150.61<")
    ubl = ubl_xml(document_from(VIEW, LINES)).replace(b">150.60<", b">150.61<")
    assert any("BR-CO-15" in failure for failure in _fatal(cii_rule_failures(cii)))
    assert any("BR-CO-15" in failure for failure in _fatal(ubl_rule_failures(ubl)))


def test_reverse_charge_and_exempt_documents_are_valid():
    for category, code, reason in (("REVERSE_CHARGE", "VATEX-EU-AE", "Reverse charge"), ("EXEMPT", "", "Article 261 CGI")):
        view = {**VIEW, "total": "130.60", "einvoice": {
            **VIEW["einvoice"], "vat": {"category": category, "rate": "0", "exemption_reason": reason, "exemption_code": code},
        }}
        lines = [line for line in LINES if line.kind != LineKind.TAX] + [_line(5, LineKind.TAX, "VAT", "0.00")]
        document = document_from(view, lines)
        cii, ubl = cii_xml(document), ubl_xml(document)
        assert cii_xsd_errors(cii) == [] and ubl_xsd_errors(ubl) == []
        assert _fatal(cii_rule_failures(cii)) == [] and _fatal(ubl_rule_failures(ubl)) == [], category


async def _identify(client, world):
    owner = world.tokens["owner"]
    saved = await gql(client, UPDATE_PROFILE, {"id": to_base64("BillingProfile", str(world.profile.id)), "input": {
        **SELLER, "companyName": "Northwind SAS", "address": {"line1": "1 rue de la Paix", "city": "Paris", "postalCode": "75002"},
    }}, token=owner)
    assert saved["data"]["updateBillingProfile"]["billingProfile"] == {
        "countryCode": "FR", "vatId": "FR40303265045", "iban": "FR7630006000011234567890189", "bic": "AGRIFRPP",
        "vatCategory": "STANDARD", "electronicAddress": "30326504500018",
    }
    for account in (world.account, world.other_account):
        saved = await gql(client, UPDATE_ACCOUNT, {"id": to_base64("ManagedAccount", str(account.id)), "input": BUYER}, token=owner)
        assert saved["data"]["updateManagedAccount"]["__typename"] == "ManagedAccountSaved"


async def _approved_sample(client, world, worker):
    owner = world.tokens["owner"]
    await gql(client, CLOSE, {"m": "2024-09"}, token=owner)
    ids = [to_base64("Invoice", str(i.id)) for i in await Invoice.filter(organization_id=world.org.id)]
    await gql(client, BULK % "generateInvoices", {"ids": ids}, token=owner)
    await _wait(lambda: _none_but(world, ("AWAITING_APPROVAL",)))
    await gql(client, BULK % "approveInvoices", {"ids": ids}, token=owner)
    await _wait(lambda: _all_sent(world))
    return await Invoice.get(managed_account_id=world.account.id)


async def _settled(redis):
    """No job queued or running: the worker fixture cancels its task on teardown, and a job cut
    off in the middle of a query would leave the shared connection to the next test broken."""
    # Counted, not listed: a job taken between arq's listing and its reading of the job fails the listing.
    return not await redis.zcard(broker.QUEUE_NAME) and not await redis.keys(f"{in_progress_key_prefix}*")


async def _none_but(world, statuses):
    return not await Invoice.filter(organization_id=world.org.id).exclude(status__in=statuses).exists()


async def _all_sent(world):
    return not await Invoice.filter(organization_id=world.org.id).exclude(delivery_status="SENT").exists()


async def _download(client, url: str):
    return await client.get(urlsplit(url).path)


def test_the_factur_x_pdf_embeds_the_xml_and_says_the_same_in_its_xmp_and_document_information():
    """PDF/A-3 asks the document information and the XMP metadata to agree, and Factur-X asks
    for the XML as an attachment with its relationship; the printed pages stay as they were."""
    import hashlib

    import pikepdf

    printed = pikepdf.new()
    printed.add_blank_page()
    printed.add_blank_page()
    printed.docinfo["/Producer"] = "invoicing (Chromium, qpdf)"
    plain = io.BytesIO()
    printed.save(plain)
    document = document_from(VIEW, LINES, DocumentKind.INVOICE)
    made = facturx_pdf(plain.getvalue(), document)

    assert made.startswith(b"%PDF-1.6") and made.count(b"%PDF-") == 1
    filename, xml = get_xml_from_pdf(made, check_xsd=True)
    assert (filename, xml) == ("factur-x.xml", cii_xml(document))
    with pikepdf.open(io.BytesIO(made)) as pdf:
        assert len(pdf.pages) == 2
        (attached,) = pdf.Root.AF
        assert attached.AFRelationship == pikepdf.Name.Data and pdf.Root.Names.EmbeddedFiles.Names[1] == attached
        stream = attached.EF.F
        assert stream.Subtype == pikepdf.Name("/text/xml") and int(stream.Params.Size) == len(xml)
        assert bytes(stream.Params.CheckSum) == hashlib.md5(xml).digest()
        info = {key: str(value) for key, value in pdf.docinfo.items()}
        xmp = etree.fromstring(pdf.Root.Metadata.read_bytes())
    ns = {"rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "dc": "http://purl.org/dc/elements/1.1/",
          "pdf": "http://ns.adobe.com/pdf/1.3/", "xmp": "http://ns.adobe.com/xap/1.0/", "pdfaid": "http://www.aiim.org/pdfa/ns/id/"}

    def said(path: str) -> str:
        return xmp.findtext(f".//{path}", namespaces=ns)

    assert (said("pdfaid:part"), said("pdfaid:conformance")) == ("3", "B")
    assert info["/Title"] == said("dc:title/rdf:Alt/rdf:li") == "Northwind SAS: Invoice INV-2024-0001"
    assert info["/Author"] == said("dc:creator/rdf:Seq/rdf:li") == "Northwind SAS"
    assert info["/Subject"] == said("dc:description/rdf:Alt/rdf:li")
    assert info["/Producer"] == said("pdf:Producer") == "invoicing (Chromium, qpdf)"
    assert info["/Creator"] == said("xmp:CreatorTool")
    # D:20261207121211+00'00' in the document information is 2026-12-07T12:12:11+00:00 in XMP.
    stamp = said("xmp:CreateDate")
    assert info["/CreationDate"] == info["/ModDate"] == "D:" + stamp[:19].replace("-", "").replace("T", "").replace(":", "") + "+00'00'"
    assert said("xmp:ModifyDate") == stamp


async def test_an_approved_sample_invoice_downloads_as_factur_x_and_ubl_that_validate(client, world, worker, smtp, redis):
    """The done-when: the FOCUS sample's approved invoice as Factur-X, whose embedded XML
    validates and totals the invoice to the cent, and as UBL, which validates likewise."""
    await _month_of_costs(world)
    await _identify(client, world)
    settings = await gql(client, SETTINGS, {"e": True, "a": "FACTURX"}, token=world.tokens["owner"])
    assert settings["data"]["updateEInvoicingSettings"]["organization"] == {"einvoicing": True, "emailAttachment": "FACTURX"}
    invoice = await _approved_sample(client, world, worker)
    # The figures an accountant works out from the CSV, which every file below must carry.
    subtotal, vat, total = sample_totals("Atlas")
    assert (invoice.subtotal, invoice.charges, invoice.total) == (subtotal, vat, total)

    links = (await gql(client, LINKS, {"id": to_base64("Invoice", str(invoice.id))}, token=world.tokens["customer"]))["data"]["node"]
    facturx = await _download(client, links["facturxUrl"])
    assert facturx.status_code == 200 and facturx.headers["content-type"] == "application/pdf"
    assert f'filename="{invoice.number}-facturx.pdf"' in facturx.headers["content-disposition"]
    filename, xml = get_xml_from_pdf(facturx.content, check_xsd=False)
    assert filename == "factur-x.xml"
    # PDF/A-3 (level B), declaring the Factur-X profile EN 16931 in its XMP metadata.
    xmp = PdfReader(io.BytesIO(facturx.content)).trailer["/Root"]["/Metadata"].get_object().get_data()
    assert b"<pdfaid:part>3</pdfaid:part>" in xmp and b"<pdfaid:conformance>B</pdfaid:conformance>" in xmp
    assert b"<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>" in xmp
    assert cii_xsd_errors(xml) == [] and _fatal(cii_rule_failures(xml)) == []
    totals = etree.fromstring(xml).find(f".//{RAM}SpecifiedTradeSettlementHeaderMonetarySummation")
    assert Decimal(totals.findtext(f"{RAM}GrandTotalAmount")) == total
    assert Decimal(totals.findtext(f"{RAM}DuePayableAmount")) == total
    assert Decimal(totals.findtext(f"{RAM}TaxTotalAmount")) == vat
    assert Decimal(totals.findtext(f"{RAM}TaxBasisTotalAmount")) == subtotal

    ubl = await _download(client, links["ublUrl"])
    assert ubl.status_code == 200 and ubl.headers["content-type"].startswith("application/xml")
    assert ubl_xsd_errors(ubl.content) == [] and _fatal(ubl_rule_failures(ubl.content)) == []
    payable = etree.fromstring(ubl.content).findtext(f"{CAC}LegalMonetaryTotal/{CBC}PayableAmount")
    assert Decimal(payable) == total

    # The approval e-mail carried the Factur-X PDF.
    _, mailbox = smtp
    message = next(m for _, m in mailbox.messages if invoice.number in m["Subject"])
    attached = next(p for p in message.walk() if p.get_filename() == f"{invoice.number}.pdf").get_payload(decode=True)
    assert get_xml_from_pdf(attached, check_xsd=True)[1] == xml

    # A credit note of the invoice, by amount, is an EN 16931 credit note (381) of its own.
    from tests.test_credit_notes import credit

    created = await credit(client, world, invoice, mode="AMOUNT", amount="10.00")
    assert "creditNote" in created, created
    note_id = created["creditNote"]["id"]
    note_links = """query($id: ID!) { node(id: $id) { ... on CreditNote { number total facturxUrl ublUrl } } }"""

    async def printed():
        found = (await gql(client, note_links, {"id": note_id}, token=world.tokens["customer"]))["data"]["node"]
        return found if found["facturxUrl"] else None

    await _wait(printed)
    note = await printed()
    credited = await _download(client, note["facturxUrl"])
    assert f'filename="{note["number"]}-facturx.pdf"' in credited.headers["content-disposition"]
    _, credit_xml = get_xml_from_pdf(credited.content, check_xsd=False)
    assert cii_xsd_errors(credit_xml) == [] and _fatal(cii_rule_failures(credit_xml)) == []
    root = etree.fromstring(credit_xml)
    assert root.findtext(f".//{RAM}TypeCode") == "381"
    assert root.findtext(f".//{RAM}InvoiceReferencedDocument/{RAM}IssuerAssignedID") == invoice.number
    summation = root.find(f".//{RAM}SpecifiedTradeSettlementHeaderMonetarySummation")
    assert Decimal(summation.findtext(f"{RAM}GrandTotalAmount")) == Decimal("10.00")
    credit_ubl = await _download(client, note["ublUrl"])
    assert ubl_xsd_errors(credit_ubl.content) == [] and _fatal(ubl_rule_failures(credit_ubl.content)) == []
    assert etree.fromstring(credit_ubl.content).tag.endswith("CreditNote")
    await _wait(lambda: _settled(redis))


async def _lines(invoice):
    from models import InvoiceLineItem

    return await InvoiceLineItem.filter(revision_id=invoice.current_revision_id)


async def test_who_gets_e_invoice_links(client, world, worker, settings, redis):
    await _month_of_costs(world)
    await _identify(client, world)
    invoice = await _approved_sample(client, world, worker)
    gid = to_base64("Invoice", str(invoice.id))
    for role in ("owner", "viewer", "customer"):
        node = (await gql(client, LINKS, {"id": gid}, token=world.tokens[role]))["data"]["node"]
        assert node["facturxUrl"] and node["ublUrl"], role
        assert (await _download(client, node["ublUrl"])).status_code == 200
    for role in ("other_customer", "foreign_owner"):
        assert (await gql(client, LINKS, {"id": gid}, token=world.tokens[role]))["data"]["node"] is None
    # Genuine links, but for an invoice outside the requester's scope: the download checks again.
    for role in ("other_customer", "foreign_owner"):
        principal = await _principal(world.tokens[role])
        for kind in ("facturx", "ubl"):
            assert (await _download(client, links.sign(settings, principal, kind, str(invoice.id)).url)).status_code == 404
    await _wait(lambda: _settled(redis))


async def test_no_links_before_approval_or_without_what_en16931_needs(client, world, worker, redis):
    await _month_of_costs(world)
    owner = world.tokens["owner"]
    await gql(client, CLOSE, {"m": "2024-09"}, token=owner)
    ids = [to_base64("Invoice", str(i.id)) for i in await Invoice.filter(organization_id=world.org.id)]
    await gql(client, BULK % "generateInvoices", {"ids": ids}, token=owner)
    await _wait(lambda: _none_but(world, ("AWAITING_APPROVAL",)))
    node = (await gql(client, LINKS, {"id": ids[0]}, token=owner))["data"]["node"]
    assert node["facturxUrl"] is None and node["ublUrl"] is None, "not approved"
    await gql(client, BULK % "approveInvoices", {"ids": ids}, token=owner)
    await _wait(lambda: _none_but(world, ("APPROVED",)))
    node = (await gql(client, LINKS, {"id": ids[0]}, token=owner))["data"]["node"]
    assert node["facturxUrl"] is None and node["ublUrl"] is None, "no identifiers were frozen"
    await _wait(lambda: _settled(redis))


async def test_generation_with_e_invoicing_names_what_en16931_lacks(client, world, worker, redis):
    await _month_of_costs(world)
    await Organization.filter(id=world.org.id).update(einvoicing=True)
    owner = world.tokens["owner"]
    await gql(client, CLOSE, {"m": "2024-09"}, token=owner)
    ids = [to_base64("Invoice", str(i.id)) for i in await Invoice.filter(organization_id=world.org.id)]
    await gql(client, BULK % "generateInvoices", {"ids": ids}, token=owner)
    await _wait(lambda: _none_but(world, ("ERROR",)))
    invoice = await Invoice.get(managed_account_id=world.account.id)
    message = invoice.error_message
    assert message.startswith("Not a valid EN 16931 e-invoice:")
    for needed in ("no country code (countryCode)", "no VAT identifier (vatId)", "no IBAN", "electronic address"):
        assert needed in message
    assert invoice.current_revision_id is None
    await _wait(lambda: _settled(redis))


async def test_identifiers_are_checked_and_a_refusal_writes_nothing(client, world):
    owner = world.tokens["owner"]
    profile_id = to_base64("BillingProfile", str(world.profile.id))
    for change, field in (
        ({"vatId": "FR12345678901"}, "vatId"), ({"vatId": "12345"}, "vatId"), ({"iban": "FR7630006000011234567890188"}, "iban"),
        ({"bic": "NOPE"}, "bic"), ({"countryCode": "XX"}, "countryCode"), ({"countryCode": "FRA"}, "countryCode"),
        ({"electronicAddressScheme": "1234", "electronicAddress": "x"}, "electronicAddressScheme"),
        ({"electronicAddress": "30326504500018"}, "electronicAddress"),
    ):
        result = (await gql(client, UPDATE_PROFILE, {"id": profile_id, "input": {**change, "nickname": "Renamed"}}, token=owner))
        assert result["data"]["updateBillingProfile"]["__typename"] == "ValidationError", change
        assert result["data"]["updateBillingProfile"]["field"] == field, change
    stored = await BillingProfile.get(id=world.profile.id)
    assert stored.nickname != "Renamed" and stored.vat_id == stored.iban == stored.country_code == ""

    refused = await gql(client, CREATE_ACCOUNT, {"input": {"name": "Wingtip", "countryCode": "ZZ"}}, token=owner)
    assert refused["data"]["createManagedAccount"]["field"] == "countryCode"
    refused = await gql(client, CREATE_ACCOUNT, {"input": {"name": "Wingtip", "vatId": "DE000000000"}}, token=owner)
    assert refused["data"]["createManagedAccount"]["field"] == "vatId"
    assert not await ManagedAccount.filter(name="Wingtip").exists()

    account_id = to_base64("ManagedAccount", str(world.account.id))
    for role in ("viewer", "customer"):
        result = await gql(client, UPDATE_ACCOUNT, {"id": account_id, "input": BUYER}, token=world.tokens[role])
        assert error_codes(result) == ["FORBIDDEN"], role
    result = await gql(client, UPDATE_ACCOUNT, {"id": account_id, "input": BUYER}, token=world.tokens["foreign_owner"])
    assert result["data"]["updateManagedAccount"]["code"] == "NOT_FOUND"
    assert (await ManagedAccount.get(id=world.account.id)).vat_id == ""


async def test_e_invoicing_settings_scopes_and_rules(client, world):
    refused = await gql(client, SETTINGS, {"a": "FACTURX"}, token=world.tokens["owner"])
    assert refused["data"]["updateEInvoicingSettings"] == {
        "__typename": "ValidationError", "code": "INVALID", "field": "emailAttachment",
        "message": "The Factur-X attachment needs e-invoicing: set einvoicing to true as well.",
    }
    for role in ("viewer", "customer"):
        assert error_codes(await gql(client, SETTINGS, {"e": True}, token=world.tokens[role])) == ["FORBIDDEN"], role
    # Another organization's owner changes its own organization only.
    await gql(client, SETTINGS, {"e": True}, token=world.tokens["foreign_owner"])
    assert (await Organization.get(id=world.foreign_org.id)).einvoicing
    assert not (await Organization.get(id=world.org.id)).einvoicing
    on = await gql(client, SETTINGS, {"e": True, "a": "FACTURX"}, token=world.tokens["owner"])
    assert on["data"]["updateEInvoicingSettings"]["organization"] == {"einvoicing": True, "emailAttachment": "FACTURX"}
    off = await gql(client, SETTINGS, {"e": False}, token=world.tokens["owner"])
    assert off["data"]["updateEInvoicingSettings"]["organization"] == {"einvoicing": False, "emailAttachment": "PDF"}


async def test_every_demo_invoice_of_the_focus_sample_is_a_valid_e_invoice():
    """The demo's profile (20 % VAT and an untaxed support plan) and customers (UK and Irish)
    make valid EN 16931 documents from their September 2024 costs, totalling each invoice."""
    from models.demo import load_demo
    from models.invoices.generation.compute import compute
    from models.invoices.generation.inputs import load_context
    from models.invoices.generation.view import build_view
    from tests.test_demo import SAMPLE

    demo = await load_demo(SAMPLE)
    await Organization.filter(id=demo.organization.id).update(einvoicing=True)
    invoices = await Invoice.filter(organization_id=demo.organization.id, billing_period__start_date="2024-09-01")
    assert len(invoices) == 6
    for invoice in invoices:
        context = await load_context(invoice.id)
        draft = await compute(context)
        view = build_view(context, draft, f"INV-2024-{invoice.id.hex[:4]}", "test")
        lines = [
            SimpleNamespace(position=i, kind=line.kind, description=line.description, quantity=line.quantity,
                            unit=line.unit, amount=line.amount)
            for i, line in enumerate(draft.lines, start=1)
        ]
        document = document_from(view, lines)
        assert document.grand_total == draft.total
        cii, ubl = cii_xml(document), ubl_xml(document)
        assert cii_xsd_errors(cii) == [] and ubl_xsd_errors(ubl) == []
        assert _fatal(cii_rule_failures(cii)) == [] and _fatal(ubl_rule_failures(ubl)) == [], view["customer"]["name"]


async def test_each_credit_note_of_an_invoice_is_a_valid_e_invoice_and_their_vat_is_the_invoices(client, world):
    """Four credit notes (one too small to carry VAT, then by lines, by amount and the rest)
    are each a valid EN 16931 credit note, and their VAT adds up to the invoice's to the cent."""
    from models import CreditNote
    from models.einvoicing.files import credit_note_document
    from tests.test_credit_notes import approved, credit

    lines = [
        (LineKind.USAGE, "AWS Amazon EC2", Decimal("1338.61")), (LineKind.USAGE, "AWS Amazon S3", Decimal("23.03")),
        (LineKind.TAX, "VAT (20%)", Decimal("272.33")), (LineKind.CHARGE, "Support plan", Decimal("30.60")),
    ]
    view = {**VIEW, "currency": world.account.currency, "total": "1664.57"}
    invoice = await approved(world.account, "INV-2024-0001", lines=lines, snapshot=view)
    for step in ({"mode": "AMOUNT", "amount": "0.01"}, {"mode": "LINES", "lines": [{"position": 2}]},
                 {"mode": "AMOUNT", "amount": "123.45"}, {"mode": "FULL"}):
        assert (await credit(client, world, invoice, **step))["__typename"] == "CreditNoteCreated", step
    vat = Decimal(0)
    for note in await CreditNote.filter(invoice_id=invoice.id).order_by("number"):
        document = await credit_note_document(note)
        assert document is not None, note.number
        assert (document.grand_total, document.tax_total) == (note.total, note.tax_total)
        cii, ubl = cii_xml(document), ubl_xml(document)
        assert _fatal(cii_rule_failures(cii)) == [] and _fatal(ubl_rule_failures(ubl)) == [], note.number
        vat += document.tax_total
    assert vat == Decimal("272.33")


def _one_header(pdf: bytes) -> bool:
    """PDF/A-3 (ISO 19005-3, the basis of Factur-X): the file begins with its header, and has one."""
    return pdf.startswith(b"%PDF-") and pdf.count(b"%PDF-") == 1


async def test_every_pdf_begins_with_its_one_header(client, world, worker, smtp, redis, settings):
    """Invoice and credit note, plain and Factur-X, stored, downloaded and e-mailed."""
    from models import CreditNote, InvoiceRevision
    from tests.test_credit_notes import credit

    await _month_of_costs(world)
    await _identify(client, world)
    await gql(client, SETTINGS, {"e": True, "a": "FACTURX"}, token=world.tokens["owner"])
    invoice = await _approved_sample(client, world, worker)
    revision = await InvoiceRevision.get(id=invoice.current_revision_id)
    customer = world.tokens["customer"]
    found = (await gql(client, "query($id: ID!) { node(id: $id) { ... on Invoice { pdfUrl facturxUrl } } }",
                       {"id": to_base64("Invoice", str(invoice.id))}, token=customer))["data"]["node"]
    _, mailbox = smtp
    message = next(m for _, m in mailbox.messages if invoice.number in m["Subject"])
    mailed = next(p for p in message.walk() if p.get_filename() == f"{invoice.number}.pdf").get_payload(decode=True)
    pdfs = {
        "invoice stored": storage.load(settings, revision.pdf_path),
        "invoice downloaded": (await _download(client, found["pdfUrl"])).content,
        "invoice factur-x downloaded": (await _download(client, found["facturxUrl"])).content,
        "invoice factur-x e-mailed": mailed,
    }
    assert get_xml_from_pdf(mailed, check_xsd=False)[0] == "factur-x.xml"

    created = await credit(client, world, invoice, mode="AMOUNT", amount="10.00", notifyCustomer=True)
    assert "creditNote" in created, created
    note_query = "query($id: ID!) { node(id: $id) { ... on CreditNote { number pdfUrl facturxUrl } } }"

    async def printed():
        node = (await gql(client, note_query, {"id": created["creditNote"]["id"]}, token=customer))["data"]["node"]
        return node if node["facturxUrl"] else None

    await _wait(printed)
    note = await printed()
    await _wait(lambda: _mailed(mailbox, note["number"]))
    note_message = next(m for _, m in mailbox.messages if note["number"] in m["Subject"])
    pdfs.update({
        "credit note stored": storage.load(settings, (await CreditNote.get(number=note["number"])).pdf_path),
        "credit note downloaded": (await _download(client, note["pdfUrl"])).content,
        "credit note factur-x downloaded": (await _download(client, note["facturxUrl"])).content,
        "credit note e-mailed": next(
            p for p in note_message.walk() if p.get_filename() == f"{note['number']}.pdf").get_payload(decode=True),
    })
    assert {name: _one_header(pdf) for name, pdf in pdfs.items()} == dict.fromkeys(pdfs, True)
    # Still a Factur-X PDF that any reader opens.
    for name in ("invoice factur-x downloaded", "credit note factur-x downloaded"):
        assert len(PdfReader(io.BytesIO(pdfs[name])).pages) >= 1
        assert get_xml_from_pdf(pdfs[name], check_xsd=True)[0] == "factur-x.xml"
    await _wait(lambda: _settled(redis))


async def _mailed(mailbox, number: str) -> bool:
    return any(number in m["Subject"] for _, m in mailbox.messages)
