"""The EN 16931 document of a frozen revision.

At generation, `einvoice_section` adds to the revision's view (its `snapshot`) what an
e-invoice needs beyond the printed page: both parties' identifiers, the payment account, how
VAT applies, and the problems that keep the revision from being a valid EN 16931 document. An
organization that chose e-invoicing gets its invoice in ERROR with those problems instead.

Later, `document_from` reads the frozen view and the revision's stored lines (never live data)
into an `EDocument`, from which `models.einvoicing.cii` and `models.einvoicing.ubl` write the
XML, so the XML never disagrees with the printed PDF. The same document serves invoices (type
380) and credit notes (381).

How the printed invoice maps onto EN 16931 (written down once):
- every usage line is an invoice line of quantity 1 (C62) at its amount (-1 at the opposite
  amount when it is negative: a net price is never negative); its cloud quantity and unit, when
  they agree, are the item's description;
- billing rules (credits, discounts, markups) are document-level allowances and charges, in
  the profile's VAT category: they are part of the subtotal that VAT is computed on;
- the profile's one percentage tax is the VAT rate of category S (standard); an untaxed
  additional charge is a document-level charge exempt from VAT (E); in the other categories
  (zero-rated, exempt, reverse charge) no tax may be charged and every amount carries the
  category at 0 %;
- the VAT breakdown, totals and amount due are sums of those rounded amounts, so the grand
  total is the invoice's total to the cent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

from models.billing_profiles import ChargeKind
from models.currencies import round_money
from models.einvoicing.identifiers import VatCategory
from models.errors import GenerationFailed
from models.invoices.generation.types import ComputedRevision, Context
from models.invoices.tables import LineKind

SECTION_VERSION = 1
# Roles of the TAX and CHARGE lines, in their order on the invoice.
VAT_ROLE = "VAT"
CHARGE_ROLE = "CHARGE"
UNTAXED_REASON = "Not subject to VAT"
# Exemption reason codes (CEF VATEX) of the categories that have one.
_EXEMPTION_CODES = {VatCategory.REVERSE_CHARGE: "VATEX-EU-AE"}
_EXEMPTION_TEXTS = {VatCategory.REVERSE_CHARGE: "Reverse charge"}


class DocumentKind(str, Enum):
    """What an e-invoice document is: UNTDID 1001 type 380 or 381, UBL root Invoice or CreditNote."""

    INVOICE = "INVOICE"
    CREDIT_NOTE = "CREDIT_NOTE"

    @property
    def type_code(self) -> str:
        return "380" if self is DocumentKind.INVOICE else "381"


class FrozenLine(Protocol):
    """A stored line of a revision (an `InvoiceLineItem`, or a credit note's line)."""

    position: int
    kind: LineKind
    description: str
    quantity: Decimal | None
    unit: str | None
    amount: Decimal


def _party_lines(row: Any) -> list[str]:
    third = ", ".join(part for part in (row.address_line3, row.address_line4) if part)
    return [part for part in (row.address_line1, row.address_line2, third) if part]


def _party(row: Any, name: str) -> dict[str, Any]:
    return {
        "name": name, "legal_id": row.legal_id, "vat_id": row.vat_id,
        "country_code": row.country_code, "lines": _party_lines(row), "city": row.city,
        "postal_code": row.postal_code, "region": row.region,
        "scheme": row.endpoint_scheme, "endpoint": row.endpoint_id,
    }


def _charge_roles(ctx: Context, revision: ComputedRevision, problems: list[str]) -> tuple[list[str], Decimal | None]:
    """The role of each TAX and CHARGE line, and the VAT rate (None: no percentage tax).
    Billing-rule taxes come first, then the profile's taxes and charges, in their order."""
    lines = revision.charge_lines
    rule_taxes = lines[: len(lines) - len(ctx.charges)]
    roles, rates = [], []
    for line in rule_taxes:
        roles.append(VAT_ROLE)
        problems.append(
            f"The tax {line.description!r} comes from a billing rule; an EN 16931 invoice has one VAT "
            "rate on the whole subtotal: use the billing profile's tax instead."
        )
    for charge in ctx.charges:
        if not charge.is_tax:
            roles.append(CHARGE_ROLE)
            continue
        roles.append(VAT_ROLE)
        if charge.kind == ChargeKind.PERCENT:
            rates.append(charge.value)
        else:
            problems.append(
                f"The tax {charge.name!r} of the billing profile is a fixed amount; EN 16931 VAT is a "
                "percentage of the subtotal."
            )
    if len(rates) > 1:
        problems.append("The billing profile has several percentage taxes; an EN 16931 invoice has one VAT rate.")
    return roles, (rates[0] if rates else None)


def einvoice_section(ctx: Context, revision: ComputedRevision) -> dict[str, Any]:
    """What the revision's view keeps for e-invoices; raises GenerationFailed, listing every
    problem, when the organization chose e-invoicing and the invoice cannot be one."""
    profile, account = ctx.profile, ctx.account
    problems: list[str] = []
    roles, rate = _charge_roles(ctx, revision, problems)
    seller = _party(profile, profile.company_name or ctx.organization.name)
    buyer = _party(account, account.official_company_name or account.name)
    where_seller = f"the billing profile {profile.nickname!r}"
    where_buyer = f"the managed account {account.name!r}"
    for party, where in ((seller, where_seller), (buyer, where_buyer)):
        if not party["country_code"]:
            problems.append(f"{where[0].upper()}{where[1:]} has no country code (countryCode).")
        if not party["endpoint"]:
            problems.append(
                f"{where[0].upper()}{where[1:]} has no electronic address (electronicAddressScheme and "
                "electronicAddress, its Peppol id)."
            )
    category = VatCategory(profile.vat_category)
    if not seller["vat_id"]:
        problems.append(f"The billing profile {profile.nickname!r} has no VAT identifier (vatId).")
    if not profile.iban:
        problems.append(f"The billing profile {profile.nickname!r} has no IBAN to be paid on (iban).")
    if category is VatCategory.STANDARD and (rate is None or rate <= 0):
        problems.append(
            f"The billing profile {profile.nickname!r} charges standard-rated VAT (vatCategory STANDARD) "
            "but has no percentage tax above 0: add it, or choose the VAT category that applies."
        )
    if category is not VatCategory.STANDARD and any(
        role == VAT_ROLE and line.amount for role, line in zip(roles, revision.charge_lines, strict=True)
    ):
        problems.append(
            f"The billing profile {profile.nickname!r} is {category.value.lower().replace('_', ' ')} "
            "(vatCategory) but charges a tax."
        )
    if category is VatCategory.EXEMPT and not profile.vat_exemption_reason:
        problems.append(f"The billing profile {profile.nickname!r} is VAT exempt but gives no reason (vatExemptionReason).")
    if category is VatCategory.REVERSE_CHARGE and not buyer["vat_id"]:
        problems.append(f"Reverse charge needs the buyer's VAT identifier: {where_buyer} has none (vatId).")
    if ctx.organization.einvoicing and problems:
        raise GenerationFailed("Not a valid EN 16931 e-invoice: " + " ".join(problems))
    return {
        "version": SECTION_VERSION,
        "seller": seller,
        "buyer": buyer,
        "buyer_reference": account.po_number or account.name,
        "order_reference": account.po_number,
        "payment": {"iban": profile.iban, "bic": profile.bic, "account_name": seller["name"]},
        "vat": {
            "category": category.value,
            "rate": f"{rate.normalize():f}" if category is VatCategory.STANDARD and rate is not None else "0",
            "exemption_reason": profile.vat_exemption_reason or _EXEMPTION_TEXTS.get(category, ""),
            "exemption_code": _EXEMPTION_CODES.get(category, ""),
        },
        "charge_roles": roles,
        "problems": problems,
    }


def einvoice_ready(snapshot: dict[str, Any]) -> bool:
    """Whether a frozen view can be delivered as an e-invoice."""
    section = snapshot.get("einvoice")
    return isinstance(section, dict) and not section["problems"]


@dataclass(frozen=True)
class Party:
    name: str
    legal_id: str
    vat_id: str
    country_code: str
    lines: list[str]
    city: str
    postal_code: str
    region: str
    scheme: str
    endpoint: str


@dataclass(frozen=True)
class TaxCategory:
    code: str  # UNTDID 5305: S, Z, E, AE
    rate: Decimal
    exemption_reason: str = ""
    exemption_code: str = ""


@dataclass(frozen=True)
class DocumentLine:
    id: str
    name: str
    description: str
    quantity: Decimal  # 1 or -1
    price: Decimal  # never negative
    amount: Decimal
    tax: TaxCategory


@dataclass(frozen=True)
class AllowanceCharge:
    is_charge: bool
    reason: str
    amount: Decimal  # never negative
    tax: TaxCategory


@dataclass(frozen=True)
class TaxSubtotal:
    tax: TaxCategory
    taxable: Decimal
    amount: Decimal


@dataclass(frozen=True)
class DocumentReference:
    number: str
    issue_date: str


@dataclass(frozen=True)
class EDocument:
    """An EN 16931 invoice or credit note, every amount rounded to the currency."""

    kind: DocumentKind
    number: str
    issue_date: str  # ISO dates
    due_date: str
    period_start: str
    period_end: str
    currency: str
    payment_terms: str
    buyer_reference: str
    order_reference: str
    seller: Party
    buyer: Party
    iban: str
    bic: str
    account_name: str
    lines: list[DocumentLine]
    allowances_charges: list[AllowanceCharge]
    tax_subtotals: list[TaxSubtotal]
    line_total: Decimal
    allowance_total: Decimal
    charge_total: Decimal
    tax_exclusive: Decimal
    tax_total: Decimal
    grand_total: Decimal
    due_amount: Decimal
    preceding: DocumentReference | None = None
    notes: list[str] = field(default_factory=list)


def _sum(values: Iterable[Decimal]) -> Decimal:
    return sum(values, Decimal(0))


@dataclass
class _Parts:
    """A frozen view's lines sorted into what EN 16931 makes of them."""

    lines: list[DocumentLine] = field(default_factory=list)
    adjustments: list[AllowanceCharge] = field(default_factory=list)
    taxes: list[Decimal] = field(default_factory=list)


def _parts(section: dict[str, Any], lines: Sequence[FrozenLine], currency: str, main: TaxCategory) -> _Parts:
    """Each usage, one-off and late-cost line an invoice line; each rule an allowance or
    charge; each TAX or CHARGE line, by its role, VAT or a charge exempt from it."""
    untaxed = main if main.code != "S" else TaxCategory("E", Decimal(0), UNTAXED_REASON)
    ordered = sorted(lines, key=lambda line: line.position)
    extra_lines = [line for line in ordered if line.kind in (LineKind.TAX, LineKind.CHARGE)]
    roles = dict(zip((line.position for line in extra_lines), section["charge_roles"], strict=True))
    found = _Parts()
    for line in ordered:
        amount = round_money(Decimal(line.amount), currency)
        if line.kind in (LineKind.USAGE, LineKind.ONE_OFF, LineKind.LATE_COST):
            # Usage, a one-off item, costs of an earlier month: each an invoice line.
            detail = f"{line.quantity.normalize():f} {line.unit}" if line.quantity is not None and line.unit else ""
            found.lines.append(DocumentLine(
                id=str(len(found.lines) + 1), name=line.description, description=detail,
                quantity=Decimal(1 if amount >= 0 else -1), price=abs(amount), amount=amount, tax=main,
            ))
        elif line.kind == LineKind.RULE:
            if amount:
                found.adjustments.append(AllowanceCharge(amount > 0, line.description, abs(amount), main))
        elif roles[line.position] == VAT_ROLE:
            found.taxes.append(amount)
        elif amount:
            found.adjustments.append(AllowanceCharge(True, line.description, amount, untaxed))
    return found


def _tax_subtotals(parts: _Parts, main: TaxCategory, tax_total: Decimal) -> list[TaxSubtotal]:
    """The VAT breakdown: the taxable amount of each category, the main one carrying the VAT."""
    groups: dict[TaxCategory, Decimal] = {}
    for item in parts.lines:
        groups[item.tax] = groups.get(item.tax, Decimal(0)) + item.amount
    for adjustment in parts.adjustments:
        signed = adjustment.amount if adjustment.is_charge else -adjustment.amount
        groups[adjustment.tax] = groups.get(adjustment.tax, Decimal(0)) + signed
    groups.setdefault(main, Decimal(0))
    return [
        TaxSubtotal(category, taxable, tax_total if category == main else Decimal(0))
        for category, taxable in groups.items()
    ]


def document_from(
    snapshot: dict[str, Any], lines: Sequence[FrozenLine], kind: DocumentKind = DocumentKind.INVOICE,
    preceding: DocumentReference | None = None,
) -> EDocument:
    """The EN 16931 document of a frozen view and its stored lines. The view must be
    `einvoice_ready`. A credit note's view has the same shape, its amounts those credited."""
    section = snapshot["einvoice"]
    if section["problems"]:
        raise ValueError("the view is not a valid EN 16931 document: " + " ".join(section["problems"]))
    currency = snapshot["currency"]
    vat = section["vat"]
    main = TaxCategory(
        VatCategory(vat["category"]).code, Decimal(vat["rate"]), vat["exemption_reason"], vat["exemption_code"]
    )
    parts = _parts(section, lines, currency, main)
    tax_total = _sum(parts.taxes)
    line_total = _sum(item.amount for item in parts.lines)
    allowance_total = _sum(a.amount for a in parts.adjustments if not a.is_charge)
    charge_total = _sum(a.amount for a in parts.adjustments if a.is_charge)
    tax_exclusive = line_total - allowance_total + charge_total
    grand_total = tax_exclusive + tax_total
    if grand_total != round_money(Decimal(snapshot["total"]), currency):
        raise ValueError(f"the e-invoice totals {grand_total}, the frozen view {snapshot['total']}")
    return EDocument(
        kind=kind, number=snapshot["number"], issue_date=snapshot["issue_date"], due_date=snapshot["due_date"],
        period_start=snapshot["period"]["start"], period_end=snapshot["period"]["end"], currency=currency,
        payment_terms=f"Payment due within {snapshot['payment_terms_days']} days.",
        buyer_reference=section["buyer_reference"], order_reference=section["order_reference"],
        seller=Party(**section["seller"]), buyer=Party(**section["buyer"]),
        iban=section["payment"]["iban"], bic=section["payment"]["bic"],
        account_name=section["payment"]["account_name"], lines=parts.lines,
        allowances_charges=parts.adjustments, tax_subtotals=_tax_subtotals(parts, main, tax_total),
        line_total=line_total, allowance_total=allowance_total, charge_total=charge_total,
        tax_exclusive=tax_exclusive, tax_total=tax_total, grand_total=grand_total, due_amount=grand_total,
        preceding=preceding,
    )
