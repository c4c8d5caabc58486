"""Billing profiles: the MSP's identity on an invoice (logo, company, bank, taxes, charges)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.audit import AuditEntity, record_change, snapshot
from models.base import ADDRESS_TEXT_COLUMNS, AddressMixin, TimestampMixin, enum_check
from models.einvoicing.identifiers import (
    VatCategory,
    check_endpoint_pair,
    clean_bic,
    clean_country_code,
    clean_eas_scheme,
    clean_endpoint_id,
    clean_iban,
    clean_legal_id,
    clean_vat_id,
)
from models.errors import NotFound, ValidationFailed
from models.text import clean_pairs, clean_text

if TYPE_CHECKING:
    from models.organizations import Organization


class BillingBasis(str, Enum):
    """Which FOCUS cost column invoices bill, before billing rules."""

    # BilledCost: what the provider invoices, after its discounts and credits (the default).
    BILLED = "BILLED"
    # EffectiveCost: amortized, with commitment purchases spread over their use.
    EFFECTIVE = "EFFECTIVE"
    # ListCost: at public list prices, before any negotiated discount.
    LIST = "LIST"


COST_COLUMNS = {BillingBasis.BILLED: "billed_cost", BillingBasis.EFFECTIVE: "effective_cost", BillingBasis.LIST: "list_cost"}


class ChargeKind(str, Enum):
    """How a tax or additional charge is computed from the subtotal after billing rules."""

    PERCENT = "PERCENT"
    FIXED = "FIXED"


class BillingProfile(TimestampMixin, AddressMixin, Model):
    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="billing_profiles", on_delete=fields.CASCADE
    )
    nickname = fields.CharField(max_length=255)
    company_name = fields.CharField(max_length=255, default="")
    logo = fields.BinaryField(null=True)
    logo_content_type = fields.CharField(max_length=32, null=True)
    # Ordered [{"key": "VAT", "value": "GB123"}] pairs, printed below the address.
    business_fields: fields.JSONField[list[dict[str, str]]] = fields.JSONField(default=list)
    # Ordered [{"key": "IBAN", "value": "..."}] pairs, printed in the payment section.
    banking_fields: fields.JSONField[list[dict[str, str]]] = fields.JSONField(default=list)
    # The FOCUS cost column invoices bill (`BillingBasis`); an account may choose another.
    billing_basis = fields.CharEnumField(BillingBasis, max_length=16, default=BillingBasis.BILLED, db_default=BillingBasis.BILLED)
    # Printed at the foot of every invoice: payment instructions, legal text.
    invoice_notes = fields.TextField(default="", db_default="")
    xero_account_code = fields.CharField(max_length=32, default="200")
    xero_tax_type = fields.CharField(max_length=64, default="Tax Exempt")
    # What EN 16931 asks of the seller (see models/einvoicing/identifiers.py); empty: not given.
    # Names kept short: generation reads the profile through a nested select_related, whose
    # column aliases PostgreSQL cuts at 63 characters.
    country_code = fields.CharField(max_length=2, default="", db_default="")
    vat_id = fields.CharField(max_length=15, default="", db_default="")
    legal_id = fields.CharField(max_length=64, default="", db_default="")
    endpoint_scheme = fields.CharField(max_length=4, default="", db_default="")
    endpoint_id = fields.CharField(max_length=255, default="", db_default="")
    iban = fields.CharField(max_length=34, default="", db_default="")
    bic = fields.CharField(max_length=11, default="", db_default="")
    vat_category = fields.CharEnumField(
        VatCategory, max_length=16, default=VatCategory.STANDARD, db_default=VatCategory.STANDARD
    )
    vat_exemption_reason = fields.CharField(max_length=255, default="", db_default="")

    charges: fields.ReverseRelation[BillingProfileCharge]
    # Named by the base table: the accounts' module imports this one (a profile's basis and
    # visibility), and this one only counts them.
    managed_accounts: fields.ReverseRelation[Model]
    organization_id: UUID

    class Meta:
        table = "billing_profiles"
        constraints = (
            UniqueConstraint(fields=("organization_id", "nickname"), name="billing_profiles_nickname_unique"),
            CheckConstraint(check="btrim(nickname) <> ''", name="billing_profiles_nickname_present"),
            enum_check("billing_profiles", "billing_basis", BillingBasis),
            CheckConstraint(
                check="(logo IS NULL) = (logo_content_type IS NULL)"
                " AND (logo_content_type IS NULL OR logo_content_type IN ('image/png', 'image/jpeg'))",
                name="billing_profiles_logo_typed",
            ),
            CheckConstraint(check="jsonb_typeof(business_fields) = 'array'", name="billing_profiles_business_fields_list"),
            CheckConstraint(check="jsonb_typeof(banking_fields) = 'array'", name="billing_profiles_banking_fields_list"),
            enum_check("billing_profiles", "vat_category", VatCategory),
            CheckConstraint(
                check="(endpoint_id = '') = (endpoint_scheme = '')",
                name="billing_profiles_endpoint_pair",
            ),
        )


class BillingProfileCharge(Model):
    """A tax or an additional charge, applied in `position` order to the subtotal."""

    id = fields.UUIDField(primary_key=True)
    billing_profile: fields.ForeignKeyRelation[BillingProfile] = fields.ForeignKeyField(
        "models.BillingProfile", related_name="charges", on_delete=fields.CASCADE
    )
    position = fields.SmallIntField()
    name = fields.CharField(max_length=255)
    kind = fields.CharEnumField(ChargeKind, max_length=16)
    # A percentage (20 = 20 %) or an amount in the invoice currency.
    value = fields.DecimalField(max_digits=20, decimal_places=4)
    is_tax = fields.BooleanField(default=True)

    billing_profile_id: UUID

    class Meta:
        table = "billing_profile_charges"
        constraints = (
            UniqueConstraint(fields=("billing_profile_id", "position"), name="billing_profile_charges_position_unique"),
            enum_check("billing_profile_charges", "kind", ChargeKind),
            CheckConstraint(
                check="value >= 0 AND (kind <> 'PERCENT' OR value <= 100)",
                name="billing_profile_charges_value_range",
            ),
            CheckConstraint(check="btrim(name) <> ''", name="billing_profile_charges_name_present"),
        )


# Limits of what an owner may enter; the invoice template is laid out for them.
MAX_LOGO_BYTES = 512 * 1024
# A logo is decoded by the PDF renderer: a tiny file may declare a huge canvas.
MAX_LOGO_SIDE = 5000
MAX_CHARGES = 20
CHARGE_DECIMALS = Decimal("0.0001")
# NUMERIC(20, 4) holds 16 digits before the point.
CHARGE_CEILING = Decimal("1e16")

# Column -> (camelCase input field, max length, required).
_TEXT_COLUMNS = {
    "nickname": ("nickname", 255, True),
    "company_name": ("companyName", 255, False),
    "invoice_notes": ("invoiceNotes", 4000, False),
    "xero_account_code": ("xeroAccountCode", 32, False),
    "xero_tax_type": ("xeroTaxType", 64, False),
    **ADDRESS_TEXT_COLUMNS,
}
_PAIR_COLUMNS = {"business_fields": "businessFields", "banking_fields": "bankingFields"}
# Column -> (camelCase input field, check): the identifiers EN 16931 asks of the seller.
_IDENTIFIER_COLUMNS = {
    "country_code": ("countryCode", clean_country_code),
    "vat_id": ("vatId", clean_vat_id),
    "legal_id": ("legalRegistrationId", clean_legal_id),
    "endpoint_scheme": ("electronicAddressScheme", clean_eas_scheme),
    "endpoint_id": ("electronicAddress", clean_endpoint_id),
    "iban": ("iban", clean_iban),
    "bic": ("bic", clean_bic),
}
CHANGEABLE = (
    frozenset(_TEXT_COLUMNS) | frozenset(_PAIR_COLUMNS) | frozenset(_IDENTIFIER_COLUMNS)
    | {"charges", "billing_basis", "vat_category", "vat_exemption_reason"}
)


def visible_profiles(principal):
    """Billing profiles are the MSP's: its users see their organization's. A customer sees
    none here; the MSP's details reach it printed on its approved invoices."""
    if not principal.is_msp_user:
        return BillingProfile.filter(id__in=[])  # matches nothing (WHERE 1=0)
    return BillingProfile.filter(organization_id=principal.organization_id)


