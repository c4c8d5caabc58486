"""Downloads and exports: signed links and their scope, Xero and detailed CSV, the 500-invoice
split, and cells that are safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from strawberry.relay import to_base64
from tortoise import connections

from infra import links, storage
from infra.settings import get_settings
from models import Invoice, InvoiceLineItem, InvoiceRevision, ManagedAccount, User, exports
from models.auth import Token, TokenKind, issue_token
from models.base import Scope
from models.exports import DETAILED_COLUMNS, XERO_COLUMNS, ExportFormat
from models.invoices import InvoiceStatus, LineKind
from models.organizations import ExportDateFormat
from tests import factories as f
from tests.graphql import error_codes, gql

# The header of Xero's sales-invoice template, byte for byte.
XERO_HEADER = (
    b"*ContactName,EmailAddress,POAddressLine1,POAddressLine2,POAddressLine3,POAddressLine4,"
    b"POCity,PORegion,POPostalCode,POCountry,*InvoiceNumber,Reference,*InvoiceDate,*DueDate,"
    b"InventoryItemCode,*Description,*Quantity,*UnitAmount,Discount,*AccountCode,*TaxType,"
    b"TrackingName1,TrackingOption1,TrackingName2,TrackingOption2,Currency,BrandingTheme\r\n"
)
DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "\n")
NUMBER = re.compile(r"-?\d+(\.\d+)?")
ROLES = ["owner", "viewer", "customer", "other_customer", "foreign_owner"]

EXPORT = """mutation($format: ExportFormat!, $ids: [ID!], $filter: InvoiceFilter) {
  exportInvoices(format: $format, ids: $ids, filter: $filter) {
    __typename ... on InvoiceExport { url filename invoiceCount expiresAt }
    ... on UserError { code message field } } }"""
LINKS = """query($n: String!) { invoice(number: $n) { number pdfUrl csvUrl } }"""
SETTINGS = """mutation($f: ExportDateFormat!) { updateExportSettings(dateFormat: $f) {
  __typename ... on ExportSettingsUpdated { organization { exportDateFormat } } } }"""
SEPTEMBER = {"periodFrom": "2024-09", "periodTo": "2024-09"}

# (kind, description, amount, quantity, unit price)
LINES = [
    (LineKind.USAGE, "AWS Amazon EC2", Decimal("100.00"), Decimal("40"), Decimal("2.5")),
    # 3 x 3.3333 is 9.9999, not the line's 10.00: Xero gets 1 x 10.00.
    (LineKind.USAGE, "Azure Storage", Decimal("10.00"), Decimal("3"), Decimal("3.3333")),
    (LineKind.RULE, "Credit: Onboarding", Decimal("-12.50"), None, None),
    (LineKind.CHARGE, "Support plan", Decimal("150.00"), None, None),
    (LineKind.TAX, "VAT", Decimal("19.50"), None, None),
]


async def approved_invoice(account, period, number, status="APPROVED", lines=LINES, pdf: bytes | None = None):
    """An invoice as approval leaves it, with the given lines (its totals add them up)."""
    invoice = await f.invoice(account, period, number=number)
    subtotal = sum((a for k, _, a, _, _ in lines if k in (LineKind.USAGE, LineKind.RULE)), Decimal(0))
    charges = sum((a for k, _, a, _, _ in lines if k in (LineKind.CHARGE, LineKind.TAX)), Decimal(0))
    pdf_path = None
    if pdf is not None:
        pdf_path = f"invoices/{invoice.id}/1.pdf"
        storage.save(get_settings(), pdf_path, pdf)
    revision = await InvoiceRevision.create(
        invoice=invoice, revision=1, template_version="1", currency=invoice.currency, cost_currency="USD",
        subtotal=subtotal, adjustments=0, charges=charges, total=subtotal + charges,
        issue_date=date(2024, 10, 1), due_date=date(2024, 10, 31), pdf_path=pdf_path,
        snapshot={"customer": {"po_number": account.po_number}},
    )
    await InvoiceLineItem.bulk_create([
        InvoiceLineItem(
            revision=revision, position=i, kind=kind, description=text, amount=amount,
            quantity=quantity, unit_price=price,
        )
        for i, (kind, text, amount, quantity, price) in enumerate(lines, start=1)
    ])
    approved = status in ("APPROVED", "VOIDED")
    await Invoice.filter(id=invoice.id).update(
        current_revision_id=revision.id, subtotal=subtotal, charges=charges, total=subtotal + charges,
        issue_date=date(2024, 10, 1), due_date=date(2024, 10, 31), status=status,
        approved_at=datetime.now(UTC) if approved else None,
    )
    return await Invoice.get(id=invoice.id)


async def _september(world, pdf: bytes | None = None):
    """Contoso: approved, voided (another month) and a draft; Tailspin: approved; Litware
    (another organization): approved."""
    september = await f.billing_period(world.org, date(2024, 9, 1))
    august = await f.billing_period(world.org, date(2024, 8, 1))
    foreign = await f.billing_period(world.foreign_org, date(2024, 9, 1))
    world.account.po_number = "PO-7781"
    world.account.billing_emails = ["ap@contoso.example"]
    world.account.address_line1, world.account.city, world.account.country = "1 Main St", "Leeds", "UK"
    await world.account.save()
    return {
        "INV-2024-0001": await approved_invoice(world.account, september, "INV-2024-0001", pdf=pdf),
        "INV-2024-0002": await approved_invoice(world.other_account, september, "INV-2024-0002", pdf=pdf),
        "INV-2024-0003": await approved_invoice(world.account, august, "INV-2024-0003", status="VOIDED", pdf=pdf),
        "INV-2024-0004": await approved_invoice(
            world.other_account, august, "INV-2024-0004", status="AWAITING_APPROVAL", pdf=pdf
        ),
        "INV-2024-0099": await approved_invoice(world.foreign_account, foreign, "INV-2024-0099", pdf=pdf),
    }


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def _path(url: str) -> str:
    return urlsplit(url).path


async def _download(client, url: str):
    return await client.get(_path(url))


async def _export(client, token, fmt="XERO", **variables):
    result = await gql(client, EXPORT, {"format": fmt, **variables}, token=token)
    return result["data"]["exportInvoices"] if result.get("data") else result


# --- exportInvoices ---------------------------------------------------------------------------


async def test_xero_export_of_a_month(client, world):
    await _september(world)
    done = await _export(client, world.tokens["owner"], filter=SEPTEMBER)
    assert done["__typename"] == "InvoiceExport", done
    assert (done["filename"], done["invoiceCount"]) == ("invoices-2024-09-xero.csv", 2)
    response = await _download(client, done["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="invoices-2024-09-xero.csv"'
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content.startswith(XERO_HEADER)
    header, *rows = _rows(response.content)
    assert tuple(header) == XERO_COLUMNS
    records = [dict(zip(header, row)) for row in rows]
    # One row per line (usage, rule, charge, tax), in order; voided, drafts and other
    # organizations' invoices are not there.
    assert [r["*InvoiceNumber"] for r in records] == ["INV-2024-0001"] * 5 + ["INV-2024-0002"] * 5
    first = records[0]
    assert first["*ContactName"] == "Contoso" and first["EmailAddress"] == "ap@contoso.example"
    assert (first["POAddressLine1"], first["POCity"], first["POCountry"]) == ("1 Main St", "Leeds", "UK")
    assert (first["Reference"], first["*InvoiceDate"], first["*DueDate"]) == ("PO-7781", "01/10/2024", "31/10/2024")
    assert (first["*AccountCode"], first["*TaxType"], first["Currency"]) == ("200", "Tax Exempt", "USD")
    assert [(r["*Quantity"], r["*UnitAmount"]) for r in records[:5]] == [
        ("40", "2.5"), ("1", "10.00"), ("1", "-12.50"), ("1", "150.00"), ("1", "19.50"),
    ]
    for number in ("INV-2024-0001", "INV-2024-0002"):
        invoice = await Invoice.get(number=number)
        mine = [r for r in records if r["*InvoiceNumber"] == number]
        assert sum(Decimal(r["*Quantity"]) * Decimal(r["*UnitAmount"]) for r in mine) == invoice.total


async def test_detailed_export_has_every_line_and_voided_invoices(client, world):
    made = await _september(world)
    done = await _export(client, world.tokens["viewer"], "DETAILED", filter={"periodFrom": "2024-08", "periodTo": "2024-09"})
    assert (done["filename"], done["invoiceCount"]) == ("invoices-2024-08-to-2024-09-detailed.csv", 3)
    header, *rows = _rows((await _download(client, done["url"])).content)
    assert tuple(header) == DETAILED_COLUMNS
    records = [dict(zip(header, row)) for row in rows]
    assert sorted({r["InvoiceNumber"] for r in records}) == ["INV-2024-0001", "INV-2024-0002", "INV-2024-0003"]
    voided = [r for r in records if r["InvoiceNumber"] == "INV-2024-0003"]
    assert {r["Status"] for r in voided} == {"VOIDED"} and voided[0]["AmountDue"] == "0.00"
    for number in ("INV-2024-0001", "INV-2024-0002", "INV-2024-0003"):
        mine = [r for r in records if r["InvoiceNumber"] == number]
        assert [r["LineKind"] for r in mine] == ["USAGE", "USAGE", "RULE", "CHARGE", "TAX"]
        assert sum(Decimal(r["Amount"]) for r in mine) == made[number].total == Decimal(mine[0]["InvoiceTotal"])
    assert records[0]["Quantity"] == "40" and records[0]["UnitPrice"] == "2.5" and records[0]["Period"] == "2024-09"


@pytest.mark.parametrize("role", ROLES)
async def test_export_scope_matrix(client, world, role):
    made = await _september(world)
    result = await _export(client, world.tokens[role], filter=SEPTEMBER)
    by_id = await _export(client, world.tokens[role], ids=[to_base64("Invoice", str(made["INV-2024-0001"].id))])
    if role in ("customer", "other_customer"):
        assert error_codes(result) == ["FORBIDDEN"] and error_codes(by_id) == ["FORBIDDEN"]
    elif role == "foreign_owner":
        # Only its own organization's invoice; another's reads as missing.
        assert result["invoiceCount"] == 1
        assert by_id["__typename"] == "NotFoundError" and by_id["field"] == "ids"
    else:
        assert result["invoiceCount"] == 2 and by_id["invoiceCount"] == 1


@pytest.mark.parametrize("variables,typename,code,field", [
    ({}, "ValidationError", "INVALID", "ids"),
    ({"ids": [], "filter": SEPTEMBER}, "ValidationError", "INVALID", "ids"),
    ({"filter": {"periodFrom": "2023-01", "periodTo": "2023-01"}}, "ValidationError", "NOTHING_TO_EXPORT", "filter"),
    ({"ids": []}, "ValidationError", "NOTHING_TO_EXPORT", "ids"),
    ({"ids": ["garbage"]}, "NotFoundError", "NOT_FOUND", "ids"),
    ({"ids": ["draft"]}, "InvalidTransitionError", "NOT_EXPORTABLE", "ids"),
    ({"ids": ["voided"]}, "InvalidTransitionError", "NOT_EXPORTABLE", "ids"),
])
async def test_export_refuses_bad_input(client, world, variables, typename, code, field):
    made = await _september(world)
    named = {"draft": made["INV-2024-0004"], "voided": made["INV-2024-0003"]}
    if "ids" in variables:
        variables = {**variables, "ids": [
            to_base64("Invoice", str(named[i].id)) if i in named else i for i in variables["ids"]
        ]}
    stored = set((get_settings().storage_path / "exports").glob("*/*"))
    result = await _export(client, world.tokens["owner"], **variables)
    assert (result["__typename"], result["code"], result["field"]) == (typename, code, field)
    assert set((get_settings().storage_path / "exports").glob("*/*")) == stored


async def test_xero_files_hold_at_most_500_invoices(world):
    """501 approved invoices of a month (written in bulk) become a zip of two files."""
    period = await f.billing_period(world.org, date(2024, 9, 1))
    accounts = [ManagedAccount(organization=world.org, name=f"Bulk {i:03}") for i in range(501)]
    await ManagedAccount.bulk_create(accounts)
    accounts = await ManagedAccount.filter(name__startswith="Bulk ").order_by("name")
    await Invoice.bulk_create([
        Invoice(organization=world.org, managed_account=a, billing_period=period, currency="USD",
                number=f"INV-2024-{i:04}")
        for i, a in enumerate(accounts, start=1)
    ])
    conn = connections.get("default")
    await conn.execute_script(
        "INSERT INTO invoice_revisions (id, invoice_id, revision, created_at, template_version, currency,"
        " cost_currency, exchange_rate, subtotal, adjustments, charges, total, issue_date, due_date, snapshot)"
        " SELECT gen_random_uuid(), id, 1, now(), '1', 'USD', 'USD', 1, 12.34, 0, 0, 12.34,"
        " '2024-10-01', '2024-10-31', '{}' FROM invoices;"
        "INSERT INTO invoice_line_items (revision_id, position, kind, description, provider_name, service_name,"
        " service_category, amount) SELECT id, 1, 'USAGE', 'Usage', '', '', '', 12.34 FROM invoice_revisions;"
        "UPDATE invoices i SET current_revision_id = r.id, status = 'APPROVED', approved_at = now(),"
        " subtotal = 12.34, total = 12.34, issue_date = '2024-10-01', due_date = '2024-10-31'"
        " FROM invoice_revisions r WHERE r.invoice_id = i.id;"
    )
    seen = []
    made = await exports.export_month(world.org, date(2024, 9, 1), ExportFormat.XERO, seen.append)
    assert (made.filename, made.content_type, made.invoice_count) == ("invoices-2024-09-xero.zip", "application/zip", 501)
    assert seen == [500, 501]
    with zipfile.ZipFile(io.BytesIO(made.data)) as archive:
        names = archive.namelist()
        assert names == ["invoices-2024-09-xero-1.csv", "invoices-2024-09-xero-2.csv"]
        parts = [_rows(archive.read(name)) for name in names]
    assert [len({row[10] for row in rows[1:]}) for rows in parts] == [500, 1]
    assert all(archive_rows[0] == list(XERO_COLUMNS) for archive_rows in parts)
    assert parts[1][1][10] == "INV-2024-0501"


@pytest.mark.parametrize("role", ROLES)
async def test_export_settings_scope_matrix(client, world, role):
    result = await gql(client, SETTINGS, {"f": "ISO"}, token=world.tokens[role])
    if role == "owner":
        assert result["data"]["updateExportSettings"]["organization"] == {"exportDateFormat": "ISO"}
    elif role == "foreign_owner":
        await world.org.refresh_from_db()
        assert world.org.export_date_format == ExportDateFormat.DAY_FIRST
    else:
        assert error_codes(result) == ["FORBIDDEN"]


async def test_dates_follow_the_organization_format(client, world):
    await _september(world)
    await gql(client, SETTINGS, {"f": "MONTH_FIRST"}, token=world.tokens["owner"])
    done = await _export(client, world.tokens["owner"], filter=SEPTEMBER)
    header, first, *_ = _rows((await _download(client, done["url"])).content)
    assert dict(zip(header, first))["*DueDate"] == "10/31/2024"


# --- pdfUrl, csvUrl and /files ----------------------------------------------------------------

PDF = b"%PDF-1.7 invoice"
SEES = {
    "owner": {"INV-2024-0001", "INV-2024-0002", "INV-2024-0003", "INV-2024-0004"},
    "customer": {"INV-2024-0001", "INV-2024-0003"},
    "other_customer": {"INV-2024-0002"},
    "foreign_owner": {"INV-2024-0099"},
}
SEES["viewer"] = SEES["owner"]


@pytest.mark.parametrize("role", ROLES)
async def test_invoice_links_scope_matrix(client, world, role):
    await _september(world, pdf=PDF)
    for number in ("INV-2024-0001", "INV-2024-0002", "INV-2024-0003", "INV-2024-0004", "INV-2024-0099"):
        invoice = (await gql(client, LINKS, {"n": number}, token=world.tokens[role]))["data"]["invoice"]
        if number not in SEES[role]:
            assert invoice is None
            continue
        pdf = await _download(client, invoice["pdfUrl"])
        assert pdf.status_code == 200 and pdf.content == PDF
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"] == f'attachment; filename="{number}.pdf"'
        assert pdf.headers["cache-control"] == "private, no-store"
        assert pdf.headers["x-content-type-options"] == "nosniff"
        sheet = await _download(client, invoice["csvUrl"])
        assert sheet.headers["content-disposition"] == f'attachment; filename="{number}.csv"'
        header, *rows = _rows(sheet.content)
        assert tuple(header) == DETAILED_COLUMNS and {r[0] for r in rows} == {number} and len(rows) == 5


async def test_links_are_null_without_a_file(client, world):
    period = await f.billing_period(world.org)
    await approved_invoice(world.account, period, "INV-2024-0001")
    await f.invoice(world.other_account, period, number="INV-2024-0002")
    token = world.tokens["owner"]
    generated = (await gql(client, LINKS, {"n": "INV-2024-0001"}, token=token))["data"]["invoice"]
    assert generated["pdfUrl"] is None and generated["csvUrl"]
    ready = (await gql(client, LINKS, {"n": "INV-2024-0002"}, token=token))["data"]["invoice"]
    assert ready["pdfUrl"] is None and ready["csvUrl"] is None


async def test_altered_expired_and_foreign_links_reveal_nothing(client, world, monkeypatch, settings):
    made = await _september(world, pdf=PDF)
    url = (await gql(client, LINKS, {"n": "INV-2024-0001"}, token=world.tokens["customer"]))["data"]["invoice"]["pdfUrl"]
    token = _path(url).rsplit("/", 1)[1]
    refusals = []
    # Altered: another character anywhere breaks the signature.
    # (Not the last character: its low bits are base64 padding.)
    for position in (0, len(token) // 2, len(token) - 3):
        altered = token[:position] + ("A" if token[position] != "A" else "Q") + token[position + 1:]
        refusals.append(await client.get(f"/files/{altered}"))
    # Forged for an invoice the customer cannot see, signed with another key.
    customer = await _principal(world.tokens["customer"])
    other_key = settings.model_copy(update={"secret_key": "another-key"})
    refusals.append(await _download(client, links.sign(other_key, customer, "pdf", str(made["INV-2024-0002"].id)).url))
    # Genuine, but for an invoice outside the requester's scope (another account, a draft,
    # another organization): the download checks the scope again.
    for number in ("INV-2024-0002", "INV-2024-0004", "INV-2024-0099"):
        refusals.append(await _download(client, links.sign(settings, customer, "pdf", str(made[number].id)).url))
    foreign = await _principal(world.tokens["foreign_owner"])
    refusals.append(await _download(client, links.sign(settings, foreign, "csv", str(made["INV-2024-0001"].id)).url))
    # A customer's link to another organization's export folder.
    refusals.append(await _download(client, links.sign(settings, customer, "export", f"exports/{world.org.id}/x/a.csv", "a.csv").url))
    # Expired: a second past the lifetime.
    assert (await client.get(f"/files/{token}")).status_code == 200
    later = datetime.now(UTC) + timedelta(seconds=settings.link_ttl_seconds + 1)
    monkeypatch.setattr(links, "clock", lambda: later)
    refusals.append(await client.get(f"/files/{token}"))
    assert {(r.status_code, r.text) for r in refusals} == {(404, "Not found.")}


async def test_a_link_dies_with_its_user_or_scope(client, world):
    await _september(world, pdf=PDF)
    url = (await gql(client, LINKS, {"n": "INV-2024-0001"}, token=world.tokens["viewer"]))["data"]["invoice"]["pdfUrl"]
    assert (await _download(client, url)).status_code == 200
    world.users["viewer"].is_active = False
    await world.users["viewer"].save()
    assert (await _download(client, url)).status_code == 404

    # The owner made a viewer: the owner's link dies, though a viewer may read the same PDF.
    url = (await gql(client, LINKS, {"n": "INV-2024-0001"}, token=world.tokens["owner"]))["data"]["invoice"]["pdfUrl"]
    assert (await _download(client, url)).status_code == 200
    await User.filter(id=world.users["owner"].id).update(scope=Scope.VIEWER)
    assert (await _download(client, url)).status_code == 404
    await User.filter(id=world.users["owner"].id).update(scope=Scope.OWNER)
    assert (await _download(client, url)).status_code == 200

    # A customer moved to another account: its link to the first account's invoice dies.
    url = (await gql(client, LINKS, {"n": "INV-2024-0001"}, token=world.tokens["customer"]))["data"]["invoice"]["pdfUrl"]
    assert (await _download(client, url)).status_code == 200
    await User.filter(id=world.users["customer"].id).update(managed_account_id=world.other_account.id)
    assert (await _download(client, url)).status_code == 404


REVOKE = """mutation($id: ID) { revokeToken(id: $id) { __typename } }"""


@pytest.mark.parametrize("role", ["owner", "viewer", "customer"])
async def test_a_link_dies_with_the_sign_out_of_the_token_that_made_it(client, world, role):
    """Signing out (revoking one's own token) ends the links that token made; the links of the
    same user's other sessions keep working until their own token goes."""
    await _september(world, pdf=PDF)
    second, _ = await issue_token(world.users[role], TokenKind.SESSION, timedelta(hours=1))
    urls = [
        (await gql(client, LINKS, {"n": "INV-2024-0001"}, token=raw))["data"]["invoice"]["pdfUrl"]
        for raw in (world.tokens[role], second)
    ]
    assert [(await _download(client, url)).status_code for url in urls] == [200, 200]
    assert (await gql(client, REVOKE, {}, token=world.tokens[role]))["data"]["revokeToken"]["__typename"] == "TokenRevoked"
    assert [(await _download(client, url)).status_code for url in urls] == [404, 200]


async def test_a_link_dies_when_an_owner_revokes_its_token_and_not_by_another_organization(client, world):
    await _september(world, pdf=PDF)
    viewer_token = await Token.get(user_id=world.users["viewer"].id)
    url = (await gql(client, LINKS, {"n": "INV-2024-0001"}, token=world.tokens["viewer"]))["data"]["invoice"]["pdfUrl"]
    refused = await gql(client, REVOKE, {"id": to_base64("ApiToken", str(viewer_token.id))}, token=world.tokens["foreign_owner"])
    assert refused["data"]["revokeToken"]["__typename"] == "NotFoundError"
    assert (await _download(client, url)).status_code == 200
    revoked = await gql(client, REVOKE, {"id": to_base64("ApiToken", str(viewer_token.id))}, token=world.tokens["owner"])
    assert revoked["data"]["revokeToken"]["__typename"] == "TokenRevoked"
    assert (await _download(client, url)).status_code == 404


async def test_expired_exports_are_refused_then_purged(client, world, monkeypatch, settings):
    await _september(world)
    done = await _export(client, world.tokens["owner"], filter=SEPTEMBER)
    assert (await _download(client, done["url"])).status_code == 200
    folder = settings.storage_path / "exports" / str(world.org.id)
    links.purge_exports(settings)
    assert len(list(folder.glob("*"))) == 1
    later = datetime.now(UTC) + timedelta(seconds=settings.link_ttl_seconds + 120)
    monkeypatch.setattr(links, "clock", lambda: later)
    assert (await _download(client, done["url"])).status_code == 404
    links.purge_exports(settings)
    assert list(folder.glob("*")) == []


async def _principal(raw_token: str):
    """The principal of a signed-in user's token, as a request has it (links are bound to it)."""
    from models.auth import authenticate

    return await authenticate(raw_token)


# --- spreadsheet safety -----------------------------------------------------------------------

OWASP = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(1)", "\t=1", "\r=1", "\n=1"]


@pytest.mark.parametrize("payload", OWASP)
def test_owasp_examples_are_neutralised(payload):
    assert exports.neutralise(payload) == "'" + payload
    data = exports.write_csv(["Text", "Amount"], [[payload, Decimal("-12.50")]])
    assert _rows(data)[1] == ["'" + payload, "-12.50"]


async def test_injected_fields_are_neutralised_in_exports(client, world):
    await _september(world)
    world.account.name = "=HYPERLINK(\"http://evil.example\",\"x\")"
    world.account.po_number = "+1+1"
    world.account.address_line1, world.account.city = "@SUM(1)", "\t=1"
    await world.account.save()
    for fmt in ("XERO", "DETAILED"):
        done = await _export(client, world.tokens["owner"], fmt, filter=SEPTEMBER)
        for row in _rows((await _download(client, done["url"])).content)[1:]:
            for cell in row:
                assert not cell.startswith(DANGEROUS) or NUMBER.fullmatch(cell), (fmt, cell)


def _fake_invoice(text: dict[str, str], amounts: list[Decimal]) -> exports.ExportedInvoice:
    """An invoice built in memory (the CSV code reads attributes only)."""
    account = SimpleNamespace(
        name=text["name"], official_company_name=text["official"], po_number=text["po"],
        billing_emails=[text["email"]], contact_email="", billing_profile_id=None,
        **{field: text["address"] for field in ManagedAccount.ADDRESS_FIELDS},
    )
    total = sum(amounts, Decimal(0))
    invoice = SimpleNamespace(
        number=text["number"], status=InvoiceStatus.APPROVED, payment_status=SimpleNamespace(value="UNPAID"),
        delivery_status=SimpleNamespace(value="SENT"), managed_account=account, currency="USD",
        billing_period=SimpleNamespace(start_date=date(2024, 9, 1)), issue_date=date(2024, 10, 1),
        due_date=date(2024, 10, 31), subtotal=total, adjustments=Decimal(0), charges=Decimal(0),
        total=total, amount_paid=Decimal(0), amount_refunded=Decimal(0), amount_credited=Decimal(0),
        credit_applied=Decimal(0),
    )
    lines = [
        {"position": i, "kind": LineKind.USAGE, "description": text["description"], "provider_name": text["name"],
         "service_name": text["description"], "service_category": "", "quantity": Decimal(1), "unit": text["po"],
         "unit_price": amount, "amount": amount}
        for i, amount in enumerate(amounts, start=1)
    ]
    return exports.ExportedInvoice(invoice, lines, {"revision": 1, "cost_currency": "USD", "exchange_rate": Decimal(1)})


# Any text PostgreSQL can hold (no NUL, no lone surrogates).
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
AMOUNTS = st.lists(st.decimals(min_value=-10**6, max_value=10**6, places=2, allow_nan=False), min_size=1, max_size=4)
NUMERIC_COLUMNS = {
    "*Quantity", "*UnitAmount", "Revision", "ExchangeRate", "LinePosition", "Quantity", "UnitPrice", "Amount",
    "InvoiceSubtotal", "InvoiceAdjustments", "InvoiceCharges", "InvoiceTotal", "AmountPaid", "AmountRefunded",
    "AmountDue",
}


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    text=st.fixed_dictionaries({k: TEXT for k in ("name", "official", "po", "email", "address", "description", "number")}),
    amounts=AMOUNTS,
)
def test_no_cell_starts_dangerously(text, amounts):
    item = _fake_invoice(text, amounts)
    profile = SimpleNamespace(xero_account_code=text["po"], xero_tax_type=text["name"])
    for columns, rows in (
        (XERO_COLUMNS, exports.xero_rows(item, ExportDateFormat.DAY_FIRST, profile)),
        (DETAILED_COLUMNS, exports.detailed_rows(item, ExportDateFormat.ISO)),
    ):
        header, *parsed = _rows(exports.write_csv(columns, rows))
        assert len(parsed) == len(amounts)
        for row in parsed:
            assert len(row) == len(columns)
            for column, cell in zip(header, row):
                if cell.startswith(DANGEROUS):
                    assert column in NUMERIC_COLUMNS and NUMBER.fullmatch(cell), (column, cell)
        if columns is XERO_COLUMNS:
            assert sum(Decimal(r[16]) * Decimal(r[17]) for r in parsed) == sum(amounts)
