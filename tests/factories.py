"""Async factories: the smallest valid rows, with keyword overrides."""

from __future__ import annotations

import itertools
from datetime import UTC, date, timedelta

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
    """A user; without `password=` it can only use tokens (hashing costs time on purpose)."""
    kw.setdefault("email", f"user{next(_seq)}@example.com")
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


class World:
    """Two organizations and one user of every kind, for scope-matrix tests.

    `org` has `account` (whose customer is `customer`) and `other_account` (whose customer is
    `other_customer`); `foreign_org` has `foreign_account` and its own owner."""

    ROLES = ("owner", "viewer", "customer", "other_customer", "foreign_owner")

    async def build(self) -> World:
        self.org = await organization(name="Northwind")
        self.foreign_org = await organization(name="Fabrikam")
        self.profile = await billing_profile(self.org)
        self.account = await managed_account(self.org, name="Contoso", billing_profile=self.profile)
        self.other_account = await managed_account(self.org, name="Tailspin", billing_profile=self.profile)
        self.foreign_account = await managed_account(self.foreign_org, name="Litware")
        self.users = {
            "owner": await user(self.org, Scope.OWNER),
            "viewer": await user(self.org, Scope.VIEWER),
            "customer": await user(self.org, Scope.CUSTOMER, account=self.account),
            "other_customer": await user(self.org, Scope.CUSTOMER, account=self.other_account),
            "foreign_owner": await user(self.foreign_org, Scope.OWNER),
        }
        self.tokens = {role: await token(u) for role, u in self.users.items()}
        return self


async def world() -> World:
    return await World().build()


async def generated_invoice(
    account: ManagedAccount,
    period: BillingPeriod,
    *,
    number: str,
    status: str = "AWAITING_APPROVAL",
    lines: int = 2,
    events: int = 1,
    issue_date: date = date(2024, 10, 1),
    snapshot: dict | None = None,
    pdf_path: str | None = None,
    **kw,
) -> Invoice:
    """An invoice as generation leaves it: a revision with `lines` lines, numbered, dated
    (`snapshot` is the view its e-mails are written from; `pdf_path` its stored PDF)."""
    from decimal import Decimal

    from models import InvoiceEvent, InvoiceLineItem, InvoiceRevision

    inv = await invoice(account, period, number=number, **kw)
    amounts = [Decimal("10.25") * (i + 1) for i in range(lines)]
    total = sum(amounts, Decimal(0))
    due = issue_date + timedelta(days=account.payment_terms_days)
    revision = await InvoiceRevision.create(
        invoice=inv, revision=1, template_version="1", currency=inv.currency, cost_currency="USD",
        subtotal=total, adjustments=0, charges=0, total=total, issue_date=issue_date, due_date=due,
        snapshot=snapshot or {}, pdf_path=pdf_path,
    )
    await InvoiceLineItem.bulk_create([
        InvoiceLineItem(revision=revision, position=i + 1, description=f"Service {i + 1}", amount=a)
        for i, a in enumerate(amounts)
    ])
    for i in range(events):
        await InvoiceEvent.create(invoice=inv, actor_label="worker", kind="GENERATED", to_status="AWAITING_APPROVAL")
    inv.current_revision = revision
    inv.subtotal = inv.total = total
    inv.issue_date, inv.due_date, inv.status = issue_date, due, status
    if status in ("APPROVED", "VOIDED"):
        from datetime import datetime

        inv.approved_at = datetime.now(UTC)
    await inv.save()
    return inv


async def summed_costs(organization_id) -> None:
    """The organization's month figures (`cost_totals`) summed again from its cost records,
    after a test wrote records by hand, as an import would have written them."""
    from tortoise import connections

    from models.costs import totals

    await totals.rebuild(connections.get("default"), organization_id)
