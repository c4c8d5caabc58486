"""GraphQL types, inputs and payloads of billing profiles."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import relay

from models import BillingProfile as BillingProfileModel
from models import BillingProfileCharge as BillingProfileChargeModel
from models import ManagedAccount as ManagedAccountModel
from models.billing_profiles import BillingBasis as BillingBasisValue
from models.billing_profiles import ChargeKind as ChargeKindValue
from models.billing_profiles import visible_profiles
from models.einvoicing.identifiers import VatCategory as VatCategoryValue
from schema.common import Address, AddressInput, KeyValue, KeyValueInput, key_values
from schema.core.context import Info
from schema.core.errors import NotFoundError, ValidationError
from schema.core.nodes import scoped_nodes
from schema.core.pagination import CountedConnection, Direction
from schema.core.scalars import plain

# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
ChargeKind = ChargeKindValue
strawberry.enum(
    ChargeKind,
    name="ChargeKind",
    description="How a tax or charge is computed from the subtotal after billing rules: "
    "PERCENT of it, or a FIXED amount in the invoice currency.",
)

VatCategory = VatCategoryValue
strawberry.enum(
    VatCategory,
    name="VatCategory",
    description="How VAT applies to what a profile invoices, as e-invoices (EN 16931) state it: "
    "STANDARD (S: the profile's one percentage tax is the VAT rate), ZERO_RATED (Z), EXEMPT (E, "
    "with a vatExemptionReason) or REVERSE_CHARGE (AE: the buyer accounts for VAT; its VAT "
    "identifier is needed). Outside STANDARD the profile charges no tax.",
)


@strawberry.type(description="A tax or an additional charge, applied in list order to the subtotal.")
class BillingProfileCharge:
    name: str = strawberry.field(description="The name printed on the invoice, e.g. VAT.")
    kind: ChargeKind = strawberry.field(description="PERCENT or FIXED.")
    value: Decimal = strawberry.field(
        description="A percentage (20 = 20 %) or an amount in the invoice currency."
    )
    is_tax: bool = strawberry.field(description="Printed as a tax (true) or an additional charge.")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BillingProfileCharge:
        return cls(
            name=row["name"], kind=ChargeKindValue(row["kind"]), value=plain(row["value"]),
            is_tax=row["is_tax"],
        )


BillingBasis = BillingBasisValue
strawberry.enum(
    BillingBasis,
    name="BillingBasis",
    description="Which FOCUS cost column invoices bill, before billing rules: BILLED (BilledCost, what the "
    "provider invoices; the default), EFFECTIVE (EffectiveCost, commitments amortized) or LIST (ListCost, "
    "public prices). A row without the column counts its BilledCost.",
)


@strawberry.type(
    name="BillingProfile",
    description="The MSP's identity on an invoice: logo, company, address, business and "
    "banking details, taxes and charges. Managed accounts are invoiced under one.",
)
class BillingProfile(relay.Node):
    id: relay.NodeID[str]
    nickname: str = strawberry.field(description="The profile's name in the console; unique.")
    company_name: str = strawberry.field(description="The company name printed on invoices.")
    address: Address = strawberry.field(description="The company's postal address.")
    business_fields: list[KeyValue] = strawberry.field(
        description="Labelled details printed below the address (VAT number, company number...), in order."
    )
    banking_fields: list[KeyValue] = strawberry.field(
        description="Payment details printed on invoices (bank, IBAN, BIC...), in order."
    )
    invoice_notes: str = strawberry.field(
        description="Printed at the foot of every invoice: payment instructions, legal text."
    )
    billing_basis: BillingBasis = strawberry.field(
        description="The FOCUS cost column invoices bill (an account may choose another)."
    )
    has_logo: bool = strawberry.field(description="Whether a logo is set.")
    xero_account_code: str = strawberry.field(description="Xero sales account code of exported invoices.")
    xero_tax_type: str = strawberry.field(
        description="Xero tax type of every exported row. Taxes are rows of their own, so "
        "choose a type that adds no tax (as the default, Tax Exempt) and Xero totals what was billed.",
    )
    country_code: str = strawberry.field(
        description="ISO 3166-1 alpha-2 country of the seller (e-invoices), or empty."
    )
    vat_id: str = strawberry.field(description="The seller's VAT identifier, with its country prefix, or empty.")
    legal_registration_id: str = strawberry.field(
        description="The seller's legal registration identifier (company number, SIREN...), or empty."
    )
    electronic_address_scheme: str = strawberry.field(
        description="Scheme (EAS code, such as 0088, 0009, 9925) of the seller's electronic "
        "address (Peppol participant id), or empty."
    )
    electronic_address: str = strawberry.field(description="The seller's electronic address, or empty.")
    iban: str = strawberry.field(description="The account invoices are paid to (e-invoice payment means), or empty.")
    bic: str = strawberry.field(description="The BIC of that account's bank, or empty.")
    vat_category: VatCategory = strawberry.field(description="How VAT applies to what the profile invoices.")
    vat_exemption_reason: str = strawberry.field(
        description="Why no VAT is charged, printed in e-invoices (needed when EXEMPT), or empty."
    )
    created_at: datetime = strawberry.field(description="When the profile was created.")
    updated_at: datetime = strawberry.field(description="When the profile last changed.")
    model: strawberry.Private[BillingProfileModel]

    @classmethod
    def from_model(cls, row: BillingProfileModel) -> BillingProfile:
        return cls(
            id=str(row.id), nickname=row.nickname, company_name=row.company_name,
            address=Address.from_model(row), business_fields=KeyValue.from_list(row.business_fields),
            banking_fields=KeyValue.from_list(row.banking_fields), invoice_notes=row.invoice_notes,
            billing_basis=row.billing_basis,
            has_logo=row.logo is not None,
            xero_account_code=row.xero_account_code, xero_tax_type=row.xero_tax_type,
            country_code=row.country_code, vat_id=row.vat_id, legal_registration_id=row.legal_id,
            electronic_address_scheme=row.endpoint_scheme, electronic_address=row.endpoint_id,
            iban=row.iban, bic=row.bic, vat_category=row.vat_category, vat_exemption_reason=row.vat_exemption_reason,
            created_at=row.created_at, updated_at=row.updated_at, model=row,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_profiles)

    @strawberry.field(
        description="The logo as a `data:` URL (usable directly as an <img src>), or null."
    )
    def logo_url(self) -> str | None:
        if self.model.logo is None:
            return None
        encoded = base64.b64encode(bytes(self.model.logo)).decode("ascii")
        return f"data:{self.model.logo_content_type};base64,{encoded}"

    @strawberry.field(description="Taxes and additional charges, in the order they apply.")
    async def taxes_and_charges(self, info: Info) -> list[BillingProfileCharge]:
        rows = await info.context.loaders.children(
            BillingProfileChargeModel, "billing_profile_id", order=("position",)
        ).load(self.model.id)
        return [BillingProfileCharge.from_row(r) for r in rows]

    @strawberry.field(description="How many managed accounts are invoiced under this profile.")
    async def managed_accounts_count(self, info: Info) -> int:
        return await info.context.loaders.counts(ManagedAccountModel, "billing_profile_id").load(self.model.id)


@strawberry.type(description="A page of billing profiles.")
class BillingProfileConnection(CountedConnection[BillingProfile]):
    pass


@strawberry.enum(description="What billing profiles can be sorted by.")
class BillingProfileOrderField(Enum):
    NICKNAME = "nickname"
    CREATED_AT = "created_at"


@strawberry.input(description="Sort order of billing profiles.")
class BillingProfileOrder:
    field: BillingProfileOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.ASC, description="Direction.")


@strawberry.input(description="A tax or an additional charge.")
class BillingProfileChargeInput:
    name: str = strawberry.field(description="Name printed on the invoice (1 to 255 characters).")
    kind: ChargeKind = strawberry.field(description="PERCENT or FIXED.")
    value: Decimal = strawberry.field(
        description="A percentage from 0 to 100, or an amount of 0 or more; at most 4 decimals."
    )
    is_tax: bool = strawberry.field(default=True, description="A tax (true) or an additional charge.")


@strawberry.input(description="The identifiers EN 16931 asks of the seller (a profile's e-invoicing details).")
class SellerIdentifiersInput:
    country_code: str | None = strawberry.field(
        default=None, description='Seller country, ISO 3166-1 alpha-2 (FR, DE...); "" clears it.'
    )
    vat_id: str | None = strawberry.field(
        default=None, description='Seller VAT identifier with its country prefix (check digits verified in the EU); "" clears it.'
    )
    legal_registration_id: str | None = strawberry.field(
        default=None, description="Seller legal registration identifier (at most 64 characters)."
    )
    electronic_address_scheme: str | None = strawberry.field(
        default=None, description="EAS code of the electronic address (0088, 0009, 9925, EM...); given with it."
    )
    electronic_address: str | None = strawberry.field(
        default=None, description="Seller electronic address (Peppol participant id); given with its scheme."
    )
    iban: str | None = strawberry.field(default=None, description='IBAN invoices are paid to (checked); "" clears it.')
    bic: str | None = strawberry.field(default=None, description='BIC of its bank (8 or 11 characters); "" clears it.')
    vat_category: VatCategory | None = strawberry.field(
        default=None, description="How VAT applies (STANDARD for a new profile that does not say)."
    )
    vat_exemption_reason: str | None = strawberry.field(
        default=None, description="Why no VAT is charged (at most 255 characters); needed when EXEMPT."
    )


@strawberry.input(description="A new billing profile.")
class CreateBillingProfileInput(SellerIdentifiersInput):
    nickname: str = strawberry.field(description="Name in the console; unique in the organization.")
    company_name: str | None = strawberry.field(default=None, description="Company name printed on invoices.")
    invoice_notes: str | None = strawberry.field(
        default=None, description="Footer printed on every invoice: payment instructions, legal text (at most 4,000 characters)."
    )
    billing_basis: BillingBasis | None = strawberry.field(
        default=None, description="The FOCUS cost column invoices bill (default BILLED)."
    )
    address: AddressInput | None = strawberry.field(default=None, description="Postal address.")
    business_fields: list[KeyValueInput] | None = strawberry.field(
        default=None, description="Labelled business details, in order (at most 50)."
    )
    banking_fields: list[KeyValueInput] | None = strawberry.field(
        default=None, description="Labelled payment details, in order (at most 50)."
    )
    taxes_and_charges: list[BillingProfileChargeInput] | None = strawberry.field(
        default=None, description="Taxes and charges in the order they apply (at most 20)."
    )
    xero_account_code: str | None = strawberry.field(
        default=None, description='Xero sales account code (default "200").'
    )
    xero_tax_type: str | None = strawberry.field(
        default=None, description='Xero tax type, one that adds no tax (default "Tax Exempt").'
    )


@strawberry.input(description="Changes to a billing profile: an omitted or null field keeps its value.")
class UpdateBillingProfileInput(SellerIdentifiersInput):
    nickname: str | None = strawberry.field(default=None, description="Name in the console; unique.")
    company_name: str | None = strawberry.field(default=None, description="Company name printed on invoices.")
    invoice_notes: str | None = strawberry.field(
        default=None, description="Footer printed on every invoice: payment instructions, legal text (at most 4,000 characters)."
    )
    billing_basis: BillingBasis | None = strawberry.field(
        default=None, description="The FOCUS cost column invoices bill (default BILLED)."
    )
    address: AddressInput | None = strawberry.field(
        default=None, description="Address lines to change; omitted lines keep their value."
    )
    business_fields: list[KeyValueInput] | None = strawberry.field(
        default=None, description="Replaces the whole list of business details."
    )
    banking_fields: list[KeyValueInput] | None = strawberry.field(
        default=None, description="Replaces the whole list of payment details."
    )
    taxes_and_charges: list[BillingProfileChargeInput] | None = strawberry.field(
        default=None, description="Replaces the whole ordered list of taxes and charges."
    )
    xero_account_code: str | None = strawberry.field(default=None, description="Xero sales account code.")
    xero_tax_type: str | None = strawberry.field(default=None, description="Xero tax type, one that adds no tax.")


# Input field -> column, of the identifiers EN 16931 asks of the seller.
_IDENTIFIER_FIELDS = {
    "country_code": "country_code", "vat_id": "vat_id", "legal_registration_id": "legal_id",
    "electronic_address_scheme": "endpoint_scheme", "electronic_address": "endpoint_id", "iban": "iban",
    "bic": "bic", "vat_category": "vat_category", "vat_exemption_reason": "vat_exemption_reason",
}


def profile_data(input: CreateBillingProfileInput | UpdateBillingProfileInput) -> dict[str, Any]:
    """The given fields of an input, as the domain's column names."""
    data: dict[str, Any] = {
        "nickname": input.nickname, "company_name": input.company_name, "invoice_notes": input.invoice_notes,
        "billing_basis": input.billing_basis,
        "business_fields": key_values(input.business_fields),
        "banking_fields": key_values(input.banking_fields),
        "xero_account_code": input.xero_account_code, "xero_tax_type": input.xero_tax_type,
        **{column: getattr(input, name) for name, column in _IDENTIFIER_FIELDS.items()},
    }
    if input.taxes_and_charges is not None:
        data["charges"] = [
            {"name": c.name, "kind": c.kind, "value": c.value, "is_tax": c.is_tax}
            for c in input.taxes_and_charges
        ]
    data = {key: value for key, value in data.items() if value is not None}
    return {**data, **(input.address.to_columns() if input.address else {})}


