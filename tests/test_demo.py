"""The demo data a newcomer sees first: believable, complete, and safe to load twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from models import BillingProfile, BillingProfileCharge, CostRecord, ManagedAccount, Organization, User
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

    second = await load_demo(SAMPLE)
    assert not second.created and second.report is None
    assert await Organization.all().count() == 1
    assert await CostRecord.all().count() == 1000
    assert await User.all().count() == 3
    for demo_user in second.users:
        await login(demo_user.email, demo_user.password, timedelta(hours=1))
