"""Corrections after approval: replacements of voided invoices, late costs billed once (on the
next invoice or a supplementary one), several billing currencies, invoices per provider, line
descriptions and the issue date. Real PostgreSQL, and a real worker with Chromium where an
invoice is generated end to end."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

import pytest
from strawberry.relay import to_base64

from models import BillingProfileCharge, ExchangeRate, Invoice, InvoiceEvent, LateCost, SubAccount
from models.actors import Actor
from models.billing_periods import close_period
from models.costs import import_costs
from models.errors import GenerationFailed
from models.invoices.generation.compute import compute
from models.invoices.generation.inputs import load_context
from models.invoices.tables import InvoiceStatus
from models.organizations import LateCostBilling
from tests import factories as f
from tests.graphql import gql
from tests.test_costs_import import AWS_BIG, sample_rows, to_csv
from tests.test_invoice_generation import _costs as costs

SEPT, OCT = date(2024, 9, 1), date(2024, 10, 1)
SYSTEM = Actor.system("test")


def _restated_index(rows) -> int:
    return next(i for i, row in enumerate(rows)
                if row["SubAccountId"] == AWS_BIG and row["BillingPeriodStart"].startswith("2024-09"))


def restate(rows, delta: Decimal) -> list[dict[str, str]]:
    """The rows with the account's first September row's cost changed by `delta`."""
    changed = [dict(row) for row in rows]
    row = changed[_restated_index(rows)]
    row["BilledCost"] = str(Decimal(row["BilledCost"]) + delta)
    return changed


def september_rows(rows) -> list[dict[str, str]]:
    """The account's rows of the restated row's scope (provider, billing account, month)."""
    first = rows[_restated_index(rows)]
    return [row for row in rows if row["SubAccountId"] == AWS_BIG and row["BillingPeriodStart"].startswith("2024-09")
            and (row["ProviderName"], row["BillingAccountId"]) == (first["ProviderName"], first["BillingAccountId"])]


def gid(invoice) -> str:
    return to_base64("Invoice", str(invoice.id))


async def _wait_status(invoice_id, *statuses, timeout=90):
    for _ in range(int(timeout / 0.1)):
        invoice = await Invoice.get(id=invoice_id)
        if invoice.status in statuses:
            return invoice
        await asyncio.sleep(0.1)
    raise AssertionError(f"invoice stayed {invoice.status}")


async def _approved_september(world):
    """The sample's September imported for `world.account`, and its invoice approved."""
    header, rows = sample_rows()
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AWS_BIG)
    await import_costs(world.org.id, to_csv(header, rows))
    period = await f.billing_period(world.org, SEPT)
    invoice = await f.generated_invoice(world.account, period, status=InvoiceStatus.APPROVED, number="INV-2024-0001")
    return header, rows, invoice


# ---------------------------------------------------------------- descriptions, dates


async def test_a_line_names_the_category_it_groups(world):
    await costs(world.org, world.account, [
        ("AWS", "Amazon Elastic Compute Cloud", "Compute", "13.34", None, None),
        ("AWS", "Amazon Elastic Compute Cloud", "Storage", "0.23", None, None),
        ("AWS", "Amazon S3", "", "1", None, None),
    ])
    await close_period(world.org.id, SEPT, SYSTEM)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    draft = await compute(await load_context(invoice.id))
    assert [(line.description, line.amount) for line in draft.usage] == [
        ("AWS Amazon Elastic Compute Cloud (Compute)", Decimal("13.34")),
        ("AWS Amazon Elastic Compute Cloud (Storage)", Decimal("0.23")),
        ("AWS Amazon S3", Decimal("1.00")),
    ]


