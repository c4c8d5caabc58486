"""Async factories: the smallest valid rows, with keyword overrides."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from models import (
    BillingPeriod,
    BillingProfile,
    Invoice,
    ManagedAccount,
    Organization,
    SubAccount,
    User,
)
from models.auth import TokenKind, create_user, issue_token
from models.base import Scope

_seq = itertools.count(1)
PASSWORD = "correct horse battery"


async def organization(**kw) -> Organization:
    kw.setdefault("name", f"MSP {next(_seq)}")
    return await Organization.create(**kw)


async def billing_profile(org: Organization, **kw) -> BillingProfile:
    kw.setdefault("nickname", f"Profile {next(_seq)}")
    kw.setdefault("company_name", "Cloudwise Ltd")
    return await BillingProfile.create(organization=org, **kw)


async def managed_account(org: Organization, *, sub_accounts=(), **kw) -> ManagedAccount:
    kw.setdefault("name", f"Customer {next(_seq)}")
    account = await ManagedAccount.create(organization=org, **kw)
    for sub_account_id in sub_accounts:
        await SubAccount.create(organization=org, managed_account=account, sub_account_id=sub_account_id)
    return account


async def user(org: Organization, scope: Scope = Scope.OWNER, *, account=None, **kw) -> User:
    kw.setdefault("email", f"user{next(_seq)}@example.com")
    kw.setdefault("password", PASSWORD)
    return await create_user(
        org.id, scope=scope, managed_account_id=account.id if account else None, **kw
    )


async def token(u: User, lifetime=timedelta(hours=1), kind=TokenKind.API) -> str:
    raw, _ = await issue_token(u, kind, lifetime)
    return raw


async def billing_period(org: Organization, month: date = date(2024, 9, 1), **kw) -> BillingPeriod:
    end = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return await BillingPeriod.create(organization=org, start_date=month, end_date=end, **kw)


async def invoice(account: ManagedAccount, period: BillingPeriod, **kw) -> Invoice:
    kw.setdefault("currency", account.currency)
    return await Invoice.create(
        organization_id=account.organization_id, managed_account=account, billing_period=period, **kw
    )
