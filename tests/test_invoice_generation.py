"""Period close, the lifecycle, numbering and the invoice computation (no browser needed)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from models import (
    BillingPeriod,
    BillingProfileCharge,
    BillingRule,
    CostImport,
    CostRecord,
    ExchangeRate,
    Invoice,
    InvoiceEvent,
)
from models.actors import Actor
from models.billing_periods import close_period, periods_to_close
from models.costs import CostOrigin
from models.errors import GenerationFailed, InvalidTransition, MissingBillingProfile
from models.invoices.generation.compute import compute
from models.invoices.generation.inputs import load_context
from models.invoices.lifecycle import transition
from models.invoices.numbering import ensure_number
from tests import factories as f

SEPT = date(2024, 9, 1)


async def _costs(org, account, rows, origin=CostOrigin.MSP_DELEGATED):
    """rows: (provider, service, category, billed_cost, unit, quantity[, currency])"""
    integration = account if origin == CostOrigin.ACCOUNT_INTEGRATION else None
    imp = await CostImport.create(organization=org, file_sha256="0" * 64, row_count=len(rows), inserted_count=len(rows),
                                  duplicate_count=0, origin=origin, managed_account=integration)
    for row in rows:
        provider, service, category, cost, unit, quantity, *currency = row
        await CostRecord.create(
            organization=org, managed_account=account, cost_import=imp, fingerprint=uuid.uuid4().hex, origin=origin,
            billing_month=SEPT, billing_period_start=datetime(2024, 9, 1, tzinfo=UTC),
            billing_period_end=datetime(2024, 10, 1, tzinfo=UTC), provider_name=provider,
            sub_account_id="1", billed_cost=Decimal(cost), billing_currency=(currency or ["USD"])[0],
            service_name=service, service_category=category, charge_category="Usage",
            consumed_unit=unit, consumed_quantity=Decimal(quantity) if quantity else None,
        )
    await f.summed_costs(org.id)


async def _ready(world, account=None):
    account = account or world.account
    await close_period(world.org.id, SEPT, Actor.system('test'))
    return await Invoice.get(managed_account_id=account.id)


async def test_closing_a_month_gives_each_account_one_ready_invoice_and_closing_again_changes_nothing(world):
    assert len(await close_period(world.org.id, date(2024, 9, 17), Actor.system('test'))) == 2
    assert await close_period(world.org.id, SEPT, Actor.system('test')) == []
    period = await BillingPeriod.get(organization_id=world.org.id, start_date=SEPT)
    assert period.state == "CLOSED" and period.end_date == date(2024, 10, 1)
    invoices = await Invoice.filter(organization_id=world.org.id)
    assert {i.managed_account_id for i in invoices} == {world.account.id, world.other_account.id}
    assert {i.status for i in invoices} == {"READY_TO_INVOICE"}
    assert await Invoice.filter(organization_id=world.foreign_org.id).count() == 0
    assert await InvoiceEvent.filter(kind="CREATED").count() == 2


@pytest.mark.parametrize("delay,now,due", [
    (0, datetime(2026, 11, 1, 0, 30, tzinfo=UTC), [date(2026, 10, 1)]),
    (3, datetime(2026, 11, 3, 12, 0, tzinfo=UTC), []),
    (3, datetime(2026, 11, 4, 0, 30, tzinfo=UTC), [date(2026, 10, 1)]),
    (10, datetime(2026, 11, 10, 23, 0, tzinfo=UTC), []),
    (10, datetime(2026, 11, 11, 0, 30, tzinfo=UTC), [date(2026, 10, 1)]),
])
async def test_months_close_on_the_1st_or_the_4th_with_the_ingestion_delay(delay, now, due):
    org = await f.organization(data_ingestion_delay_days=delay)
    assert [m for o, m in await periods_to_close(now) if o == org.id] == due


async def test_the_organization_time_zone_decides_when_the_month_ends():
    org = await f.organization(timezone="America/Los_Angeles")
    # 1 November 02:00 UTC is still 31 October in Los Angeles.
    assert [m for o, m in await periods_to_close(datetime(2026, 11, 1, 2, tzinfo=UTC)) if o == org.id] == [date(2026, 9, 1)]


async def test_a_double_generate_moves_once_and_regenerate_after_approve_is_refused(world):
    invoice = await _ready(world)
    actor = Actor(user_id=world.users["owner"].id)
    results = await asyncio.gather(
        *[transition(invoice.id, "GENERATE", actor) for _ in range(5)], return_exceptions=True
    )
    assert sum(1 for r in results if isinstance(r, Invoice)) == 1
    assert sum(1 for r in results if isinstance(r, InvalidTransition)) == 4
    event = await InvoiceEvent.get(invoice_id=invoice.id, kind="GENERATE")
    assert (event.from_status, event.to_status, event.actor_id) == ("READY_TO_INVOICE", "GENERATING", actor.user_id)

    # An invoice generated and then approved: regenerating it, even five times at once, is refused.
    august = await f.billing_period(world.org, date(2024, 8, 1))
    generated = await f.generated_invoice(world.account, august, number="INV-2024-0001")
    approved = await transition(generated.id, "APPROVE", actor)
    assert approved.status == "APPROVED"
    refusals = await asyncio.gather(
        *[transition(generated.id, "REGENERATE", actor) for _ in range(5)], return_exceptions=True
    )
    assert [type(r) for r in refusals] == [InvalidTransition] * 5
    assert {r.message for r in refusals} == {
        "Only an invoice awaiting approval or in error can be regenerated; approved invoices never change."
    }
    after = await Invoice.get(id=generated.id)
    assert (after.status, after.current_revision_id, after.total) == ("APPROVED", generated.current_revision_id, generated.total)
    assert await InvoiceEvent.filter(invoice_id=generated.id, kind="REGENERATE").count() == 0


async def test_missing_billing_profile_is_a_typed_error(world):
    account = await f.managed_account(world.org, name="No profile")
    invoice = await _ready(world, account)
    with pytest.raises(MissingBillingProfile) as caught:
        await load_context(invoice.id)
    assert caught.value.code == "MISSING_BILLING_PROFILE"


async def test_fifty_concurrent_numberings_are_gapless_and_unique():
    org = await f.organization(invoice_prefix="NW")
    period = await f.billing_period(org, SEPT)
    invoices = [await f.invoice(await f.managed_account(org), period) for _ in range(50)]
    numbers = await asyncio.gather(*[ensure_number(i.id, 2024) for i in invoices])
    assert sorted(numbers) == [f"NW-2024-{n:04d}" for n in range(1, 51)]
    # Asking again keeps each invoice's number.
    assert await asyncio.gather(*[ensure_number(i.id, 2024) for i in invoices]) == numbers


async def test_usage_rules_charges_and_rounding(world):
    await _costs(world.org, world.account, [
        ("AWS", "Amazon EC2", "Compute", "100.004", "Hours", "10"),
        ("AWS", "Amazon EC2", "Compute", "0.001", "Hours", "1"),
        ("AWS", "Amazon S3", "Storage", "10.005", "GB-Mo", "5"),
        ("AWS", "Amazon S3", "Storage", "0.0", "Requests", "7"),
        ("Microsoft", "Virtual Machines", "Compute", "50", None, None),
        ("AWS", "Free thing", "Other", "0", "Hours", "3"),
    ])
    await BillingRule.create(organization=world.org, name="EDP", kind="DISCOUNT", calculation="PERCENT",
                             value=Decimal("10"), provider_name="AWS")
    await BillingRule.create(organization=world.org, name="Welcome", kind="CREDIT", calculation="FIXED",
                             value=Decimal("5"), managed_account=world.account)
    await BillingRule.create(organization=world.org, name="Other customer", kind="CREDIT", calculation="FIXED",
                             value=Decimal("1000"), managed_account=world.other_account)
    await BillingProfileCharge.create(
        billing_profile=world.profile, position=1, name="Support", kind="FIXED", value=Decimal("25"), is_tax=False
    )
    await BillingProfileCharge.create(billing_profile=world.profile, position=2, name="VAT", kind="PERCENT", value=Decimal("20"))
    draft = await compute(await load_context((await _ready(world)).id))
    usage = [(line.description, line.amount, line.quantity, line.unit) for line in draft.usage]
    assert usage == [
        ("AWS Amazon EC2 (Compute)", Decimal("100.01"), Decimal("11"), "Hours"),  # 100.005 rounds half up
        ("AWS Amazon S3 (Storage)", Decimal("10.01"), None, None),  # 10.005 -> 10.01; units differ
        ("Microsoft Virtual Machines (Compute)", Decimal("50.00"), None, None),
    ]
    # Credits first (5 off 160.01), then the AWS discount on the AWS lines' running amount:
    # 10% of 110.01 - 5 x 110.01 / 160.01 = 10.657... -> 10.66.
    adjustments = [(line.description, line.amount) for line in draft.rule_lines]
    assert adjustments == [("Credit: Welcome", Decimal("-5.00")), ("Discount: EDP", Decimal("-10.66"))]
    # 100.01 + 10.01 + 50.00 - 5.00 - 10.66; VAT is 20% of that subtotal, 28.872 -> 28.87.
    charges = [(line.description, line.amount) for line in draft.charge_lines]
    assert charges == [("Support", Decimal("25.00")), ("VAT (20%)", Decimal("28.87"))]
    assert (draft.subtotal, draft.charges, draft.total) == (Decimal("144.36"), Decimal("53.87"), Decimal("198.23"))


@pytest.mark.parametrize("cost,rate,currency,expected", [
    ("0.005", "1", "USD", "0.01"),
    ("0.004999", "1", "USD", "0.00"),
    ("1.125", "1", "USD", "1.13"),
    ("2.675", "1", "USD", "2.68"),  # a float would say 2.67
    ("10", "0.9235", "EUR", "9.24"),  # 9.235 half up
    ("99.5", "1", "JPY", "100"),
    ("1", "149.5", "JPY", "150"),
    ("1.0005", "1", "KWD", "1.001"),
])
async def test_half_up_rounding_to_the_minor_unit(world, cost, rate, currency, expected):
    account = await f.managed_account(world.org, currency=currency, billing_profile=world.profile)
    cost_currency = currency if rate == "1" else "USD"
    await _costs(world.org, account, [("AWS", "EC2", "Compute", cost, "Hours", "1", cost_currency)])
    if rate != "1":
        await ExchangeRate.create(organization=world.org, month=SEPT, currency=currency, rate=Decimal(rate))
    draft = await compute(await load_context((await _ready(world, account)).id))
    assert [str(line.amount) for line in draft.usage] == [expected]
    assert str(draft.total) == expected and draft.rate == Decimal(rate)


async def test_a_missing_exchange_rate_says_what_to_do(world):
    account = await f.managed_account(world.org, currency="EUR", billing_profile=world.profile)
    await _costs(world.org, account, [("AWS", "EC2", "Compute", "1", "Hours", "1")])
    with pytest.raises(GenerationFailed) as caught:
        await compute(await load_context((await _ready(world, account)).id))
    assert "No exchange rate from USD to EUR for 2024-09" in caught.value.message


@pytest.mark.parametrize("included", [False, True])
async def test_the_accounts_own_integrations_count_only_when_it_includes_them(world, included):
    world.account.include_account_integrations = included
    await world.account.save()
    await _costs(world.org, world.account, [
        ("AWS", "Amazon EC2", "Compute", "100.004", "Hours", "10"),
    ])
    await _costs(world.org, world.account, [
        ("AWS", "Amazon EC2", "Compute", "0.001", "Hours", "1"),  # joins the MSP's line: 100.005
        ("Microsoft", "Virtual Machines", "Compute", "10.005", None, None),
    ], origin=CostOrigin.ACCOUNT_INTEGRATION)
    # Another account's own integration never reaches this invoice.
    await _costs(world.org, world.other_account, [("AWS", "Amazon S3", "Storage", "7", None, None)],
                 origin=CostOrigin.ACCOUNT_INTEGRATION)
    await BillingProfileCharge.create(billing_profile=world.profile, position=1, name="VAT", kind="PERCENT", value=Decimal("20"))

    draft = await compute(await load_context((await _ready(world)).id))

    usage = [(line.description, line.amount) for line in draft.usage]
    if not included:
        assert usage == [("AWS Amazon EC2 (Compute)", Decimal("100.00"))]
        assert (draft.subtotal, draft.charges, draft.total) == (Decimal("100.00"), Decimal("20.00"), Decimal("120.00"))
        return
    # Each printed line rounded half up, then summed: 100.005 -> 100.01 and 10.005 -> 10.01.
    assert usage == [("AWS Amazon EC2 (Compute)", Decimal("100.01")), ("Microsoft Virtual Machines (Compute)", Decimal("10.01"))]
    assert (draft.subtotal, draft.charges, draft.total) == (Decimal("110.02"), Decimal("22.00"), Decimal("132.02"))
