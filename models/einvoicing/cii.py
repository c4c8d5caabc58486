"""The UN/CEFACT Cross Industry Invoice (D16B, as Factur-X and ZUGFeRD 2 carry it) of an
EN 16931 document, profile EN 16931 (Factur-X "EN 16931", ZUGFeRD "COMFORT"). Elements are
written in the order the schema requires, and an empty value is left out rather than written
as an empty element."""

from __future__ import annotations

from decimal import Decimal

from lxml import etree

from models.einvoicing.document import AllowanceCharge, DocumentLine, EDocument, Party, TaxCategory, TaxSubtotal

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
NSMAP = {"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT}
GUIDELINE_EN16931 = "urn:cen.eu:en16931:2017"
# UNTDID 4461: credit transfer.
CREDIT_TRANSFER = "30"


def _el(parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
    prefix, name = tag.split(":")
    element = etree.SubElement(parent, f"{{{NSMAP[prefix]}}}{name}", attributes)
    if text is not None:
        element.text = text
    return element


def _opt(parent: etree._Element, tag: str, text: str, **attributes: str) -> None:
    if text:
        _el(parent, tag, text, **attributes)


def _amount(value: Decimal) -> str:
    return f"{value:f}"


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _date(parent: etree._Element, tag: str, iso: str, data_type: str = "udt") -> None:
    holder = _el(parent, tag)
    _el(holder, f"{data_type}:DateTimeString", iso.replace("-", ""), format="102")


def _party(parent: etree._Element, tag: str, party: Party) -> None:
    node = _el(parent, tag)
    _el(node, "ram:Name", party.name)
    if party.legal_id:
        legal = _el(node, "ram:SpecifiedLegalOrganization")
        _el(legal, "ram:ID", party.legal_id)
    address = _el(node, "ram:PostalTradeAddress")
    _opt(address, "ram:PostcodeCode", party.postal_code)
    for tag_name, line in zip(("ram:LineOne", "ram:LineTwo", "ram:LineThree"), party.lines, strict=False):
        _el(address, tag_name, line)
    _opt(address, "ram:CityName", party.city)
    _el(address, "ram:CountryID", party.country_code)
    _opt(address, "ram:CountrySubDivisionName", party.region)
    if party.endpoint:
        uri = _el(node, "ram:URIUniversalCommunication")
        _el(uri, "ram:URIID", party.endpoint, schemeID=party.scheme)
    if party.vat_id:
        registration = _el(node, "ram:SpecifiedTaxRegistration")
        _el(registration, "ram:ID", party.vat_id, schemeID="VA")


def _category(parent: etree._Element, tag: str, tax: TaxCategory) -> None:
    node = _el(parent, tag)
    _el(node, "ram:TypeCode", "VAT")
    _el(node, "ram:CategoryCode", tax.code)
    _el(node, "ram:RateApplicablePercent", _percent(tax.rate))


def _allowance_charge(parent: etree._Element, item: AllowanceCharge) -> None:
    node = _el(parent, "ram:SpecifiedTradeAllowanceCharge")
    indicator = _el(node, "ram:ChargeIndicator")
    _el(indicator, "udt:Indicator", "true" if item.is_charge else "false")
    _el(node, "ram:ActualAmount", _amount(item.amount))
    _el(node, "ram:Reason", item.reason)
    _category(node, "ram:CategoryTradeTax", item.tax)


def _line_item(transaction: etree._Element, line: DocumentLine) -> None:
    item = _el(transaction, "ram:IncludedSupplyChainTradeLineItem")
    _el(_el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", line.id)
    product = _el(item, "ram:SpecifiedTradeProduct")
    _el(product, "ram:Name", line.name)
    _opt(product, "ram:Description", line.description)
    agreement = _el(item, "ram:SpecifiedLineTradeAgreement")
    _el(_el(agreement, "ram:NetPriceProductTradePrice"), "ram:ChargeAmount", _amount(line.price))
    delivery = _el(item, "ram:SpecifiedLineTradeDelivery")
    _el(delivery, "ram:BilledQuantity", f"{line.quantity:f}", unitCode="C62")
    settlement = _el(item, "ram:SpecifiedLineTradeSettlement")
    _category(settlement, "ram:ApplicableTradeTax", line.tax)
    summation = _el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation")
    _el(summation, "ram:LineTotalAmount", _amount(line.amount))


def _agreement(transaction: etree._Element, document: EDocument) -> None:
    agreement = _el(transaction, "ram:ApplicableHeaderTradeAgreement")
    _opt(agreement, "ram:BuyerReference", document.buyer_reference)
    _party(agreement, "ram:SellerTradeParty", document.seller)
    _party(agreement, "ram:BuyerTradeParty", document.buyer)
    if document.order_reference:
        _el(_el(agreement, "ram:BuyerOrderReferencedDocument"), "ram:IssuerAssignedID", document.order_reference)


def _payment_means(settlement: etree._Element, document: EDocument) -> None:
    means = _el(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
    _el(means, "ram:TypeCode", CREDIT_TRANSFER)
    account = _el(means, "ram:PayeePartyCreditorFinancialAccount")
    _el(account, "ram:IBANID", document.iban)
    _opt(account, "ram:AccountName", document.account_name)
    if document.bic:
        _el(_el(means, "ram:PayeeSpecifiedCreditorFinancialInstitution"), "ram:BICID", document.bic)


def _tax_subtotal(settlement: etree._Element, subtotal: TaxSubtotal) -> None:
    tax = _el(settlement, "ram:ApplicableTradeTax")
    _el(tax, "ram:CalculatedAmount", _amount(subtotal.amount))
    _el(tax, "ram:TypeCode", "VAT")
    _opt(tax, "ram:ExemptionReason", subtotal.tax.exemption_reason)
    _el(tax, "ram:BasisAmount", _amount(subtotal.taxable))
    _el(tax, "ram:CategoryCode", subtotal.tax.code)
    _opt(tax, "ram:ExemptionReasonCode", subtotal.tax.exemption_code)
    _el(tax, "ram:RateApplicablePercent", _percent(subtotal.tax.rate))


def _totals(settlement: etree._Element, document: EDocument) -> None:
    totals = _el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _el(totals, "ram:LineTotalAmount", _amount(document.line_total))
    _el(totals, "ram:ChargeTotalAmount", _amount(document.charge_total))
    _el(totals, "ram:AllowanceTotalAmount", _amount(document.allowance_total))
    _el(totals, "ram:TaxBasisTotalAmount", _amount(document.tax_exclusive))
    _el(totals, "ram:TaxTotalAmount", _amount(document.tax_total), currencyID=document.currency)
    _el(totals, "ram:GrandTotalAmount", _amount(document.grand_total))
    _el(totals, "ram:DuePayableAmount", _amount(document.due_amount))


def _settlement(transaction: etree._Element, document: EDocument) -> None:
    settlement = _el(transaction, "ram:ApplicableHeaderTradeSettlement")
    _el(settlement, "ram:PaymentReference", document.number)
    _el(settlement, "ram:InvoiceCurrencyCode", document.currency)
    _payment_means(settlement, document)
    for subtotal in document.tax_subtotals:
        _tax_subtotal(settlement, subtotal)
    period = _el(settlement, "ram:BillingSpecifiedPeriod")
    _date(period, "ram:StartDateTime", document.period_start)
    _date(period, "ram:EndDateTime", document.period_end)
    for item in document.allowances_charges:
        _allowance_charge(settlement, item)
    terms = _el(settlement, "ram:SpecifiedTradePaymentTerms")
    _el(terms, "ram:Description", document.payment_terms)
    _date(terms, "ram:DueDateDateTime", document.due_date)
    _totals(settlement, document)
    if document.preceding is not None:
        reference = _el(settlement, "ram:InvoiceReferencedDocument")
        _el(reference, "ram:IssuerAssignedID", document.preceding.number)
        _date(reference, "ram:FormattedIssueDateTime", document.preceding.issue_date, data_type="qdt")


def cii_xml(document: EDocument) -> bytes:
    """The document as Cross Industry Invoice XML (UTF-8, with its declaration)."""
    root = etree.Element(f"{{{RSM}}}CrossIndustryInvoice", nsmap=NSMAP)
    context = _el(root, "rsm:ExchangedDocumentContext")
    guideline = _el(context, "ram:GuidelineSpecifiedDocumentContextParameter")
    _el(guideline, "ram:ID", GUIDELINE_EN16931)

    header = _el(root, "rsm:ExchangedDocument")
    _el(header, "ram:ID", document.number)
    _el(header, "ram:TypeCode", document.kind.type_code)
    _date(header, "ram:IssueDateTime", document.issue_date)
    for note in document.notes:
        _el(_el(header, "ram:IncludedNote"), "ram:Content", note)

    transaction = _el(root, "rsm:SupplyChainTradeTransaction")
    for line in document.lines:
        _line_item(transaction, line)
    _agreement(transaction, document)
    _el(transaction, "ram:ApplicableHeaderTradeDelivery")
    _settlement(transaction, document)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
