"""Demo data: a believable MSP with customers, users and a month of real FOCUS costs.

`load_demo()` is what a newcomer meets first (`./run`), so it is idempotent: a second run
finds the organization by name, creates only what is missing, leaves everything else as it
is (edits made in the UI survive), and hands out fresh passwords and tokens for the three demo
users, since the previous ones were printed once and are gone.

The FOCUS sample's sub-accounts carry codenames ("Atlas Orion", "Pioneer Zenith"); the demo
customers claim them by the first word, the way an MSP names its customers' cloud accounts.
"""

from __future__ import annotations

import csv
import secrets
import struct
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict, cast

from tortoise.transactions import in_transaction

from models.auth import TokenKind, User, create_user, hash_password, issue_token
from models.base import Scope
from models.billing_periods import close_period
from models.billing_profiles import BillingProfile, BillingProfileCharge, ChargeKind
from models.costs import CostImport, CostRecord, ImportReport, import_costs
from models.invoices.lifecycle import Actor
from models.managed_accounts import ManagedAccount, set_sub_accounts
from models.organizations import Organization

ORGANIZATION_NAME = "Northwind Cloud Partners"
PROFILE_NICKNAME = "Northwind UK"
TOKEN_LIFETIME = timedelta(days=30)
TOKEN_NAME = "Demo token"


class DemoAddress(TypedDict, total=False):
    """The address columns a demo customer fills in (`AddressMixin`)."""

    address_line1: str
    address_line2: str
    address_line3: str
    address_line4: str
    city: str
    region: str
    postal_code: str
    country: str


@dataclass(frozen=True)
class DemoCustomer:
    name: str
    official_company_name: str
    # First words of the FOCUS SubAccountNames this customer owns.
    codenames: tuple[str, ...]
    address: DemoAddress
    billing_emails: tuple[str, ...]
    po_number: str
    payment_terms_days: int
    vat: str


CUSTOMERS = (
    DemoCustomer(
        "Atlas Freight", "Atlas Freight Logistics Limited", ("Atlas",),
        {"address_line1": "Unit 4, Thames Gateway Park", "address_line2": "Choats Road",
         "city": "Dagenham", "region": "Essex", "postal_code": "RM9 6RH", "country": "United Kingdom"},
        ("accounts.payable@atlasfreight.example",), "PO-ATL-24117", 30, "GB 284 1937 55",
    ),
    DemoCustomer(
        "Orion Health", "Orion Health Group plc", ("Orion",),
        {"address_line1": "3 Hardman Street", "address_line2": "Spinningfields",
         "city": "Manchester", "postal_code": "M3 3HF", "country": "United Kingdom"},
        ("finance@orionhealth.example", "it-procurement@orionhealth.example"),
        "4500018722", 45, "GB 193 5520 18",
    ),
    DemoCustomer(
        "Pioneer Retail", "Pioneer Retail Holdings Ltd", ("Pioneer",),
        {"address_line1": "Wellington Place", "address_line2": "7 Whitehall Road",
         "city": "Leeds", "postal_code": "LS1 4AP", "country": "United Kingdom"},
        ("invoices@pioneerretail.example",), "PR-2024-0931", 30, "GB 402 8816 03",
    ),
    DemoCustomer(
        "Zenith Analytics", "Zenith Analytics DAC", ("Zenith", "Eclipse"),
        {"address_line1": "Block B, The Crescent Building", "address_line2": "Northwood Business Park",
         "city": "Dublin 9", "region": "County Dublin", "postal_code": "D09 C6X8", "country": "Ireland"},
        ("ap@zenithanalytics.example",), "ZA-PO-7781", 14, "IE 3668997OH",
    ),
    DemoCustomer(
        "Odyssey Travel", "Odyssey Travel Group Ltd", ("Odyssey", "Voyager"),
        {"address_line1": "1 Lochrin Square", "address_line2": "92 Fountainbridge",
         "city": "Edinburgh", "postal_code": "EH3 9QA", "country": "United Kingdom"},
        ("supplier.invoices@odysseytravel.example",), "OTG/IT/0412", 30, "GB 771 2049 66",
    ),
    DemoCustomer(
        "Horizon Media", "Horizon Media Studios Ltd", ("Horizon", "Nimbus", "Apollo"),
        {"address_line1": "Engine Shed", "address_line2": "Station Approach",
         "city": "Bristol", "postal_code": "BS1 6QH", "country": "United Kingdom"},
        ("accounts@horizonmedia.example",), "HMS-00318", 60, "GB 958 3310 72",
    ),
)
CUSTOMER_USER_ACCOUNT = "Atlas Freight"

