"""The month from close to approved and e-mailed, with a real arq worker, real Chromium and a
real SMTP server."""

from __future__ import annotations

import asyncio
import csv
import io
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from pypdf import PdfReader
from strawberry.relay import to_base64

from infra import broker, storage
from models import BillingProfileCharge, Invoice, InvoiceRevision, SubAccount
from models.costs import import_costs
from tests.graphql import gql

SAMPLE = Path(__file__).resolve().parent / "data" / "focus-1.0-sample.csv"
CLOSE = "mutation($m: Month!) { closeBillingPeriod(month: $m) { __typename ... on BillingPeriodClosed { invoicesCreated } } }"
BULK = """mutation($ids: [ID!]!) { %s(ids: $ids) { __typename
  ... on InvoiceActionResults { results { id invoice { status number } error { code message } } } } }"""


async def _month_of_costs(world):
    """The FOCUS sample's September 2024 for two customers, with charges on the profile."""
    for account in (world.account, world.other_account):
        account.official_company_name = f"{account.name} Holdings Ltd"
        account.billing_emails = [f"ap@{account.name.lower()}.example", f"cfo@{account.name.lower()}.example"]
        account.po_number = f"PO-{account.name.upper()}-7"
        await account.save()
    for row in csv.DictReader(SAMPLE.open()):
        name = row["SubAccountName"]
        owner = world.account if name.startswith("Atlas") else world.other_account if name.startswith("Orion") else None
        if owner and not await SubAccount.filter(organization_id=world.org.id, sub_account_id=row["SubAccountId"]).exists():
            await SubAccount.create(organization=world.org, managed_account=owner, sub_account_id=row["SubAccountId"])
    await import_costs(world.org.id, SAMPLE.read_bytes(), filename=SAMPLE.name)
    await BillingProfileCharge.create(billing_profile=world.profile, position=1, name="VAT", kind="PERCENT", value=Decimal("20"))


def sample_totals(prefix: str) -> tuple[Decimal, Decimal, Decimal]:
    """(subtotal, VAT at 20%, total) of the sample's September 2024 for the customer whose
    sub-accounts' names start with `prefix`, worked out from the CSV alone, as an accountant
    would check the invoice: each sub-account goes to the customer of the first row naming it
    (as `_month_of_costs` maps them); the month's rows are summed per provider, service,
    category and currency, each line rounded half up to the cent; VAT is 20% of the subtotal,
    rounded half up."""
    cent, owners, lines = Decimal("0.01"), {}, defaultdict(Decimal)
    rows = list(csv.DictReader(SAMPLE.open()))
    for row in rows:
        owner = next((p for p in ("Atlas", "Orion") if row["SubAccountName"].startswith(p)), None)
        if owner:
            owners.setdefault(row["SubAccountId"], owner)
    for row in rows:
        if owners.get(row["SubAccountId"]) == prefix and row["BillingPeriodStart"].startswith("2024-09-01"):
            key = tuple("" if row[c] == "NULL" else row[c] for c in ("ProviderName", "ServiceName", "ServiceCategory", "BillingCurrency"))
            lines[key] += Decimal(row["BilledCost"])
    subtotal = sum((amount.quantize(cent, ROUND_HALF_UP) for amount in lines.values()), Decimal(0))
    vat = (subtotal * Decimal("0.2")).quantize(cent, ROUND_HALF_UP)
    return subtotal, vat, subtotal + vat


async def _wait(condition, timeout=60):
    for _ in range(int(timeout / 0.1)):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


def _gid(invoice):
    return to_base64("Invoice", str(invoice.id))


def _pdf_text(data: bytes) -> str:
    # Words joined by single spaces: where a long description wraps depends on the fonts.
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split())