async def test_the_issue_date_is_the_first_generations_and_regenerations_keep_it(world):
    await costs(world.org, world.account, [("AWS", "EC2", "Compute", "10", None, None)])
    await close_period(world.org.id, SEPT, SYSTEM)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    first = await compute(await load_context(invoice.id))
    assert first.issue_date is not None
    # As if generated a week ago, with 30 days' terms; the terms change to 14 since.
    await Invoice.filter(id=invoice.id).update(issue_date=date(2024, 10, 2), due_date=date(2024, 11, 1))
    world.account.payment_terms_days = 14
    await world.account.save()
    again = await compute(await load_context(invoice.id))
    assert (again.issue_date, again.due_date) == (date(2024, 10, 2), date(2024, 10, 16))


# ---------------------------------------------------------------- several currencies


async def test_costs_in_several_currencies_are_converted_each_at_its_rate(world):
    world.account.currency = "EUR"
    await world.account.save()
    await costs(world.org, world.account, [
        ("AWS", "EC2", "Compute", "100", None, None, "USD"),
        ("Microsoft", "Virtual Machines", "Compute", "50", None, None, "EUR"),
        ("Google", "Compute Engine", "Compute", "40", None, None, "GBP"),
    ])
    await close_period(world.org.id, SEPT, SYSTEM)
    invoice = await Invoice.get(managed_account_id=world.account.id)

    with pytest.raises(GenerationFailed) as missing:
        await compute(await load_context(invoice.id))
    assert "GBP to EUR for 2024-09" in str(missing.value) and "USD to EUR for 2024-09" in str(missing.value)

    for base, rate in (("USD", "0.9"), ("GBP", "1.15")):
        await ExchangeRate.create(organization=world.org, month=SEPT, base_currency=base, currency="EUR", rate=Decimal(rate))
    await BillingProfileCharge.create(billing_profile=world.profile, position=1, name="VAT", kind="PERCENT", value=Decimal("20"))
    draft = await compute(await load_context(invoice.id))
    assert [(line.description, line.amount, line.cost_currency, line.cost_amount) for line in draft.usage] == [
        ("AWS EC2 (Compute, USD)", Decimal("90.00"), "USD", Decimal("100")),
        ("Google Compute Engine (Compute, GBP)", Decimal("46.00"), "GBP", Decimal("40")),
        ("Microsoft Virtual Machines (Compute, EUR)", Decimal("50.00"), "", None),
    ]
    assert draft.rates == {"GBP": Decimal("1.15"), "USD": Decimal("0.9")}
    assert (draft.subtotal, draft.charges, draft.total) == (Decimal("186.00"), Decimal("37.20"), Decimal("223.20"))


async def test_a_several_currency_invoice_prints_every_rate_and_the_revision_keeps_them(client, world, worker):
    await costs(world.org, world.account, [
        ("AWS", "EC2", "Compute", "100", None, None, "USD"),
        ("Microsoft", "Virtual Machines", "Compute", "50", None, None, "EUR"),
    ])
    await ExchangeRate.create(organization=world.org, month=SEPT, base_currency="EUR", currency="USD", rate=Decimal("1.1"))
    await close_period(world.org.id, SEPT, SYSTEM)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    result = await gql(client, "mutation($ids: [ID!]!) { generateInvoices(ids: $ids) { __typename } }",
                       {"ids": [gid(invoice)]}, world.tokens["owner"])
    assert result["data"]["generateInvoices"]["__typename"] == "InvoiceActionResults"
    await _wait_status(invoice.id, "AWAITING_APPROVAL")
    data = (await gql(client, """query($id: ID!) { node(id: $id) { ... on Invoice { total
        lineItems { description amount } revisions { costCurrency exchangeRates { fromCurrency rate } } } } }""",
                      {"id": gid(invoice)}, world.tokens["viewer"]))["data"]["node"]
    assert data["total"] == "155.00"
    assert data["revisions"][0]["exchangeRates"] == [{"fromCurrency": "EUR", "rate": "1.1"}]
    assert data["revisions"][0]["costCurrency"] == "USD"
    from tests.test_pipeline_e2e import _pdf_text

    revision = await (await Invoice.get(id=invoice.id)).current_revision
    from infra import storage

    text = _pdf_text(storage.load(worker.ctx["settings"], revision.pdf_path))
    assert "1 EUR = 1.1 USD" in text and "EUR 50.00 converted" in text