# (scope, e-mail, name): the customer user belongs to CUSTOMER_USER_ACCOUNT.
USERS = (
    (Scope.OWNER, "owner@northwind.example", "Olivia Bennett"),
    (Scope.VIEWER, "viewer@northwind.example", "Victor Hale"),
    (Scope.CUSTOMER, "customer@northwind.example", "Chloe Morgan"),
)


@dataclass
class DemoUser:
    email: str
    name: str
    scope: Scope
    password: str
    token: str
    account: str | None = None


@dataclass
class DemoResult:
    organization: Organization
    created: bool
    users: list[DemoUser] = field(default_factory=list)
    # None when the sample had been imported before: a re-run must not import it twice.
    report: ImportReport | None = None
    # The sample's months, closed: their invoices are ready to generate.
    closed: list[date] = field(default_factory=list)


async def load_demo(sample_csv: Path, *, progress: Any = None) -> DemoResult:
    """Create (or complete) the demo organization, issue fresh credentials for its users and
    import the FOCUS sample once. `progress` is handed to `import_costs`."""
    sample_csv = Path(sample_csv)
    async with in_transaction():
        organization, created = await _organization()
        profile = await _billing_profile(organization)
        accounts = await _managed_accounts(organization, profile, _sample_sub_accounts(sample_csv))
        users = await _users(organization, accounts[CUSTOMER_USER_ACCOUNT])
    result = DemoResult(organization, created, users)
    already = await CostImport.filter(organization=organization, filename=sample_csv.name).exists()
    if not already:
        owner = await User.get(email=users[0].email)
        result.report = await import_costs(
            organization.id, sample_csv, filename=sample_csv.name,
            imported_by_id=owner.id, progress=progress,
        )
    # Closing is idempotent: a re-run adds nothing, and a newcomer finds the sample's month
    # ready to generate rather than an empty list.
    # `flat=True` yields the values themselves; tortoise's annotation says tuples.
    months = cast(
        list[date],
        await CostRecord.filter(organization_id=organization.id).distinct().values_list("billing_month", flat=True),
    )
    result.closed = sorted(set(months))
    for month in result.closed:
        await close_period(organization.id, month, Actor.system("demo"))
    return result


async def _organization() -> tuple[Organization, bool]:
    organization = await Organization.filter(name=ORGANIZATION_NAME).order_by("created_at").first()
    if organization is not None:
        return organization, False
    organization = await Organization.create(
        name=ORGANIZATION_NAME, timezone="Europe/London", invoice_prefix="INV"
    )
    return organization, True


async def _billing_profile(organization: Organization) -> BillingProfile:
    profile = await BillingProfile.get_or_none(organization=organization, nickname=PROFILE_NICKNAME)
    if profile is not None:
        return profile
    profile = await BillingProfile.create(
        organization=organization,
        nickname=PROFILE_NICKNAME,
        company_name="Northwind Cloud Partners Ltd",
        address_line1="2 Kingdom Street",
        address_line2="Paddington Central",
        city="London",
        postal_code="W2 6BD",
        country="United Kingdom",
        logo=logo_png(),
        logo_content_type="image/png",
        business_fields=[
            {"key": "VAT", "value": "GB 318 4420 97"},
            {"key": "Company No.", "value": "11846203"},
        ],
        banking_fields=[
            {"key": "Bank", "value": "Barclays Bank UK PLC"},
            {"key": "Account name", "value": "Northwind Cloud Partners Ltd"},
            {"key": "IBAN", "value": "GB33 BUKB 2020 1555 5555 55"},
            {"key": "BIC", "value": "BUKBGB22"},
        ],
        # VAT is a line of its own in exports: Xero must not add it again.
        xero_tax_type="No VAT",
        # What e-invoices (Factur-X, UBL) need; Peppol knows UK companies by VAT number (9932).
        country_code="GB", vat_id="GB318442097", legal_id="11846203", endpoint_scheme="9932",
        endpoint_id="GB318442097", iban="GB33BUKB20201555555555", bic="BUKBGB22",
    )
    # The support plan is added before VAT so that VAT is charged on it as well.
    await BillingProfileCharge.create(
        billing_profile=profile, position=1, name="Support plan",
        kind=ChargeKind.FIXED, value=Decimal("150.00"), is_tax=False,
    )
    await BillingProfileCharge.create(
        billing_profile=profile, position=2, name="VAT",
        kind=ChargeKind.PERCENT, value=Decimal("20"), is_tax=True,
    )
    return profile