def _charges(charges: Any) -> list[dict[str, Any]]:
    """Taxes and additional charges in the order they apply: [{"name", "kind", "value",
    "is_tax"}], with `kind` a ChargeKind (or its name)."""
    field = "taxesAndCharges"
    if not isinstance(charges, (list, tuple)):
        raise ValidationFailed("Expected a list of charges.", field=field)
    if len(charges) > MAX_CHARGES:
        raise ValidationFailed(f"At most {MAX_CHARGES} taxes and charges.", field=field)
    cleaned = []
    for number, charge in enumerate(charges, start=1):
        if not isinstance(charge, dict):
            raise ValidationFailed(f"Charge {number} needs a name, a kind and a value.", field=field)
        name = clean_text(charge.get("name"), field, 255, True, f"The name of charge {number}")
        try:
            kind = ChargeKind(charge.get("kind"))
        except ValueError:
            raise ValidationFailed(f"Charge {number}: kind is PERCENT or FIXED.", field=field) from None
        value = charge.get("value")
        if not isinstance(value, Decimal) or not value.is_finite() or value < 0 or value >= CHARGE_CEILING:
            raise ValidationFailed(f"Charge {number}: the value is a number of 0 or more.", field=field)
        if value != value.quantize(CHARGE_DECIMALS):
            raise ValidationFailed(f"Charge {number}: at most 4 decimals.", field=field)
        if kind is ChargeKind.PERCENT and value > 100:
            raise ValidationFailed(f"Charge {number}: a percentage is 0 to 100.", field=field)
        is_tax = charge.get("is_tax", True)
        if not isinstance(is_tax, bool):
            raise ValidationFailed(f"Charge {number}: is_tax is true or false.", field=field)
        cleaned.append({"name": name, "kind": kind, "value": value, "is_tax": is_tax})
    return cleaned