async def test_the_sample_month_from_close_to_approved_and_emailed(client, world, worker, smtp, settings):
    _, mailbox = smtp
    await _month_of_costs(world)
    owner = world.tokens["owner"]
    closed = await gql(client, CLOSE, {"m": "2024-09"}, token=owner)
    assert closed["data"]["closeBillingPeriod"] == {"__typename": "BillingPeriodClosed", "invoicesCreated": 2}
    invoices = await Invoice.filter(organization_id=world.org.id).order_by("created_at")
    ids = [_gid(i) for i in invoices]

    generated = await gql(client, BULK % "generateInvoices", {"ids": ids}, token=owner)
    assert [r["invoice"]["status"] for r in generated["data"]["generateInvoices"]["results"]] == ["GENERATING"] * 2
    await _wait(lambda: _all(world, "AWAITING_APPROVAL"))

    # Worked out from the CSV by hand: Atlas 15.62 + 3.12 VAT, Orion 1.91 + 0.38 VAT.
    assert sample_totals("Atlas") == (Decimal("15.62"), Decimal("3.12"), Decimal("18.74"))
    assert sample_totals("Orion") == (Decimal("1.91"), Decimal("0.38"), Decimal("2.29"))
    billed = {(await i.managed_account).name: (i.subtotal, i.charges, i.total)
              for i in await Invoice.filter(organization_id=world.org.id)}
    assert billed == {world.account.name: sample_totals("Atlas"), world.other_account.name: sample_totals("Orion")}

    numbers = set()
    for invoice in await Invoice.filter(organization_id=world.org.id):
        revision = await InvoiceRevision.get(id=invoice.current_revision_id)
        pdf = storage.load(settings, revision.pdf_path)
        text = _pdf_text(pdf)
        account = await invoice.managed_account
        assert invoice.number in text and account.official_company_name in text and account.po_number in text
        lines = revision.snapshot["lines"] + revision.snapshot["adjustments"] + revision.snapshot["charges"]
        assert lines, "the sample has costs for both customers"
        # A long description wraps onto a second line of its table cell.
        flat = " ".join(text.split())
        for line in lines:
            assert line["description"] in flat
        assert f"{invoice.total:,.2f}" in text
        assert invoice.total == revision.total == sum(Decimal(line["amount"]) for line in lines)
        numbers.add(invoice.number)
    # Numbers count per year of issue (today's, the invoices having none set beforehand).
    years = {i.issue_date.year for i in await Invoice.filter(organization_id=world.org.id)}
    assert len(years) == 1 and numbers == {f"INV-{year}-0001" for year in years} | {f"INV-{year}-0002" for year in years}

    approved = await gql(client, BULK % "approveInvoices", {"ids": ids}, token=owner)
    assert {r["invoice"]["status"] for r in approved["data"]["approveInvoices"]["results"]} == {"APPROVED"}
    await _wait(lambda: _delivered(world))
    assert len(mailbox.messages) == 2
    for recipients, message in mailbox.messages:
        invoice = await Invoice.get(number=message["Subject"].split()[1])
        account = await invoice.managed_account
        assert sorted(recipients) == sorted(account.billing_emails)
        attachment = next(p for p in message.walk() if p.get_filename() == f"{invoice.number}.pdf")
        revision = await InvoiceRevision.get(id=invoice.current_revision_id)
        assert attachment.get_payload(decode=True) == storage.load(settings, revision.pdf_path)

    again = await gql(client, BULK % "approveInvoices", {"ids": ids}, token=owner)
    assert all(r["error"] is None for r in again["data"]["approveInvoices"]["results"])
    # A second send would be queued by the approval itself, before it answers.
    assert {i.delivery_status for i in await Invoice.filter(organization_id=world.org.id)} == {"SENT"}
    assert len(mailbox.messages) == 2, "approving twice sends nothing more"
    refused = await gql(client, BULK % "regenerateInvoices", {"ids": ids[:1]}, token=owner)
    assert refused["data"]["regenerateInvoices"]["results"][0]["error"]["code"] == "INVALID_TRANSITION"


async def _all(world, status):
    return not await Invoice.filter(organization_id=world.org.id).exclude(status=status).exists()


async def _delivered(world):
    return not await Invoice.filter(organization_id=world.org.id).exclude(delivery_status="SENT").exists()


async def test_regenerate_keeps_the_number_and_adds_a_revision(client, world, worker):
    await _month_of_costs(world)
    owner = world.tokens["owner"]
    await gql(client, CLOSE, {"m": "2024-09"}, token=owner)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    await gql(client, BULK % "generateInvoices", {"ids": [_gid(invoice)]}, token=owner)
    await _wait(lambda: _status(invoice, "AWAITING_APPROVAL"))
    first = await Invoice.get(id=invoice.id)
    await BillingProfileCharge.create(
        billing_profile=world.profile, position=2, name="Support", kind="FIXED", value=Decimal("99"), is_tax=False
    )
    await gql(client, BULK % "regenerateInvoices", {"ids": [_gid(invoice)]}, token=owner)
    await _wait(lambda: _status(invoice, "AWAITING_APPROVAL"))
    second = await Invoice.get(id=invoice.id)
    assert second.number == first.number
    assert await InvoiceRevision.filter(invoice_id=invoice.id).count() == 2
    assert second.total == first.total + Decimal("99")


async def _status(invoice, status):
    return (await Invoice.get(id=invoice.id)).status == status


async def test_a_double_generate_enqueues_one_job(client, world, redis):
    owner = world.tokens["owner"]
    await gql(client, CLOSE, {"m": "2024-09"}, token=owner)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    results = await asyncio.gather(*[
        gql(client, BULK % "generateInvoices", {"ids": [_gid(invoice)]}, token=owner) for _ in range(4)
    ])
    outcomes = [r["data"]["generateInvoices"]["results"][0] for r in results]
    assert sum(1 for o in outcomes if o["error"] is None) == 1
    assert {o["error"]["code"] for o in outcomes if o["error"]} == {"INVALID_TRANSITION"}
    assert len(await redis.queued_jobs(queue_name=broker.QUEUE_NAME)) == 1


async def test_generating_for_an_account_without_billing_profile_is_a_typed_error(client, world):
    owner = world.tokens["owner"]
    world.account.billing_profile = None
    await world.account.save()
    await gql(client, CLOSE, {"m": "2024-09"}, token=owner)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    result = await gql(client, BULK % "generateInvoices", {"ids": [_gid(invoice)]}, token=owner)
    assert result["data"]["generateInvoices"]["results"][0]["error"]["code"] == "MISSING_BILLING_PROFILE"
    assert (await Invoice.get(id=invoice.id)).status == "READY_TO_INVOICE"