def _sample_sub_accounts(sample_csv: Path) -> dict[str, list[str]]:
    """SubAccountIds of the sample grouped by the demo customer that claims them; the ids no
    customer claims are left out (they show up as unmatched in the import report)."""
    owner_of = {codename: c.name for c in CUSTOMERS for codename in c.codenames}
    claimed: dict[str, set[str]] = defaultdict(set)
    with sample_csv.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            codename = (row.get("SubAccountName") or "").split(" ", 1)[0]
            if codename in owner_of and row.get("SubAccountId"):
                claimed[owner_of[codename]].add(row["SubAccountId"])
    return {name: sorted(ids) for name, ids in claimed.items()}


# The demo customers' countries, as their addresses name them.
_COUNTRY_CODES = {"United Kingdom": "GB", "Ireland": "IE"}


class DemoIdentifiers(TypedDict):
    """The e-invoice columns a demo customer fills in."""

    country_code: str
    vat_id: str
    endpoint_scheme: str
    endpoint_id: str


def _einvoice_identifiers(customer: DemoCustomer) -> DemoIdentifiers:
    """The buyer identifiers e-invoices need: country, VAT number and, as its Peppol
    electronic address, the VAT number under its country's scheme (9932 UK, 9935 Ireland)."""
    country = _COUNTRY_CODES[customer.address["country"]]
    vat_id = customer.vat.replace(" ", "")
    return DemoIdentifiers(
        country_code=country, vat_id=vat_id, endpoint_scheme="9932" if country == "GB" else "9935", endpoint_id=vat_id,
    )


async def _managed_accounts(
    organization: Organization, profile: BillingProfile, sub_accounts: dict[str, list[str]]
) -> dict[str, ManagedAccount]:
    accounts = {}
    for customer in CUSTOMERS:
        account = await ManagedAccount.get_or_none(organization=organization, name=customer.name)
        if account is None:
            account = await ManagedAccount.create(
                organization=organization,
                name=customer.name,
                contact_email=customer.billing_emails[0],
                billing_profile=profile,
                payment_terms_days=customer.payment_terms_days,
                currency="USD",
                official_company_name=customer.official_company_name,
                billing_emails=list(customer.billing_emails),
                po_number=customer.po_number,
                business_fields=[{"key": "VAT", "value": customer.vat}],
                **customer.address,
                **_einvoice_identifiers(customer),
            )
            await set_sub_accounts(account, sub_accounts.get(customer.name, []))
        accounts[customer.name] = account
    return accounts


async def _users(organization: Organization, customer_account: ManagedAccount) -> list[DemoUser]:
    """The three demo users, each with a fresh password and a fresh 30-day API token."""
    demo_users = []
    for scope, email, name in USERS:
        account = customer_account if scope == Scope.CUSTOMER else None
        password = secrets.token_urlsafe(12)
        user = await User.get_or_none(email=email)
        if user is None:
            user = await create_user(
                organization.id, email, scope, password=password, name=name,
                managed_account_id=account.id if account else None,
            )
        else:
            user.password_hash = hash_password(password)
            user.is_active = True
            await user.save(update_fields=["password_hash", "is_active"])
        token, _ = await issue_token(user, TokenKind.API, TOKEN_LIFETIME, name=TOKEN_NAME)
        demo_users.append(
            DemoUser(email, user.name, user.scope, password, token, account.name if account else None)
        )
    return demo_users


def logo_png(size: int = 96) -> bytes:
    """Northwind's mark as a PNG (a white "N" on a navy rounded square with a teal bar),
    drawn here so that the demo needs no binary file."""
    rows = b"".join(
        b"\x00" + b"".join(_logo_pixel(x / size, y / size) for x in range(size))
        for y in range(size)
    )
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows, 9))
        + _png_chunk(b"IEND", b"")
    )


_NAVY, _WHITE, _TEAL, _CLEAR = (
    bytes((31, 58, 95, 255)), bytes((255, 255, 255, 255)), bytes((43, 179, 163, 255)), bytes(4),
)


def _logo_pixel(x: float, y: float) -> bytes:
    """The colour at (x, y), both in 0..1."""
    radius = 0.18
    dx = max(radius - x, 0, x - (1 - radius))
    dy = max(radius - y, 0, y - (1 - radius))
    if dx * dx + dy * dy > radius * radius:
        return _CLEAR
    if 0.80 <= y <= 0.86 and 0.24 <= x <= 0.76:
        return _TEAL
    in_height = 0.20 <= y <= 0.72
    left_bar = 0.26 <= x <= 0.37
    right_bar = 0.63 <= x <= 0.74
    # The diagonal runs from the top of the left bar to the bottom of the right one.
    diagonal = abs((x - 0.315) - (y - 0.20) * (0.37 / 0.52)) <= 0.07
    if in_height and (left_bar or right_bar or diagonal):
        return _WHITE
    return _NAVY


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
