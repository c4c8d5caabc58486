"""Managed accounts: the MSP's customers, and the cloud sub-accounts that map costs to them."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.audit import AuditEntity, record_change, snapshot
from models.base import ADDRESS_TEXT_COLUMNS, AddressMixin, TimestampMixin, enum_check
from models.billing_profiles import BillingBasis, visible_profiles
from models.currencies import check_currency
from models.einvoicing.identifiers import (
    check_endpoint_pair,
    clean_country_code,
    clean_eas_scheme,
    clean_endpoint_id,
    clean_legal_id,
    clean_vat_id,
)
from models.errors import ErrorCode, NotFound, ValidationFailed
from models.locales import check_locale
from models.organizations import Organization
from models.text import clean_pairs, clean_text, normalize_email, storable

if TYPE_CHECKING:
    from models.billing_profiles import BillingProfile
    from models.organizations import Organization


class AutoInvoice(str, Enum):
    """What the month close does by itself for an account."""

    # Nothing: its invoice waits, READY_TO_INVOICE, for someone to generate it.
    OFF = "OFF"
    # Generate it; someone reviews and approves it.
    GENERATE = "GENERATE"
    # Generate it, then approve and send it once `auto_send_after_hours` have passed, unless
    # someone cancels the queued send (or approves it sooner) meanwhile.
    SEND = "SEND"


class ManagedAccount(TimestampMixin, AddressMixin, Model):
    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="managed_accounts", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=255)
    contact_email = fields.CharField(max_length=320, default="")
    billing_profile: fields.ForeignKeyNullableRelation[BillingProfile] = fields.ForeignKeyField(
        "models.BillingProfile", related_name="managed_accounts", null=True, on_delete=fields.SET_NULL
    )
    payment_terms_days = fields.SmallIntField(default=30)
    currency = fields.CharField(max_length=3, default="USD")
    # Also bill the integrations the customer connected itself, not only the MSP's.
    include_account_integrations = fields.BooleanField(default=False)
    # One invoice per cloud provider for the month, each with its own number, instead of one.
    invoice_per_provider = fields.BooleanField(default=False, db_default=False)
    # Whether the month close gives the account an invoice at all.
    is_invoiced = fields.BooleanField(default=True, db_default=True)
    # What happens by itself at month close (see `AutoInvoice`), and how long a generated
    # invoice stays reviewable before it is approved and sent by itself.
    auto_invoice = fields.CharEnumField(AutoInvoice, max_length=16, default=AutoInvoice.OFF, db_default=AutoInvoice.OFF)
    auto_send_after_hours = fields.SmallIntField(default=24, db_default=24)
    # The FOCUS cost column its invoices bill, when not the billing profile's.
    billing_basis = fields.CharEnumField(BillingBasis, max_length=16, null=True)
    # Whether the customer's users may see its usage by service category.
    usage_visible_to_customer = fields.BooleanField(default=False, db_default=False)
    official_company_name = fields.CharField(max_length=255, default="")
    billing_emails: fields.JSONField[list[str]] = fields.JSONField(default=list)
    po_number = fields.CharField(max_length=128, default="")
    locale = fields.CharField(max_length=8, null=True)  # None: the organization's (models/locales.py)
    business_fields: fields.JSONField[list[dict[str, str]]] = fields.JSONField(default=list)
    # The MSP's own notes; never shown to the customer.
    internal_notes = fields.TextField(default="")
    # What EN 16931 asks of the buyer (see models/einvoicing/identifiers.py); empty: not given.
    country_code = fields.CharField(max_length=2, default="", db_default="")
    vat_id = fields.CharField(max_length=15, default="", db_default="")
    legal_id = fields.CharField(max_length=64, default="", db_default="")
    endpoint_scheme = fields.CharField(max_length=4, default="", db_default="")
    endpoint_id = fields.CharField(max_length=255, default="", db_default="")

    # The foreign keys' columns, which Tortoise sets on the instance.
    organization_id: UUID
    billing_profile_id: UUID | None

    sub_accounts: fields.ReverseRelation[SubAccount]

    class Meta:
        table = "managed_accounts"
        constraints = (
            UniqueConstraint(fields=("organization_id", "name"), name="managed_accounts_name_unique"),
            CheckConstraint(check="btrim(name) <> ''", name="managed_accounts_name_present"),
            CheckConstraint(check="currency ~ '^[A-Z]{3}$'", name="managed_accounts_currency_iso"),
            CheckConstraint(
                check="payment_terms_days BETWEEN 0 AND 365", name="managed_accounts_payment_terms_range"
            ),
            CheckConstraint(check="jsonb_typeof(billing_emails) = 'array'", name="managed_accounts_emails_list"),
            enum_check("managed_accounts", "auto_invoice", AutoInvoice),
            CheckConstraint(
                check="billing_basis IS NULL OR billing_basis IN ('BILLED', 'EFFECTIVE', 'LIST')",
                name="managed_accounts_billing_basis_valid",
            ),
            CheckConstraint(
                check="auto_send_after_hours BETWEEN 0 AND 720", name="managed_accounts_auto_send_after_range"
            ),
            CheckConstraint(check="jsonb_typeof(business_fields) = 'array'", name="managed_accounts_business_fields_list"),
            CheckConstraint(
                check="(endpoint_id = '') = (endpoint_scheme = '')",
                name="managed_accounts_endpoint_pair",
            ),
        )


class SubAccount(Model):
    """A cloud sub-account (AWS account, Azure subscription, GCP project, OCI tenancy)
    whose FOCUS `SubAccountId` rows belong to a managed account."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="sub_accounts", on_delete=fields.CASCADE
    )
    managed_account: fields.ForeignKeyRelation[ManagedAccount] = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="sub_accounts", on_delete=fields.CASCADE
    )
    sub_account_id = fields.CharField(max_length=512)
    provider_name = fields.CharField(max_length=128, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "sub_accounts"
        constraints = (
            # One sub-account's costs go to exactly one customer.
            UniqueConstraint(fields=("organization_id", "sub_account_id"), name="sub_accounts_unique"),
            CheckConstraint(check="btrim(sub_account_id) <> ''", name="sub_accounts_id_present"),
        )


def visible_accounts(principal):
    """Managed accounts the principal may see: its organization's, or a customer's own."""
    query = ManagedAccount.filter(organization_id=principal.organization_id)
    if not principal.is_msp_user:
        query = query.filter(id=principal.managed_account_id)
    return query


@dataclass(frozen=True)
class AccountQuery:
    """The conditions a list of managed accounts can be narrowed by (None: any)."""

    search: str | None = None
    currencies: list[str] | None = None
    billing_profile_ids: list[UUID] | None = None
    has_billing_profile: bool | None = None


def filter_accounts(query, where: AccountQuery):
    if where.search and where.search.strip():
        term = where.search.strip()
        query = query.filter(
            Q(name__icontains=term) | Q(official_company_name__icontains=term)
            | Q(contact_email__icontains=term)
        )
    if where.currencies is not None:
        query = query.filter(currency__in=storable(ManagedAccount, "currency", [c.strip().upper() for c in where.currencies]))
    if where.billing_profile_ids is not None:
        query = query.filter(billing_profile_id__in=where.billing_profile_ids)
    if where.has_billing_profile is not None:
        query = query.filter(billing_profile_id__isnull=not where.has_billing_profile)
    return query


# Namespace of the advisory lock below (the bytes of "subA"), apart from any other lock.
_SUB_ACCOUNT_MAPPING_LOCK = 0x73756241


async def lock_sub_account_mapping(connection: Any, organization_id: Any) -> None:
    """Serialize, within an organization, the transactions that read the sub-account ->
    managed account mapping to link cost records with those that change it (until commit).

    Without it, a cost import that read the mapping before `set_sub_accounts` committed
    would insert rows linked the old way after the relink had run, and they would stay so.
    """
    await connection.execute_query(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        [_SUB_ACCOUNT_MAPPING_LOCK, str(organization_id)],
    )


async def set_sub_accounts(account: ManagedAccount, sub_account_ids: list[str]) -> None:
    """Make `sub_account_ids` the account's whole list of cloud sub-accounts, and relink the
    organization's cost records to match: rows of these sub-accounts now belong to the
    account, rows of sub-accounts it no longer has belong to no account.

    Refuses (ValidationFailed, field "subAccountIds") an empty id, or an id another account
    of the organization already has; nothing changes then.
    """
    wanted = list(dict.fromkeys(sub_account_id.strip() for sub_account_id in sub_account_ids))
    if "" in wanted:
        raise ValidationFailed("A sub-account id cannot be empty.", field="subAccountIds")
    too_long = next((s for s in wanted if len(s) > 512), None)
    if too_long is not None:
        raise ValidationFailed(f"Sub-account id {too_long[:40]!r}… is longer than 512 characters.", field="subAccountIds")
    organization_id = account.organization_id
    async with in_transaction() as connection:
        await lock_sub_account_mapping(connection, organization_id)
        claimed = await SubAccount.filter(organization_id=organization_id, sub_account_id__in=wanted).exclude(
            managed_account_id=account.id
        ).using_db(connection).select_related("managed_account").order_by("sub_account_id").first()
        if claimed is not None:
            raise ValidationFailed(
                f"Sub-account {claimed.sub_account_id} already belongs to {claimed.managed_account.name}.",
                field="subAccountIds", code=ErrorCode.SUB_ACCOUNT_TAKEN,
            )
        current = set(await _own_sub_accounts(account, connection))
        removed = current.difference(wanted)
        if removed:
            await SubAccount.filter(
                managed_account_id=account.id, sub_account_id__in=removed
            ).using_db(connection).delete()
        added = [s for s in wanted if s not in current]
        if added:
            await SubAccount.bulk_create([
                SubAccount(organization_id=organization_id, managed_account_id=account.id, sub_account_id=s) for s in added
            ], using_db=connection)
        await _relink_costs(connection, account, wanted)


async def _own_sub_accounts(account: ManagedAccount, connection: Any) -> Any:
    query = SubAccount.filter(managed_account_id=account.id).using_db(connection).order_by("sub_account_id")
    return await query.values_list("sub_account_id", flat=True)


async def _state(account: ManagedAccount, connection: Any) -> dict[str, Any] | None:
    """The account as its audit entries compare it, its sub-accounts included."""
    return snapshot(account, sub_account_ids=await _own_sub_accounts(account, connection))


async def _logged(connection: Any, account: ManagedAccount, before: dict[str, Any] | None) -> None:
    after = await _state(account, connection)
    await record_change(connection, AuditEntity.MANAGED_ACCOUNT, account.id, account.organization_id, before, after)


async def _relink_costs(connection: Any, account: ManagedAccount, wanted: list[str]) -> None:
    """The account's records (and the month's sums, `cost_totals`) become exactly those of its
    sub-accounts; only rows whose link changes are written. A sub-account's rows are its one
    account's or unclaimed, so only unclaimed rows are linked (migrations/0028's index)."""
    for table in ("cost_totals", "cost_records"):
        await connection.execute_query(
            f"UPDATE {table} SET managed_account_id = NULL WHERE managed_account_id = $1 AND organization_id = $2"
            " AND NOT (sub_account_id = ANY($3::varchar[]))",
            [account.id, account.organization_id, wanted],
        )
        if wanted:
            await connection.execute_query(
                f"UPDATE {table} SET managed_account_id = $1 WHERE organization_id = $2"
                " AND sub_account_id = ANY($3::varchar[]) AND managed_account_id IS NULL",
                [account.id, account.organization_id, wanted],
            )


# Limits of what an owner may enter; the invoice template is laid out for them.
MAX_BILLING_EMAILS = 20
MAX_INTERNAL_NOTES = 10_000
MAX_PAYMENT_TERMS_DAYS = 365
# The console takes "one or more e-mail addresses, separated by commas" in one box.
_EMAIL_SEPARATORS = re.compile(r"[,;]")

# Column -> (camelCase input field, max length, required).
_TEXT_COLUMNS = {
    "name": ("name", 255, True),
    "official_company_name": ("officialCompanyName", 255, False),
    "po_number": ("poNumber", 128, False),
    "internal_notes": ("internalNotes", MAX_INTERNAL_NOTES, False),
    **ADDRESS_TEXT_COLUMNS,
}
# Column -> (camelCase input field, check): the identifiers EN 16931 asks of the buyer.
_IDENTIFIER_COLUMNS = {
    "country_code": ("countryCode", clean_country_code),
    "vat_id": ("vatId", clean_vat_id),
    "legal_id": ("legalRegistrationId", clean_legal_id),
    "endpoint_scheme": ("electronicAddressScheme", clean_eas_scheme),
    "endpoint_id": ("electronicAddress", clean_endpoint_id),
}
ACCOUNT_FIELDS = frozenset(_TEXT_COLUMNS) | frozenset(_IDENTIFIER_COLUMNS) | {
    "contact_email", "billing_profile_id", "payment_terms_days", "currency",
    "include_account_integrations", "invoice_per_provider", "is_invoiced", "auto_invoice", "auto_send_after_hours",
    "billing_basis", "usage_visible_to_customer", "locale",
    "billing_emails", "business_fields", "sub_account_ids",
}


def _billing_emails(value: Any) -> list[str]:
    """Addresses invoices are sent to: normalized, each once (case aside), in order."""
    field = "billingEmails"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ValidationFailed("Expected a list of e-mail addresses.", field=field)
    parts = [part.strip() for item in value for part in _EMAIL_SEPARATORS.split(item)]
    addresses = list(dict.fromkeys(normalize_email(part, field=field) for part in parts if part))
    if len(addresses) > MAX_BILLING_EMAILS:
        raise ValidationFailed(f"At most {MAX_BILLING_EMAILS} billing e-mail addresses.", field=field)
    return addresses


def _contact_email(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationFailed("The contact e-mail must be text.", field="contactEmail")
    return normalize_email(value, field="contactEmail") if value.strip() else ""


def _payment_terms(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PAYMENT_TERMS_DAYS:
        raise ValidationFailed(
            f"Payment terms are 0 to {MAX_PAYMENT_TERMS_DAYS} days.", field="paymentTermsDays"
        )
    return value


def _profile_id(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"No billing profile with id {value}.", field="billingProfileId") from None


def _sub_account_ids(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ValidationFailed("Expected a list of sub-account ids.", field="subAccountIds")
    if any("\x00" in item for item in value):  # PostgreSQL text cannot hold NUL
        raise ValidationFailed("A sub-account id contains a NUL character.", field="subAccountIds")
    return list(value)


def _clean_account(data: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    """Validated column values (only those given) and the sub-account ids (None: not given)."""
    unknown = set(data) - ACCOUNT_FIELDS
    if unknown:
        raise TypeError(f"Not managed account fields: {', '.join(sorted(unknown))}")
    columns: dict[str, Any] = {}
    for column, (field, limit, required) in _TEXT_COLUMNS.items():
        if column in data:
            columns[column] = clean_text(data[column], field, limit, required)
    checks = {
        "contact_email": _contact_email,
        "billing_emails": _billing_emails,
        "payment_terms_days": _payment_terms,
        "currency": lambda value: check_currency(value if isinstance(value, str) else ""),
        "billing_profile_id": _profile_id,
        "business_fields": lambda value: clean_pairs(value, "businessFields"),
        "locale": lambda value: None if value is None else check_locale(value),
    }
    for column, check in checks.items():
        if column in data:
            columns[column] = check(data[column])
    for column, (field, identifier_check) in _IDENTIFIER_COLUMNS.items():
        if column in data:
            columns[column] = identifier_check(data[column], field)
    if "auto_invoice" in data:
        try:
            columns["auto_invoice"] = AutoInvoice(data["auto_invoice"])
        except ValueError:
            raise ValidationFailed("OFF, GENERATE or SEND.", field="autoInvoice") from None
    if "billing_basis" in data:
        try:
            columns["billing_basis"] = None if data["billing_basis"] is None else BillingBasis(data["billing_basis"])
        except ValueError:
            raise ValidationFailed("BILLED, EFFECTIVE or LIST.", field="billingBasis") from None
    if "auto_send_after_hours" in data:
        hours = data["auto_send_after_hours"]
        if isinstance(hours, bool) or not isinstance(hours, int) or not 0 <= hours <= 720:
            raise ValidationFailed("0 to 720 hours.", field="autoSendAfterHours")
        columns["auto_send_after_hours"] = hours
    for column, field in (("include_account_integrations", "includeAccountIntegrations"),
                          ("invoice_per_provider", "invoicePerProvider"), ("is_invoiced", "isInvoiced"),
                          ("usage_visible_to_customer", "usageVisibleToCustomer")):
        if column in data:
            if not isinstance(data[column], bool):
                raise ValidationFailed("Expected true or false.", field=field)
            columns[column] = data[column]
    sub_account_ids = _sub_account_ids(data["sub_account_ids"]) if "sub_account_ids" in data else None
    return columns, sub_account_ids


def _check_identifiers(scheme: str, endpoint: str) -> None:
    """What holds between the identifiers once the changes are applied."""
    check_endpoint_pair(scheme, endpoint, "electronicAddress")


def _duplicate_name(name: str) -> ValidationFailed:
    return ValidationFailed(f"Another managed account is called {name!r}.", field="name")


async def _check_name(organization_id, name: str, connection, exclude_id=None) -> None:
    # Case-insensitive: "Contoso" and "contoso" side by side would only confuse.
    query = ManagedAccount.filter(organization_id=organization_id, name__iexact=name).using_db(connection)
    if exclude_id is not None:
        query = query.exclude(id=exclude_id)
    if await query.exists():
        raise _duplicate_name(name)


async def _check_billing_profile(principal, profile_id, connection) -> None:
    """The profile must be one the principal sees; it is locked until commit so that it
    cannot be deleted between this check and the write that refers to it."""

    if profile_id is None:
        return
    found = await visible_profiles(principal).filter(id=profile_id).select_for_update().using_db(connection).first()
    if found is None:
        raise NotFound(f"No billing profile with id {profile_id}.", field="billingProfileId")


def _name_taken(exc: IntegrityError, columns: dict[str, Any]) -> ValidationFailed | None:
    """The duplicate-name error when `exc` is the same name created concurrently."""
    if "name" in columns and "managed_accounts_name_unique" in str(exc):
        return _duplicate_name(columns["name"])
    return None


async def _organization_defaults(organization_id, connection) -> dict[str, Any]:
    """What a new account takes from its organization unless given: terms, automation."""
    org = await Organization.get(id=organization_id, using_db=connection)
    automation = AutoInvoice.SEND if org.auto_invoice and org.auto_send else (
        AutoInvoice.GENERATE if org.auto_invoice else AutoInvoice.OFF
    )
    return {
        "payment_terms_days": org.default_payment_terms_days, "auto_invoice": automation,
        "auto_send_after_hours": org.auto_send_grace_hours,
    }


async def create_account(principal, data: dict[str, Any]) -> ManagedAccount:
    """A new managed account of the principal's organization. `data` holds column names
    (see ACCOUNT_FIELDS); `name` is required and unique in the organization; without
    `payment_terms_days` or automatic invoicing it takes the organization's defaults. Given
    `sub_account_ids` are claimed in the same transaction: all is written, or nothing."""
    if "name" not in data:
        raise ValidationFailed("A name is required.", field="name")
    columns, sub_account_ids = _clean_account(data)
    _check_identifiers(columns.get("endpoint_scheme", ""), columns.get("endpoint_id", ""))
    try:
        async with in_transaction() as connection:
            await _check_name(principal.organization_id, columns["name"], connection)
            await _check_billing_profile(principal, columns.get("billing_profile_id"), connection)
            columns = {**await _organization_defaults(principal.organization_id, connection), **columns}
            account = await ManagedAccount.create(
                organization_id=principal.organization_id, using_db=connection, **columns
            )
            if sub_account_ids:
                await set_sub_accounts(account, sub_account_ids)
            await _logged(connection, account, None)
    except IntegrityError as exc:
        taken = _name_taken(exc, columns)
        if taken is None:
            raise
        raise taken from None
    return account


async def update_account(principal, account_id, changes: dict[str, Any]) -> ManagedAccount:
    """Change only the given fields. `billing_profile_id` None detaches the profile;
    `sub_account_ids`, when given, replaces the account's whole list (and relinks costs)."""
    columns, sub_account_ids = _clean_account(changes)
    try:
        async with in_transaction() as connection:
            # Customers see their own account but never change it.
            query = visible_accounts(principal) if principal.is_msp_user else ManagedAccount.filter(id__in=[])
            account = await query.filter(id=account_id).select_for_update().using_db(connection).first()
            if account is None:
                raise NotFound(f"No managed account with id {account_id}.", field="id")
            if "name" in columns:
                await _check_name(principal.organization_id, columns["name"], connection, account.id)
            await _check_billing_profile(principal, columns.get("billing_profile_id"), connection)
            before = await _state(account, connection)
            account.update_from_dict(columns)
            _check_identifiers(account.endpoint_scheme, account.endpoint_id)
            await account.save(using_db=connection)
            if sub_account_ids is not None:
                await set_sub_accounts(account, sub_account_ids)
            await _logged(connection, account, before)
    except IntegrityError as exc:
        taken = _name_taken(exc, columns)
        if taken is None:
            raise
        raise taken from None
    return account
