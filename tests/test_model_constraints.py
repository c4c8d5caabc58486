"""The database itself refuses what must never exist, whatever code writes it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from tortoise import connections
from tortoise.exceptions import IntegrityError, OperationalError

from models import (
    BillingPeriod,
    BillingProfileCharge,
    BillingRule,
    ExchangeRate,
    Invoice,
    InvoiceEvent,
    InvoiceLineItem,
    InvoiceRevision,
    ManagedAccount,
    Payment,
    SubAccount,
    Token,
    User,
)
from models.base import Scope
from tests import factories as f
from tests.guards import refused_by


async def sql(statement: str, *args):
    return await connections.get("default").execute_query(statement, list(args))


async def test_two_invoices_for_one_account_and_month_are_refused():
    org = await f.organization()
    account = await f.managed_account(org)
    period = await f.billing_period(org)
    await f.invoice(account, period)
    async with refused_by("invoices_account_period_unique"):
        await f.invoice(account, period)


async def test_one_number_twice_in_an_organization_is_refused_but_not_across_organizations():
    org, other = await f.organization(), await f.organization()
    period = await f.billing_period(org)
    await f.invoice(await f.managed_account(org), period, number="INV-2026-0001")
    await f.invoice(await f.managed_account(other), await f.billing_period(other), number="INV-2026-0001")
    async with refused_by("invoices_number_unique"):
        await f.invoice(await f.managed_account(org), period, number="INV-2026-0001")


@pytest.mark.parametrize(
    "start,end",
    [
        (date(2026, 10, 2), date(2026, 11, 2)),  # not the first of a month
        (date(2026, 10, 1), date(2026, 10, 31)),  # a day short
        (date(2026, 10, 1), date(2026, 12, 1)),  # two months
        (date(2026, 2, 1), date(2026, 3, 4)),
    ],
)
async def test_a_period_that_is_not_a_whole_calendar_month_is_refused(start, end):
    org = await f.organization()
    async with refused_by("billing_periods_whole_month"):
        await BillingPeriod.create(organization=org, start_date=start, end_date=end)


async def test_whole_months_are_accepted_once_per_organization():
    org = await f.organization()
    await BillingPeriod.create(organization=org, start_date=date(2024, 2, 1), end_date=date(2024, 3, 1))
    await BillingPeriod.create(organization=org, start_date=date(2024, 12, 1), end_date=date(2025, 1, 1))
    async with refused_by("billing_periods_month_unique"):
        await BillingPeriod.create(organization=org, start_date=date(2024, 2, 1), end_date=date(2024, 3, 1))


async def test_a_customer_user_needs_exactly_one_account_of_its_own_organization():
    org, other = await f.organization(), await f.organization()
    foreign_account = await f.managed_account(other)
    async with refused_by("users_customer_has_account"):
        await User.create(organization=org, email="a@example.com", scope=Scope.CUSTOMER)
    async with refused_by("users_account_same_org"):
        await User.create(
            organization=org, email="b@example.com", scope=Scope.CUSTOMER, managed_account=foreign_account
        )
    async with refused_by("users_customer_has_account"):
        await User.create(
            organization=org, email="c@example.com", scope=Scope.OWNER,
            managed_account=await f.managed_account(org),
        )


async def test_unknown_enum_values_are_refused():
    org = await f.organization()
    account = await f.managed_account(org)
    invoice = await f.invoice(account, await f.billing_period(org))
    async with refused_by("invoices_status_valid"):
        await sql("UPDATE invoices SET status = 'PAID' WHERE id = $1", str(invoice.id))
    await f.user(org)
    async with refused_by("users_scope_valid"):
        await sql("UPDATE users SET scope = 'ADMIN'")


async def test_rows_never_point_into_another_organization():
    org, other = await f.organization(), await f.organization()
    foreign_account = await f.managed_account(other)
    foreign_profile = await f.billing_profile(other)
    async with refused_by("invoices_account_same_org"):
        await Invoice.create(
            organization=org, managed_account=foreign_account,
            billing_period=await f.billing_period(org), currency="USD",
        )
    async with refused_by("managed_accounts_profile_same_org"):
        await ManagedAccount.create(organization=org, name="X", billing_profile=foreign_profile)
    async with refused_by("sub_accounts_account_same_org"):
        await SubAccount.create(organization=org, managed_account=foreign_account, sub_account_id="123")
    async with refused_by("billing_rules_account_same_org"):
        await BillingRule.create(
            organization=org, managed_account=foreign_account, name="r", kind="DISCOUNT",
            calculation="PERCENT", value=Decimal("5"),
        )


async def test_one_sub_account_maps_to_one_customer():
    org = await f.organization()
    await f.managed_account(org, sub_accounts=["123456789012"])
    async with refused_by("sub_accounts_unique"):
        await f.managed_account(org, sub_accounts=["123456789012"])


@pytest.mark.parametrize(
    "changes,constraint",
    [
        ({"currency": "usd"}, "managed_accounts_currency_iso"),
        ({"currency": "US1"}, "managed_accounts_currency_iso"),
        ({"payment_terms_days": -1}, "managed_accounts_payment_terms_range"),
        ({"payment_terms_days": 400}, "managed_accounts_payment_terms_range"),
        ({"name": "  "}, "managed_accounts_name_present"),
    ],
)
async def test_managed_account_fields_are_checked(changes, constraint):
    org = await f.organization()
    async with refused_by(constraint):
        await f.managed_account(org, **changes)


async def test_money_rules_and_rates_are_checked():
    org = await f.organization()
    profile = await f.billing_profile(org)
    async with refused_by("billing_profile_charges_value_range"):
        await BillingProfileCharge.create(
            billing_profile=profile, position=1, name="VAT", kind="PERCENT", value=Decimal("120")
        )
    async with refused_by("billing_rules_value_positive"):
        await BillingRule.create(
            organization=org, name="r", kind="DISCOUNT", calculation="PERCENT", value=Decimal("-5")
        )
    async with refused_by("exchange_rates_rate_positive"):
        await ExchangeRate.create(organization=org, month=date(2024, 9, 1), currency="EUR", rate=Decimal("0"))
    async with refused_by("exchange_rates_month"):
        await ExchangeRate.create(organization=org, month=date(2024, 9, 15), currency="EUR", rate=Decimal("0.9"))


async def _generated_invoice():
    org = await f.organization()
    account = await f.managed_account(org)
    invoice = await f.invoice(account, await f.billing_period(org), number="INV-2024-0001")
    revision = await InvoiceRevision.create(
        invoice=invoice, revision=1, template_version="1", currency="USD", cost_currency="USD",
        subtotal=Decimal("9.00"), adjustments=Decimal("-1.00"), charges=Decimal("1.80"),
        total=Decimal("10.80"), issue_date=date(2024, 10, 1), due_date=date(2024, 10, 31),
    )
    line = await InvoiceLineItem.create(revision=revision, position=1, description="EC2", amount=Decimal("10.00"))
    invoice.current_revision = revision
    invoice.issue_date, invoice.due_date = revision.issue_date, revision.due_date
    invoice.total = revision.total
    invoice.status = "AWAITING_APPROVAL"
    await invoice.save()
    return invoice, revision, line


async def test_a_revision_whose_total_does_not_add_up_is_refused():
    invoice, _, _ = await _generated_invoice()
    async with refused_by("invoice_revisions_total_adds_up"):
        await InvoiceRevision.create(
            invoice=invoice, revision=2, template_version="1", currency="USD", cost_currency="USD",
            subtotal=Decimal("10"), adjustments=Decimal("0"), charges=Decimal("0"),
            total=Decimal("10.01"), issue_date=date(2024, 10, 1), due_date=date(2024, 10, 31),
        )


async def test_revisions_line_items_and_timeline_are_frozen():
    invoice, revision, line = await _generated_invoice()
    event = await InvoiceEvent.create(invoice=invoice, actor_label="system", kind="GENERATED")
    for statement, guard in (
        ("UPDATE invoice_revisions SET total = 0, subtotal = 0, adjustments = 0, charges = 0", "invoice_revisions_frozen"),
        ("DELETE FROM invoice_revisions", "invoice_revisions_frozen"),
        ("UPDATE invoice_line_items SET amount = 0", "invoice_line_items_frozen"),
        ("DELETE FROM invoice_line_items", "invoice_line_items_frozen"),
        ("UPDATE invoice_events SET kind = 'EDITED'", "invoice_events_append_only"),
        ("DELETE FROM invoice_events", "invoice_events_append_only"),
    ):
        async with refused_by(guard):
            await sql(statement)
    assert (await InvoiceLineItem.get(id=line.id)).amount == Decimal("10.00")
    assert (await InvoiceEvent.get(id=event.id)).kind == "GENERATED"


async def test_an_awaiting_invoice_needs_a_number_and_a_revision():
    org = await f.organization()
    invoice = await f.invoice(await f.managed_account(org), await f.billing_period(org))
    async with refused_by("invoices_generated_complete"):
        await sql("UPDATE invoices SET status = 'AWAITING_APPROVAL' WHERE id = $1", str(invoice.id))


async def test_an_approved_invoice_keeps_its_number_and_amounts_and_cannot_be_deleted():
    invoice, _, _ = await _generated_invoice()
    await sql("UPDATE invoices SET status = 'APPROVED' WHERE id = $1", str(invoice.id))
    for statement in (
        "UPDATE invoices SET total = 1",
        "UPDATE invoices SET number = 'INV-2024-0002'",
        "UPDATE invoices SET status = 'AWAITING_APPROVAL'",
        "UPDATE invoices SET due_date = '2025-01-01'",
        "DELETE FROM invoices",
    ):
        async with refused_by("invoices_guard"):
            await sql(statement)
    # What happens after approval stays possible: payments, delivery, voiding.
    await sql("UPDATE invoices SET amount_paid = 5, payment_status = 'PARTIALLY_PAID', delivery_status = 'SENT'")
    await sql("UPDATE invoices SET status = 'VOIDED'")
    async with refused_by("invoices_guard"):
        await sql("UPDATE invoices SET status = 'APPROVED'")


async def test_a_numbered_invoice_never_loses_its_number():
    invoice, _, _ = await _generated_invoice()
    async with refused_by("invoices_guard"):
        await sql("UPDATE invoices SET number = NULL WHERE id = $1", str(invoice.id))


async def test_payments_cannot_exceed_the_total_or_be_negative():
    invoice, _, _ = await _generated_invoice()
    async with refused_by("invoices_amounts_consistent"):
        await sql("UPDATE invoices SET amount_paid = 10.81 WHERE id = $1", str(invoice.id))
    async with refused_by("invoices_amounts_consistent"):
        await sql("UPDATE invoices SET amount_refunded = 1 WHERE id = $1", str(invoice.id))
    async with refused_by("payments_amount_positive"):
        await Payment.create(invoice=invoice, amount=Decimal("-1"), paid_on=date(2024, 10, 2))


async def test_tokens_are_stored_as_digests_that_expire_after_creation():
    org = await f.organization()
    user = await f.user(org)
    soon = datetime.now(UTC) + timedelta(hours=1)
    async with refused_by("tokens_hash_is_sha256"):
        await Token.create(user=user, kind="API", token_hash="inv_plaintext", expires_at=soon)
    async with refused_by("tokens_expire_after_creation"):
        await Token.create(
            user=user, kind="API", token_hash="a" * 64,
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
        )


async def test_emails_are_stored_normalized_and_unique():
    org = await f.organization()
    async with refused_by("users_email_normalized"):
        await User.create(organization=org, email="Upper@Example.com", scope=Scope.OWNER)
    await f.user(org, email="same@example.com")
    async with refused_by("users_email_key"):
        await User.create(organization=await f.organization(), email="same@example.com", scope=Scope.VIEWER)


async def test_a_guard_test_fails_on_a_missing_column_or_another_constraint():
    """The helper itself: a typo in a guarded statement, or a refusal for another reason, is
    no proof that the named guard holds."""
    invoice, _, _ = await _generated_invoice()
    with pytest.raises(OperationalError, match="column") as raised:
        async with refused_by("invoices_amounts_consistent"):
            await sql("UPDATE invoices SET amount_payd = 10.81 WHERE id = $1", str(invoice.id))
    assert not isinstance(raised.value, IntegrityError)
    with pytest.raises(AssertionError, match="guard_invoice"):
        async with refused_by("invoices_amounts_consistent"):
            await sql("UPDATE invoices SET number = NULL WHERE id = $1", str(invoice.id))
    with pytest.raises(AssertionError, match="invoices_amounts_consistent"):
        async with refused_by("invoices_due_after_issue"):
            await sql("UPDATE invoices SET amount_paid = 10.81 WHERE id = $1", str(invoice.id))