# ---------------------------------------------------------------- one invoice per provider


async def test_an_account_invoiced_per_provider_gets_one_numbered_invoice_per_provider(world):
    world.account.invoice_per_provider = True
    await world.account.save()
    await costs(world.org, world.account, [
        ("AWS", "EC2", "Compute", "10", None, None),
        ("Microsoft", "Virtual Machines", "Compute", "20", None, None),
    ])
    created = await close_period(world.org.id, SEPT, SYSTEM)
    assert len(created) == 3  # two for the account, one for the other account
    invoices = await Invoice.filter(managed_account_id=world.account.id).order_by("provider_name")
    assert [i.provider_name for i in invoices] == ["AWS", "Microsoft"]
    totals = [(await compute(await load_context(i.id))).subtotal for i in invoices]
    assert totals == [Decimal("10.00"), Decimal("20.00")]
    assert await close_period(world.org.id, SEPT, SYSTEM) == []


# ---------------------------------------------------------------- re-issue


REISSUE = """mutation($id: ID!) { reissueInvoice(id: $id) { __typename
  ... on InvoiceReissued { invoice { id status replaces { number } } replaced { number replacedBy { id } } }
  ... on UserError { code message field } } }"""


async def test_a_voided_invoice_is_replaced_once_by_a_new_numbered_invoice_linked_both_ways(client, world, worker):
    await costs(world.org, world.account, [("AWS", "EC2", "Compute", "10", None, None)])
    period = await f.billing_period(world.org, SEPT)
    approved = await f.generated_invoice(world.account, period, status="APPROVED", number="INV-2024-0007")
    owner = world.tokens["owner"]

    refused = (await gql(client, REISSUE, {"id": gid(approved)}, owner))["data"]["reissueInvoice"]
    assert (refused["__typename"], refused["code"]) == ("InvalidTransitionError", "INVALID_TRANSITION")
    assert await Invoice.all().count() == 1

    await gql(client, 'mutation($ids: [ID!]!) { voidInvoices(ids: $ids, reason: "Wrong rate") { __typename } }',
              {"ids": [gid(approved)]}, owner)
    done = (await gql(client, REISSUE, {"id": gid(approved)}, owner))["data"]["reissueInvoice"]
    assert done["__typename"] == "InvoiceReissued", done
    assert done["replaced"] == {"number": "INV-2024-0007", "replacedBy": {"id": done["invoice"]["id"]}}
    assert done["invoice"]["replaces"] == {"number": "INV-2024-0007"}
    replacement = await Invoice.get(replaces_id=approved.id)
    replacement = await _wait_status(replacement.id, "AWAITING_APPROVAL")
    assert replacement.number and replacement.number != "INV-2024-0007"
    assert replacement.total == Decimal("10.00")
    assert await InvoiceEvent.filter(invoice_id=approved.id, kind="REPLACED").count() == 1

    again = (await gql(client, REISSUE, {"id": gid(approved)}, owner))["data"]["reissueInvoice"]
    assert again["code"] == "CONFLICT"
    assert await Invoice.all().count() == 2
    # Closing the month again adds nothing: the account has its invoice.
    assert await close_period(world.org.id, SEPT, SYSTEM) == [
        i.id for i in await Invoice.filter(managed_account_id=world.other_account.id)
    ]