@strawberry.type(description="The billing profile was saved.")
class BillingProfileSaved:
    billing_profile: BillingProfile = strawberry.field(description="The profile as saved.")


@strawberry.type(description="The billing profile was deleted.")
class BillingProfileDeleted:
    deleted_id: strawberry.ID = strawberry.field(description="Global id of the deleted profile.")
    detached_managed_accounts: int = strawberry.field(
        description="How many managed accounts used it and now have no billing profile."
    )


@strawberry.type(description="The logo was stored.")
class BillingProfileLogoSet:
    billing_profile: BillingProfile = strawberry.field(description="The profile the logo was uploaded to.")
    billing_profiles: list[BillingProfile] = strawberry.field(
        description="Every profile that now has this logo (all of the organization's with "
        "applyToAllProfiles), the uploaded-to one first."
    )


CreateBillingProfilePayload = Annotated[
    BillingProfileSaved | ValidationError,
    strawberry.union("CreateBillingProfilePayload", description="The result of `createBillingProfile`."),
]
UpdateBillingProfilePayload = Annotated[
    BillingProfileSaved | ValidationError | NotFoundError,
    strawberry.union("UpdateBillingProfilePayload", description="The result of `updateBillingProfile`."),
]
DeleteBillingProfilePayload = Annotated[
    BillingProfileDeleted | NotFoundError,
    strawberry.union("DeleteBillingProfilePayload", description="The result of `deleteBillingProfile`."),
]
SetBillingProfileLogoPayload = Annotated[
    BillingProfileLogoSet | ValidationError | NotFoundError,
    strawberry.union("SetBillingProfileLogoPayload", description="The result of `setBillingProfileLogo`."),
]
RemoveBillingProfileLogoPayload = Annotated[
    BillingProfileSaved | NotFoundError,
    strawberry.union(
        "RemoveBillingProfileLogoPayload", description="The result of `removeBillingProfileLogo`."
    ),
]
