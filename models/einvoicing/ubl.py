"""The OASIS UBL 2.1 Invoice or CreditNote of an EN 16931 document, as Peppol BIS Billing 3.0
specifies it. Elements are written in the order the schema requires, and an empty value is
left out: Peppol refuses empty elements."""

from __future__ import annotations

from decimal import Decimal

from lxml import etree

from models.einvoicing.document import DocumentKind, DocumentLine, EDocument, Party, TaxCategory

CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
ROOTS = {
    DocumentKind.INVOICE: "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    DocumentKind.CREDIT_NOTE: "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
}
PEPPOL_CUSTOMIZATION = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PEPPOL_PROFILE = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
# UNTDID 4461: credit transfer.
CREDIT_TRANSFER = "30"


def _el(parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
    prefix, name = tag.split(":")
    element = etree.SubElement(parent, f"{{{CBC if prefix == 'cbc' else CAC}}}{name}", attributes)
    if text is not None:
        element.text = text
    return element


def _opt(parent: etree._Element, tag: str, text: str, **attributes: str) -> None:
    if text:
        _el(parent, tag, text, **attributes)


def _amount(parent: etree._Element, tag: str, value: Decimal, currency: str) -> None:
    _el(parent, tag, f"{value:f}", currencyID=currency)


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _tax_category(parent: etree._Element, tag: str, tax: TaxCategory, with_exemption: bool = False) -> None:
    node = _el(parent, tag)
    _el(node, "cbc:ID", tax.code)
    _el(node, "cbc:Percent", _percent(tax.rate))
    if with_exemption:
        _opt(node, "cbc:TaxExemptionReasonCode", tax.exemption_code)
        _opt(node, "cbc:TaxExemptionReason", tax.exemption_reason)
    _el(_el(node, "cac:TaxScheme"), "cbc:ID", "VAT")


def _party(parent: etree._Element, tag: str, party: Party) -> None:
    node = _el(_el(parent, tag), "cac:Party")
    _el(node, "cbc:EndpointID", party.endpoint, schemeID=party.scheme)
    _el(_el(node, "cac:PartyName"), "cbc:Name", party.name)
    address = _el(node, "cac:PostalAddress")
    if party.lines:
        _el(address, "cbc:StreetName", party.lines[0])
    if len(party.lines) > 1:
        _el(address, "cbc:AdditionalStreetName", party.lines[1])
    _opt(address, "cbc:CityName", party.city)
    _opt(address, "cbc:PostalZone", party.postal_code)
    _opt(address, "cbc:CountrySubentity", party.region)
    if len(party.lines) > 2:
        _el(_el(address, "cac:AddressLine"), "cbc:Line", party.lines[2])
    _el(_el(address, "cac:Country"), "cbc:IdentificationCode", party.country_code)
    if party.vat_id:
        scheme = _el(node, "cac:PartyTaxScheme")
        _el(scheme, "cbc:CompanyID", party.vat_id)
        _el(_el(scheme, "cac:TaxScheme"), "cbc:ID", "VAT")
    legal = _el(node, "cac:PartyLegalEntity")
    _el(legal, "cbc:RegistrationName", party.name)
    _opt(legal, "cbc:CompanyID", party.legal_id)


def _payment(root: etree._Element, document: EDocument) -> None:
    means = _el(root, "cac:PaymentMeans")
    _el(means, "cbc:PaymentMeansCode", CREDIT_TRANSFER)
    if document.kind is DocumentKind.CREDIT_NOTE:
        _el(means, "cbc:PaymentDueDate", document.due_date)
    _el(means, "cbc:PaymentID", document.number)
    account = _el(means, "cac:PayeeFinancialAccount")
    _el(account, "cbc:ID", document.iban)
    _opt(account, "cbc:Name", document.account_name)
    if document.bic:
        _el(_el(account, "cac:FinancialInstitutionBranch"), "cbc:ID", document.bic)
    _el(_el(root, "cac:PaymentTerms"), "cbc:Note", document.payment_terms)


def _amounts(root: etree._Element, document: EDocument) -> None:
    """The allowances and charges, the VAT breakdown and the document's totals."""
    currency = document.currency
    for item in document.allowances_charges:
        node = _el(root, "cac:AllowanceCharge")
        _el(node, "cbc:ChargeIndicator", "true" if item.is_charge else "false")
        _el(node, "cbc:AllowanceChargeReason", item.reason)
        _amount(node, "cbc:Amount", item.amount, currency)
        _tax_category(node, "cac:TaxCategory", item.tax)
    total = _el(root, "cac:TaxTotal")
    _amount(total, "cbc:TaxAmount", document.tax_total, currency)
    for subtotal in document.tax_subtotals:
        node = _el(total, "cac:TaxSubtotal")
        _amount(node, "cbc:TaxableAmount", subtotal.taxable, currency)
        _amount(node, "cbc:TaxAmount", subtotal.amount, currency)
        _tax_category(node, "cac:TaxCategory", subtotal.tax, with_exemption=True)
    sums = _el(root, "cac:LegalMonetaryTotal")
    _amount(sums, "cbc:LineExtensionAmount", document.line_total, currency)
    _amount(sums, "cbc:TaxExclusiveAmount", document.tax_exclusive, currency)
    _amount(sums, "cbc:TaxInclusiveAmount", document.grand_total, currency)
    _amount(sums, "cbc:AllowanceTotalAmount", document.allowance_total, currency)
    _amount(sums, "cbc:ChargeTotalAmount", document.charge_total, currency)
    _amount(sums, "cbc:PayableAmount", document.due_amount, currency)


def _line(root: etree._Element, line: DocumentLine, credit: bool, currency: str) -> None:
    node = _el(root, "cac:CreditNoteLine" if credit else "cac:InvoiceLine")
    _el(node, "cbc:ID", line.id)
    _el(node, "cbc:CreditedQuantity" if credit else "cbc:InvoicedQuantity", f"{line.quantity:f}", unitCode="C62")
    _amount(node, "cbc:LineExtensionAmount", line.amount, currency)
    item = _el(node, "cac:Item")
    _opt(item, "cbc:Description", line.description)
    _el(item, "cbc:Name", line.name)
    _tax_category(item, "cac:ClassifiedTaxCategory", line.tax)
    _amount(_el(node, "cac:Price"), "cbc:PriceAmount", line.price, currency)


def ubl_xml(document: EDocument) -> bytes:
    """The document as UBL 2.1 XML (Invoice or CreditNote by its kind; UTF-8)."""
    credit = document.kind is DocumentKind.CREDIT_NOTE
    namespace = ROOTS[document.kind]
    root = etree.Element(
        f"{{{namespace}}}{'CreditNote' if credit else 'Invoice'}", nsmap={None: namespace, "cac": CAC, "cbc": CBC}
    )
    _el(root, "cbc:CustomizationID", PEPPOL_CUSTOMIZATION)
    _el(root, "cbc:ProfileID", PEPPOL_PROFILE)
    _el(root, "cbc:ID", document.number)
    _el(root, "cbc:IssueDate", document.issue_date)
    if not credit:
        _el(root, "cbc:DueDate", document.due_date)
    _el(root, "cbc:CreditNoteTypeCode" if credit else "cbc:InvoiceTypeCode", document.kind.type_code)
    for note in document.notes:
        _el(root, "cbc:Note", note)
    _el(root, "cbc:DocumentCurrencyCode", document.currency)
    _opt(root, "cbc:BuyerReference", document.buyer_reference)
    period = _el(root, "cac:InvoicePeriod")
    _el(period, "cbc:StartDate", document.period_start)
    _el(period, "cbc:EndDate", document.period_end)
    if document.order_reference:
        _el(_el(root, "cac:OrderReference"), "cbc:ID", document.order_reference)
    if document.preceding is not None:
        reference = _el(_el(root, "cac:BillingReference"), "cac:InvoiceDocumentReference")
        _el(reference, "cbc:ID", document.preceding.number)
        _el(reference, "cbc:IssueDate", document.preceding.issue_date)
    _party(root, "cac:AccountingSupplierParty", document.seller)
    _party(root, "cac:AccountingCustomerParty", document.buyer)
    _payment(root, document)
    _amounts(root, document)
    for line in document.lines:
        _line(root, line, credit, document.currency)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
