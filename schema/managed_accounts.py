"""GraphQL types, inputs and payloads of managed accounts (the MSP's customers)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import relay

from models import BillingProfile as BillingProfileModel
from models import ManagedAccount as ManagedAccountModel
from models import SubAccount as SubAccountModel
from models import statements
from models.managed_accounts import AccountQuery, visible_accounts
from models.managed_accounts import AutoInvoice as AutoInvoiceValue
from schema.billing_profiles import BillingBasis, BillingProfile
from schema.common import Address, AddressInput, KeyValue, KeyValueInput, key_values
from schema.core.arguments import CheckedArguments
from schema.core.context import Info
from schema.core.errors import NotFoundError, ValidationError
from schema.core.nodes import filter_uuids, node_uuid, node_uuid_or_none, schema_type, scoped_nodes
from schema.core.pagination import CountedConnection, Direction
from schema.core.permissions import MSP_USERS, requires
from schema.statements import AccountAgeing, AccountBalance, AccountStatement

# Named, not imported: schema.invoices imports this module (Invoice.account).
_INVOICES = strawberry.lazy("schema.invoices")
InvoiceConnectionRef = Annotated["InvoiceConnection", _INVOICES]  # type: ignore[name-defined]  # noqa: F821
InvoiceFilterRef = Annotated["InvoiceFilter", _INVOICES]  # type: ignore[name-defined]  # noqa: F821
InvoiceOrderRef = Annotated["InvoiceOrder", _INVOICES]  # type: ignore[name-defined]  # noqa: F821


@strawberry.type(description="How the customer is addressed on its invoices, and where they go.")
class BillingInformation:
    official_company_name: str = strawberry.field(description="The legal name printed on invoices.")
    address: Address = strawberry.field(description="The billing address printed on invoices.")
    billing_emails: list[str] = strawberry.field(description="Where approved invoices are e-mailed.")
    po_number: str = strawberry.field(description="Purchase order number printed on invoices.")


AutoInvoice = AutoInvoiceValue
strawberry.enum(
    AutoInvoice,
    description="What the month close does by itself for an account: OFF (its invoice waits, "
    "READY_TO_INVOICE), GENERATE (generated for review), SEND (generated, then approved and sent "
    "once autoSendAfterHours have passed unless cancelled with `cancelQueuedInvoice`).",
)


@strawberry.type(name="ManagedAccount", description="A customer of the MSP.")
class ManagedAccount(relay.Node):
    id: relay.NodeID[str]
    name: str = strawberry.field(description="The account's display name; unique in the organization.")
    contact_email: str = strawberry.field(description="The customer's contact e-mail, or empty.")
    payment_terms_days: int = strawberry.field(description="Days from issue to due date.")
    currency: str = strawberry.field(description="ISO 4217 code invoices are issued in.")
    include_account_integrations: bool = strawberry.field(
        description="Whether the costs of the integrations the customer connected itself "
        "(imports of origin ACCOUNT_INTEGRATION) are billed too, not only the MSP's."
    )
    invoice_per_provider: bool = strawberry.field(
        description="Whether the account gets one invoice per cloud provider for a month (each "
        "with its own number), rather than one for all."
    )
    is_invoiced: bool = strawberry.field(description="Whether the month close gives the account an invoice.")
    billing_basis: BillingBasis | None = strawberry.field(
        description="The FOCUS cost column its invoices bill; null: its billing profile's."
    )
    usage_visible_to_customer: bool = strawberry.field(
        description="Whether its customer users may read its usage by service category (`usage`)."
    )
    auto_invoice: AutoInvoice = strawberry.field(description="What the month close does by itself for the account.")
    locale: str | None = strawberry.field(
        description="The language its invoices, credit notes and e-mails are printed in (en, de, fr, nl, es); "
        "null: the organization's `locale`."
    )
    auto_send_after_hours: int = strawberry.field(
        description="With autoInvoice SEND: hours a generated invoice stays for review before it is "
        "approved and sent by itself."
    )
    billing_information: BillingInformation = strawberry.field(
        description="Company name, address, billing e-mails and PO number for invoices."
    )
    business_fields: list[KeyValue] = strawberry.field(
        description="Labelled details printed on invoices (VAT number...), in order."
    )
    country_code: str = strawberry.field(
        description="ISO 3166-1 alpha-2 country of the buyer (e-invoices), or empty."
    )
    vat_id: str = strawberry.field(description="The buyer's VAT identifier, with its country prefix, or empty.")
    legal_registration_id: str = strawberry.field(
        description="The buyer's legal registration identifier, or empty."
    )
    electronic_address_scheme: str = strawberry.field(
        description="Scheme (EAS code) of the buyer's electronic address (Peppol participant id), or empty."
    )
    electronic_address: str = strawberry.field(description="The buyer's electronic address, or empty.")
    created_at: datetime = strawberry.field(description="When the account was created.")
    updated_at: datetime = strawberry.field(description="When the account last changed.")
    model: strawberry.Private[ManagedAccountModel]

    @classmethod
    def from_model(cls, account: ManagedAccountModel) -> ManagedAccount:
        return cls(
            id=str(account.id), name=account.name, contact_email=account.contact_email,
            payment_terms_days=account.payment_terms_days, currency=account.currency,
            include_account_integrations=account.include_account_integrations,
            invoice_per_provider=account.invoice_per_provider, is_invoiced=account.is_invoiced,
            billing_basis=account.billing_basis, usage_visible_to_customer=account.usage_visible_to_customer,
            auto_invoice=account.auto_invoice, auto_send_after_hours=account.auto_send_after_hours, locale=account.locale,
            billing_information=BillingInformation(
                official_company_name=account.official_company_name,
                address=Address.from_model(account), billing_emails=list(account.billing_emails),
                po_number=account.po_number,
            ),
            business_fields=KeyValue.from_list(account.business_fields),
            country_code=account.country_code, vat_id=account.vat_id,
            legal_registration_id=account.legal_id,
            electronic_address_scheme=account.endpoint_scheme,
            electronic_address=account.endpoint_id,
            created_at=account.created_at, updated_at=account.updated_at, model=account,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_accounts)

    @strawberry.field(
        description="The MSP identity invoices are issued under; null when none is set (an "
        "account without one is not invoiced). Null for customers, who see no billing profiles."
    )
    async def billing_profile(self, info: Info) -> BillingProfile | None:
        # The same rule as models.billing_profiles.visible_profiles: MSP users only.
        if self.model.billing_profile_id is None or not info.context.authenticated().is_msp_user:
            return None
        row = await info.context.loaders.by_id(BillingProfileModel).load(self.model.billing_profile_id)
        return BillingProfile.from_model(row) if row else None

    @strawberry.field(
        description="The cloud sub-accounts (AWS accounts, Azure subscriptions, GCP projects, "
        "OCI tenancies) whose costs belong to this account, by FOCUS SubAccountId.",
        extensions=requires(*MSP_USERS),
    )
    async def sub_account_ids(self, info: Info) -> list[str] | None:
        rows = await info.context.loaders.children(
            SubAccountModel, "managed_account_id", order=("sub_account_id",)
        ).load(self.model.id)
        return [row["sub_account_id"] for row in rows]

    @strawberry.field(
        description="The MSP's own notes about the customer; never shown to the customer.",
        extensions=requires(*MSP_USERS),
    )
    def internal_notes(self) -> str | None:
        return self.model.internal_notes

    @strawberry.field(
        description="The account's invoices you may see (a customer: its approved ones); "
        "the same filters and order as `invoices`, within this account. In a list of accounts, "
        "pages by `first`/`after` load for all the accounts at once; pages by `last`/`before` "
        "cost queries per account.",
        extensions=[CheckedArguments()],
    )
    async def invoices(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
        filter: InvoiceFilterRef | None = None,
        order_by: InvoiceOrderRef | None = None,
    ) -> InvoiceConnectionRef:
        wanted = filter.account_ids if filter else None
        # Within this account: a filter naming only other accounts matches nothing.
        within = wanted is None or any(_is_account(gid, self.id) for gid in wanted)
        return await schema_type(info, "InvoiceConnection").of_account(
            info, self.model.id if within else None, filter, order_by, first, after, last, before
        )


    @strawberry.field(description="What the account owes, per currency of its invoices: open, overdue and account credit.")
    async def balance(self) -> list[AccountBalance]:
        return [AccountBalance.of(row) for row in await statements.balances(self.model)]

    @strawberry.field(description="What the account owes, per currency, by days past the due date; "
                      "currencies in which nothing is owed are left out.")
    async def ageing(self) -> list[AccountAgeing]:
        return [AccountAgeing.of(row) for row in await statements.ageings(self.model)]

    @strawberry.field(description="The account's statement from `from` to `to` (both included, at most "
                      "3660 days): per currency, its opening balance, each line and its closing balance.")
    async def statement(self, from_: Annotated[date, strawberry.argument(name="from")], to: date) -> AccountStatement:
        return AccountStatement.of(await statements.statement(self.model, from_, to))

def _is_account(global_id: str, account_id: str) -> bool:
    return str(node_uuid_or_none(global_id, "ManagedAccount")) == account_id


@strawberry.type(description="A page of managed accounts.")
class ManagedAccountConnection(CountedConnection[ManagedAccount]):
    pass


@strawberry.enum(description="What managed accounts can be sorted by.")
class ManagedAccountOrderField(Enum):
    NAME = "name"
    CREATED_AT = "created_at"


@strawberry.input(description="Sort order of managed accounts.")
class ManagedAccountOrder:
    field: ManagedAccountOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.ASC, description="Direction.")


@strawberry.input(description="Narrow the list of managed accounts; all conditions combine.")
class ManagedAccountFilter:
    search: str | None = strawberry.field(
        default=None, description="Part of the name, the official company name or the contact e-mail."
    )
    currencies: list[str] | None = strawberry.field(default=None, description="Any of these invoice currencies.")
    billing_profile_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Invoiced under any of these billing profiles."
    )
    has_billing_profile: bool | None = strawberry.field(
        default=None, description="With (true) or without (false) a billing profile."
    )


@strawberry.input(description="A new managed account.")
class CreateManagedAccountInput:
    name: str = strawberry.field(description="Display name (1 to 255 characters); unique in the organization.")
    contact_email: str | None = strawberry.field(default=None, description="Contact e-mail address.")
    billing_profile_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="The billing profile invoices are issued under; null or omitted: none "
        "(an account without one is not invoiced).",
    )
    payment_terms_days: int | None = strawberry.field(
        default=None, description="Days from issue to due date, 0 to 365 (default 30)."
    )
    currency: str | None = strawberry.field(default=None, description="Invoice currency, ISO 4217 (default USD).")
    include_account_integrations: bool | None = strawberry.field(
        default=None, description="Also bill the integrations the customer connected itself (default false)."
    )
    invoice_per_provider: bool | None = strawberry.field(
        default=None, description="One invoice per cloud provider for a month, from the next month closed (default false)."
    )
    is_invoiced: bool | None = strawberry.field(
        default=None, description="Whether the month close gives the account an invoice (default true)."
    )
    billing_basis: BillingBasis | None = strawberry.field(
        default=None, description="The FOCUS cost column its invoices bill (default: its billing profile's)."
    )
    usage_visible_to_customer: bool | None = strawberry.field(
        default=None, description="Let its customer users read its usage by service category (default false)."
    )
    auto_invoice: AutoInvoice | None = strawberry.field(
        default=None, description="What the month close does by itself (default OFF)."
    )
    auto_send_after_hours: int | None = strawberry.field(
        default=None, description="With autoInvoice SEND: hours of review before the automatic send, 0 to 720 (default 24)."
    )
    official_company_name: str | None = strawberry.field(default=None, description="Legal name printed on invoices.")
    address: AddressInput | None = strawberry.field(default=None, description="Billing address.")
    billing_emails: list[str] | None = strawberry.field(
        default=None,
        description="Where approved invoices are sent: at most 20 addresses; an item may hold "
        "several separated by commas.",
    )
    po_number: str | None = strawberry.field(default=None, description="Purchase order number (at most 128 characters).")
    locale: str | None = strawberry.field(
        default=None, description="Language of its documents and e-mails: en, de, fr, nl or es; omitted: the organization's."
    )
    business_fields: list[KeyValueInput] | None = strawberry.field(
        default=None, description="Labelled details printed on invoices, in order (at most 50)."
    )
    sub_account_ids: list[str] | None = strawberry.field(
        default=None,
        description="FOCUS SubAccountIds whose costs belong to the account; each may belong "
        "to one account only.",
    )
    internal_notes: str | None = strawberry.field(
        default=None, description="The MSP's own notes (at most 10,000 characters); never shown to the customer."
    )
    country_code: str | None = strawberry.field(
        default=None, description='Buyer country, ISO 3166-1 alpha-2 (FR, DE...); "" clears it.'
    )
    vat_id: str | None = strawberry.field(
        default=None, description='Buyer VAT identifier with its country prefix (check digits verified in the EU); "" clears it.'
    )
    legal_registration_id: str | None = strawberry.field(
        default=None, description="Buyer legal registration identifier (at most 64 characters)."
    )
    electronic_address_scheme: str | None = strawberry.field(
        default=None, description="EAS code of the electronic address (0088, 0009, 9925, EM...); given with it."
    )
    electronic_address: str | None = strawberry.field(
        default=None, description="Buyer electronic address (Peppol participant id); given with its scheme."
    )


@strawberry.input(description="Changes to a managed account: an omitted or null field keeps its value.")
class UpdateManagedAccountInput:
    name: str | None = strawberry.field(default=None, description="Display name; unique in the organization.")
    contact_email: str | None = strawberry.field(default=None, description='Contact e-mail address ("" clears it).')
    billing_profile_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="The billing profile invoices are issued under; null detaches it, omitted keeps it.",
    )
    payment_terms_days: int | None = strawberry.field(default=None, description="Days from issue to due date, 0 to 365.")
    currency: str | None = strawberry.field(default=None, description="Invoice currency, ISO 4217.")
    include_account_integrations: bool | None = strawberry.field(
        default=None, description="Also bill the integrations the customer connected itself."
    )
    invoice_per_provider: bool | None = strawberry.field(
        default=None, description="One invoice per cloud provider for a month, from the next month closed."
    )
    is_invoiced: bool | None = strawberry.field(default=None, description="Whether the month close gives the account an invoice.")
    billing_basis: BillingBasis | None = strawberry.field(
        default=strawberry.UNSET,
        description="The FOCUS cost column its invoices bill; null: its billing profile's; omitted keeps it.",
    )
    usage_visible_to_customer: bool | None = strawberry.field(
        default=None, description="Let its customer users read its usage by service category."
    )
    auto_invoice: AutoInvoice | None = strawberry.field(default=None, description="What the month close does by itself.")
    auto_send_after_hours: int | None = strawberry.field(
        default=None, description="With autoInvoice SEND: hours of review before the automatic send, 0 to 720."
    )
    official_company_name: str | None = strawberry.field(default=None, description="Legal name printed on invoices.")
    address: AddressInput | None = strawberry.field(
        default=None, description="Address lines to change; omitted lines keep their value."
    )
    billing_emails: list[str] | None = strawberry.field(
        default=None, description="Replaces the whole list of billing e-mail addresses."
    )
    po_number: str | None = strawberry.field(default=None, description="Purchase order number.")
    locale: str | None = strawberry.field(
        default=strawberry.UNSET, description="Language of its documents and e-mails: en, de, fr, nl or es; null: the organization's."
    )
    business_fields: list[KeyValueInput] | None = strawberry.field(
        default=None, description="Replaces the whole list of business details."
    )
    sub_account_ids: list[str] | None = strawberry.field(
        default=None,
        description="Replaces the whole list of sub-accounts; their cost records are relinked.",
    )
    internal_notes: str | None = strawberry.field(default=None, description="The MSP's own notes.")
    country_code: str | None = strawberry.field(
        default=None, description='Buyer country, ISO 3166-1 alpha-2 (FR, DE...); "" clears it.'
    )
    vat_id: str | None = strawberry.field(
        default=None, description='Buyer VAT identifier with its country prefix (check digits verified in the EU); "" clears it.'
    )
    legal_registration_id: str | None = strawberry.field(
        default=None, description="Buyer legal registration identifier (at most 64 characters)."
    )
    electronic_address_scheme: str | None = strawberry.field(
        default=None, description="EAS code of the electronic address (0088, 0009, 9925, EM...); given with it."
    )
    electronic_address: str | None = strawberry.field(
        default=None, description="Buyer electronic address (Peppol participant id); given with its scheme."
    )


_PLAIN_FIELDS = (
    "name", "contact_email", "payment_terms_days", "currency", "include_account_integrations",
    "invoice_per_provider", "is_invoiced", "auto_invoice", "auto_send_after_hours", "official_company_name",
    "usage_visible_to_customer", "billing_emails", "po_number", "sub_account_ids", "internal_notes",
    "country_code", "vat_id",
)
# Input field -> column, of the identifiers EN 16931 asks of the buyer that are named apart.
_IDENTIFIER_FIELDS = {
    "legal_registration_id": "legal_id", "electronic_address_scheme": "endpoint_scheme",
    "electronic_address": "endpoint_id",
}


def account_data(input: CreateManagedAccountInput | UpdateManagedAccountInput) -> dict[str, Any]:
    """The given fields of an input, as the domain's column names (omitted ones left out)."""
    data = {name: getattr(input, name) for name in _PLAIN_FIELDS}
    data.update({column: getattr(input, name) for name, column in _IDENTIFIER_FIELDS.items()})
    data["business_fields"] = key_values(input.business_fields)
    data = {key: value for key, value in data.items() if value is not None}
    if input.locale is not strawberry.UNSET:
        data["locale"] = input.locale
    if input.billing_basis is not strawberry.UNSET:
        data["billing_basis"] = input.billing_basis
    if input.billing_profile_id is not strawberry.UNSET:
        data["billing_profile_id"] = node_uuid(input.billing_profile_id, "BillingProfile", field="billingProfileId")
    return {**data, **(input.address.to_columns() if input.address else {})}


@strawberry.type(description="The managed account was saved.")
class ManagedAccountSaved:
    managed_account: ManagedAccount = strawberry.field(description="The account as saved.")


CreateManagedAccountPayload = Annotated[
    ManagedAccountSaved | ValidationError | NotFoundError,
    strawberry.union("CreateManagedAccountPayload", description="The result of `createManagedAccount`."),
]
UpdateManagedAccountPayload = Annotated[
    ManagedAccountSaved | ValidationError | NotFoundError,
    strawberry.union("UpdateManagedAccountPayload", description="The result of `updateManagedAccount`."),
]


def account_query(where: ManagedAccountFilter | None) -> AccountQuery:
    if where is None:
        return AccountQuery()
    return AccountQuery(
        search=where.search, currencies=where.currencies,
        billing_profile_ids=filter_uuids(where.billing_profile_ids, "BillingProfile"),
        has_billing_profile=where.has_billing_profile,
    )