@pytest.mark.parametrize("role,answer", [
    ("viewer", "FORBIDDEN"), ("customer", "FORBIDDEN"), ("foreign_owner", "NOT_FOUND"),
])
async def test_only_the_organizations_owners_reissue(client, world, role, answer):
    period = await f.billing_period(world.org, SEPT)
    voided = await f.generated_invoice(world.account, period, status="VOIDED", number="INV-2024-0007")
    result = await gql(client, REISSUE, {"id": gid(voided)}, world.tokens[role])
    if answer == "FORBIDDEN":
        assert result["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    else:
        assert result["data"]["reissueInvoice"]["code"] == "NOT_FOUND"
    assert await Invoice.all().count() == 1


async def test_customers_see_the_link_only_to_invoices_they_may_see(client, world):
    period = await f.billing_period(world.org, SEPT)
    voided = await f.generated_invoice(world.account, period, status="VOIDED", number="INV-2024-0007")
    await f.invoice(world.account, period, replaces=voided, status="GENERATING")
    query = 'query { invoice(number: "INV-2024-0007") { status replacedBy { status } } }'
    assert (await gql(client, query, token=world.tokens["customer"]))["data"]["invoice"] == {
        "status": "VOIDED", "replacedBy": None,  # the replacement is a draft still
    }
    assert (await gql(client, query, token=world.tokens["owner"]))["data"]["invoice"]["replacedBy"] == {
        "status": "GENERATING"
    }
    assert (await gql(client, query, token=world.tokens["other_customer"]))["data"]["invoice"] is None


# ---------------------------------------------------------------- late costs


LATE = """query($id: ID!) { node(id: $id) { ... on Invoice { lateCosts {
  currency invoicedCost deliveredCost difference pending invoicedRows deliveredRows billedBy { id kind } } } } }"""


async def test_late_costs_are_billed_once_on_the_next_invoice(client, world, worker):
    header, rows, september = await _approved_september(world)
    await import_costs(world.org.id, to_csv(header, restate(rows, Decimal("1.25"))))
    # The same delivery again, and then the same values in a new file: nothing more to bill.
    await import_costs(world.org.id, to_csv(header, restate(rows, Decimal("1.25"))))
    await import_costs(world.org.id, to_csv(header, restate(rows, Decimal("1.25"))) + b"\n")
    owner, viewer = world.tokens["owner"], world.tokens["viewer"]

    (late,) = (await gql(client, LATE, {"id": gid(september)}, viewer))["data"]["node"]["lateCosts"]
    assert (late["currency"], late["difference"], late["pending"], late["billedBy"]) == ("USD", "1.25", "1.25", [])
    assert late["deliveredRows"] == late["invoicedRows"] == len(september_rows(rows))
    assert (await gql(client, LATE, {"id": gid(september)}, world.tokens["customer"]))["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    await close_period(world.org.id, OCT, SYSTEM)
    october = await Invoice.get(managed_account_id=world.account.id, billing_period__start_date=OCT)
    await gql(client, "mutation($ids: [ID!]!) { generateInvoices(ids: $ids) { __typename } }", {"ids": [gid(october)]}, owner)
    await _wait_status(october.id, "AWAITING_APPROVAL")
    lines = (await gql(client, 'query { invoice(number: "%s") { lineItems { kind description amount } } }'
                       % (await Invoice.get(id=october.id)).number, token=owner))["data"]["invoice"]["lineItems"]
    assert lines == [{"kind": "LATE_COST", "description": "Costs for September 2024 received after invoicing", "amount": "1.25"}]
    (late,) = (await gql(client, LATE, {"id": gid(september)}, viewer))["data"]["node"]["lateCosts"]
    assert (late["pending"], late["billedBy"]) == ("0", [{"id": gid(october), "kind": "REGULAR"}])

    # Regenerating bills them once still; voiding the invoice that bills them frees them.
    await gql(client, "mutation($ids: [ID!]!) { regenerateInvoices(ids: $ids) { __typename } }", {"ids": [gid(october)]}, owner)
    await _wait_status(october.id, "GENERATING")
    regenerated = await _wait_status(october.id, "AWAITING_APPROVAL")
    assert regenerated.total == Decimal("1.25")
    assert await LateCost.filter(billed_invoice_id=october.id).count() == 1
    await gql(client, "mutation($ids: [ID!]!) { voidInvoices(ids: $ids) { __typename } }", {"ids": [gid(october)]}, owner)
    (late,) = (await gql(client, LATE, {"id": gid(september)}, viewer))["data"]["node"]["lateCosts"]
    assert (late["pending"], late["billedBy"]) == ("1.25", [])


async def test_a_restated_late_cost_bills_only_what_it_adds_and_a_lower_one_becomes_a_credit(world):
    header, rows, september = await _approved_september(world)
    await import_costs(world.org.id, to_csv(header, restate(rows, Decimal("2"))))
    await close_period(world.org.id, OCT, SYSTEM)
    october = await Invoice.get(managed_account_id=world.account.id, billing_period__start_date=OCT)
    draft = await compute(await load_context(october.id))
    assert [(line.kind, line.amount) for line in draft.lines] == [("LATE_COST", Decimal("2.00"))]
    # Billed by October (as its stored revision would); then the month is restated lower.
    await LateCost.filter(invoice_id=september.id).update(billed_invoice_id=october.id)
    await import_costs(world.org.id, to_csv(header, restate(rows, Decimal("-0.5"))))
    assert sorted(r.billable for r in await LateCost.filter(invoice_id=september.id)) == [Decimal("-2.5"), Decimal("2")]
    november = await f.invoice(world.account, await f.billing_period(world.org, date(2024, 11, 1)))
    draft = await compute(await load_context(november.id))
    assert [(line.description, line.amount) for line in draft.lines] == [
        ("Costs for September 2024 received after invoicing", Decimal("-2.50"))
    ]
    assert draft.total == Decimal("-2.50")


async def test_late_costs_go_on_a_supplementary_invoice_when_the_organization_says_so(world):
    world.org.late_cost_billing = LateCostBilling.SUPPLEMENTARY_INVOICE
    await world.org.save()
    await BillingProfileCharge.create(billing_profile=world.profile, position=1, name="Support", kind="FIXED", value=Decimal("25"), is_tax=False)
    await BillingProfileCharge.create(billing_profile=world.profile, position=2, name="VAT", kind="PERCENT", value=Decimal("20"))
    header, rows, september = await _approved_september(world)
    await import_costs(world.org.id, to_csv(header, restate(rows, Decimal("10"))))

    created = await close_period(world.org.id, OCT, SYSTEM)
    supplementary = await Invoice.get(managed_account_id=world.account.id, kind="SUPPLEMENTARY")
    assert supplementary.id in created and supplementary.billing_period_id == september.billing_period_id
    october = await Invoice.get(managed_account_id=world.account.id, billing_period__start_date=OCT)
    assert [line.kind for line in (await compute(await load_context(october.id))).lines] == ["CHARGE", "TAX"]
    draft = await compute(await load_context(supplementary.id))
    # The month's usage was invoiced already, and so was its fixed charge.
    assert [(line.kind, line.description, line.amount) for line in draft.lines] == [
        ("LATE_COST", "Costs for September 2024 received after invoicing", Decimal("10.00")),
        ("TAX", "VAT (20%)", Decimal("2.00")),
    ]
    # Closing again while it is on its way makes no second one.
    assert await close_period(world.org.id, OCT, SYSTEM) == []


async def test_with_supplementary_invoices_a_lower_restatement_is_credited_on_the_next_invoice(world):
    world.org.late_cost_billing = LateCostBilling.SUPPLEMENTARY_INVOICE
    await world.org.save()
    header, rows, september = await _approved_september(world)
    await import_costs(world.org.id, to_csv(header, restate(rows, Decimal("-0.75"))))

    await close_period(world.org.id, OCT, SYSTEM)
    assert not await Invoice.filter(kind="SUPPLEMENTARY").exists()
    october = await Invoice.get(managed_account_id=world.account.id, billing_period__start_date=OCT)
    draft = await compute(await load_context(october.id))
    assert [(line.kind, line.description, line.amount) for line in draft.lines] == [
        ("LATE_COST", "Costs for September 2024 received after invoicing", Decimal("-0.75")),
    ]