def _clean(data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """Validated column values (only those given) and the charges (None: not given)."""
    unknown = set(data) - CHANGEABLE
    if unknown:
        raise TypeError(f"Not billing profile fields: {', '.join(sorted(unknown))}")
    columns: dict[str, Any] = {}
    for column, (field, limit, required) in _TEXT_COLUMNS.items():
        if column in data:
            columns[column] = clean_text(data[column], field, limit, required)
    if "billing_basis" in data:
        try:
            columns["billing_basis"] = BillingBasis(data["billing_basis"])
        except ValueError:
            raise ValidationFailed("BILLED, EFFECTIVE or LIST.", field="billingBasis") from None
    for column, field in _PAIR_COLUMNS.items():
        if column in data:
            columns[column] = clean_pairs(data[column], field)
    for column, (field, check) in _IDENTIFIER_COLUMNS.items():
        if column in data:
            columns[column] = check(data[column], field)
    if "vat_category" in data:
        try:
            columns["vat_category"] = VatCategory(data["vat_category"])
        except ValueError:
            raise ValidationFailed("Unknown VAT category.", field="vatCategory") from None
    if "vat_exemption_reason" in data:
        columns["vat_exemption_reason"] = clean_text(data["vat_exemption_reason"], "vatExemptionReason", 255, False)
    charges = _charges(data["charges"]) if "charges" in data else None
    return columns, charges


def _check_identifiers(scheme: str, endpoint: str) -> None:
    """What holds between the identifiers once the changes are applied."""
    check_endpoint_pair(scheme, endpoint, "electronicAddress")


def _duplicate_nickname(nickname: str) -> ValidationFailed:
    return ValidationFailed(f"Another billing profile is called {nickname!r}.", field="nickname")


async def _check_nickname(organization_id, nickname: str, connection, exclude_id=None) -> None:
    # Case-insensitive: "Main" and "main" side by side would only confuse whoever picks one.
    query = BillingProfile.filter(organization_id=organization_id, nickname__iexact=nickname)
    query = query.using_db(connection)
    if exclude_id is not None:
        query = query.exclude(id=exclude_id)
    if await query.exists():
        raise _duplicate_nickname(nickname)


async def _logged(connection, profile: BillingProfile, before: dict[str, Any] | None, **extra: Any) -> None:
    """The audit entry of `profile` created (`before` None) or changed, with `extra` (its charges)."""
    after = snapshot(profile, **extra)
    await record_change(connection, AuditEntity.BILLING_PROFILE, profile.id, profile.organization_id, before, after)


async def _charges_of(profile_id, connection) -> list[dict[str, Any]]:
    return await BillingProfileCharge.filter(billing_profile_id=profile_id).using_db(connection).order_by(
        "position"
    ).values("name", "kind", "value", "is_tax")


async def _write_charges(profile_id, charges: list[dict[str, Any]], connection) -> None:
    await BillingProfileCharge.filter(billing_profile_id=profile_id).using_db(connection).delete()
    if charges:
        await BillingProfileCharge.bulk_create(
            [
                BillingProfileCharge(billing_profile_id=profile_id, position=position, **charge)
                for position, charge in enumerate(charges, start=1)
            ],
            using_db=connection,
        )


async def create_profile(principal, data: dict[str, Any]) -> BillingProfile:
    """A new billing profile of the principal's organization. `data` holds column names
    (see CHANGEABLE); `nickname` is required and unique in the organization."""
    if "nickname" not in data:
        raise ValidationFailed("A nickname is required.", field="nickname")
    columns, charges = _clean(data)
    _check_identifiers(columns.get("endpoint_scheme", ""), columns.get("endpoint_id", ""))
    try:
        async with in_transaction() as connection:
            await _check_nickname(principal.organization_id, columns["nickname"], connection)
            profile = await BillingProfile.create(
                organization_id=principal.organization_id, using_db=connection, **columns
            )
            await _write_charges(profile.id, charges or [], connection)
            await _logged(connection, profile, None, charges=await _charges_of(profile.id, connection))
    except IntegrityError:  # the same nickname created concurrently
        raise _duplicate_nickname(columns["nickname"]) from None
    return profile


async def _owned(principal, profile_id, connection) -> BillingProfile:
    """The principal's profile, locked: concurrent edits of one profile queue up rather
    than interleave their charges."""
    profile = await (
        visible_profiles(principal).filter(id=profile_id).select_for_update().using_db(connection).first()
    )
    if profile is None:
        raise NotFound(f"No billing profile with id {profile_id}.", field="id")
    return profile


async def update_profile(principal, profile_id, changes: dict[str, Any]) -> BillingProfile:
    """Change only the given fields; `charges`, when given, replaces the whole ordered list."""
    columns, charges = _clean(changes)
    try:
        async with in_transaction() as connection:
            profile = await _owned(principal, profile_id, connection)
            was = {"charges": await _charges_of(profile.id, connection)} if charges is not None else {}
            before = snapshot(profile, **was)
            if "nickname" in columns:
                await _check_nickname(principal.organization_id, columns["nickname"], connection, profile.id)
            profile.update_from_dict(columns)
            _check_identifiers(profile.endpoint_scheme, profile.endpoint_id)
            await profile.save(using_db=connection)
            if charges is not None:
                await _write_charges(profile.id, charges, connection)
            now = {"charges": await _charges_of(profile.id, connection)} if charges is not None else {}
            await _logged(connection, profile, before, **now)
    except IntegrityError:
        if "nickname" not in columns:
            raise
        raise _duplicate_nickname(columns["nickname"]) from None
    return profile


async def delete_profile(principal, profile_id) -> int:
    """Delete a profile and its charges. The managed accounts that used it are left without
    a profile (the database sets their reference to NULL); returns how many there were."""
    async with in_transaction() as connection:
        profile = await _owned(principal, profile_id, connection)
        detached = await profile.managed_accounts.all().using_db(connection).count()
        before = snapshot(profile, charges=await _charges_of(profile.id, connection))
        await profile.delete(using_db=connection)
        await record_change(connection, AuditEntity.BILLING_PROFILE, profile.id, profile.organization_id, before, None)
    return detached


@dataclass(frozen=True)
class LogoImage:
    content_type: str
    width: int
    height: int


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bit depths allowed for each PNG colour type (PNG specification, table 11.1).
_PNG_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}
# JPEG start-of-frame markers (baseline, progressive, lossless...), but not DHT/JPG/DAC.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Markers that stand alone, without a length: TEM and the restart markers.
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def _png(data: bytes) -> LogoImage | None:
    if not data.startswith(_PNG_SIGNATURE):
        return None
    offset, header, seen_data = len(_PNG_SIGNATURE), None, False
    while offset + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        end = offset + 12 + length
        if end > len(data):
            return None
        body = data[offset + 8:end - 4]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[end - 4:end])[0]:
            return None
        if header is None:
            if kind != b"IHDR" or length != 13:
                return None
            width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", body)
            if depth not in _PNG_DEPTHS.get(colour, ()):
                return None
            header = (width, height)
        seen_data = seen_data or kind == b"IDAT"
        if kind == b"IEND":
            return LogoImage("image/png", *header) if seen_data and end == len(data) else None
        offset = end
    return None


