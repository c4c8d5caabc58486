"""The demo data a newcomer sees first: believable, complete, and safe to load twice."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from models import (
    BillingProfile,
    BillingProfileCharge,
    CostRecord,
    Invoice,
    InvoiceExtraLine,
    ManagedAccount,
    Organization,
    User,
)
from models.auth import authenticate, login
from models.demo import load_demo

SAMPLE = Path(__file__).resolve().parent.parent / "demo" / "focus-1.0-sample.csv"


async def test_the_demo_loads_once_and_a_second_run_only_refreshes_credentials():
    first = await load_demo(SAMPLE)
    assert first.created and first.report.rows == 1000 and first.report.inserted == 1000
    assert first.report.unmatched, "some sub-accounts stay unclaimed to show the report"
    profile = await BillingProfile.get(organization_id=first.organization.id)
    assert profile.logo and profile.logo_content_type == "image/png"
    assert await BillingProfileCharge.filter(billing_profile=profile, is_tax=True).exists()
    assert await ManagedAccount.filter(organization_id=first.organization.id).count() >= 5
    assert await CostRecord.filter(managed_account_id__isnull=False).count() > 900
    scopes = set()
    for demo_user in first.users:
        principal = await authenticate(demo_user.token)
        scopes.add(principal.scope.value)
    assert scopes == {"OWNER", "VIEWER", "CUSTOMER"}
    # The sample's months (mostly September 2024) are closed: every customer's invoices are
    # ready to generate.
    assert date(2024, 9, 1) in first.closed
    accounts = await ManagedAccount.filter(organization_id=first.organization.id).count()
    ready = Invoice.filter(organization_id=first.organization.id, status="READY_TO_INVOICE")
    # ... but the auto-invoiced customer's, generating by themselves.
    assert await ready.count() == (accounts - 1) * len(first.closed)
    auto = await Invoice.filter(managed_account__auto_invoice="SEND").values_list("status", flat=True)
    assert auto == ["GENERATING"] * len(first.closed) and len(first.created_invoices) == accounts * len(first.closed)
    # A memo and a one-off item on the customer user's September invoice.
    drafted = await Invoice.get(managed_account__name="Atlas Freight", billing_period__start_date=date(2024, 9, 1))
    assert drafted.memo and [line.description for line in await InvoiceExtraLine.filter(invoice_id=drafted.id)] == [
        "Landing zone setup (one-off)"
    ]
    assert profile.invoice_notes.startswith("Please pay by bank transfer")

    second = await load_demo(SAMPLE)
    assert not second.created and second.report is None
    assert await Organization.all().count() == 1
    assert await CostRecord.all().count() == 1000
    assert await User.all().count() == 3
    assert await Invoice.all().count() == accounts * len(first.closed), "closing again adds nothing"
    assert await InvoiceExtraLine.all().count() == 1
    for demo_user in second.users:
        await login(demo_user.email, demo_user.password, timedelta(hours=1))