def _jpeg(data: bytes) -> LogoImage | None:
    if not (data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")):
        return None
    offset, size = 2, None
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if marker in _JPEG_STANDALONE:
            offset += 2
            continue
        if marker in (0xD8, 0xD9):
            return None
        length = struct.unpack(">H", data[offset + 2:offset + 4])[0]
        if length < 2 or offset + 2 + length > len(data):
            return None
        if marker in _JPEG_SOF:
            if length < 8:
                return None
            height, width = struct.unpack(">HH", data[offset + 5:offset + 9])
            size = (width, height)
        if marker == 0xDA:  # start of scan: entropy-coded data follows up to EOI
            return LogoImage("image/jpeg", *size) if size else None
        offset += 2 + length
    return None


def inspect_logo(data: bytes) -> LogoImage:
    """What the bytes are, judged by their content alone (a file name or declared type
    proves nothing): a well-formed PNG or JPEG of sensible size, or ValidationFailed."""
    if not data:
        raise ValidationFailed("The file is empty.", field="file")
    if len(data) > MAX_LOGO_BYTES:
        raise ValidationFailed(f"A logo is at most {MAX_LOGO_BYTES // 1024} KiB.", field="file")
    image = _png(data) or _jpeg(data)
    if image is None:
        raise ValidationFailed("A logo is a PNG or JPEG image.", field="file")
    if not (0 < image.width <= MAX_LOGO_SIDE and 0 < image.height <= MAX_LOGO_SIDE):
        raise ValidationFailed(
            f"A logo is at most {MAX_LOGO_SIDE} pixels wide and high "
            f"(this one is {image.width}x{image.height}).",
            field="file",
        )
    return image


async def set_logo(principal, profile_id, data: bytes, apply_to_all: bool = False) -> list[BillingProfile]:
    """Store a logo on a profile, or on every profile of the organization with
    `apply_to_all` (one upload for all). Returns the profiles changed, the given one first."""
    image = inspect_logo(data)
    async with in_transaction() as connection:
        profile = await _owned(principal, profile_id, connection)
        targets = visible_profiles(principal) if apply_to_all else visible_profiles(principal).filter(id=profile.id)
        was = {row.id: snapshot(row) for row in await targets.using_db(connection).select_for_update()}
        await targets.using_db(connection).update(
            logo=data, logo_content_type=image.content_type, updated_at=datetime.now(UTC)
        )
        changed = await targets.using_db(connection).order_by("nickname", "id")
        for row in changed:
            await _logged(connection, row, was.get(row.id))
    return sorted(changed, key=lambda row: row.id != profile.id)


async def remove_logo(principal, profile_id) -> BillingProfile:
    async with in_transaction() as connection:
        profile = await _owned(principal, profile_id, connection)
        before = snapshot(profile)
        profile.logo = profile.logo_content_type = None
        await profile.save(using_db=connection)
        await _logged(connection, profile, before)
    return profile
