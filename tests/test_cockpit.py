"""The approval cockpit beyond the checks: revision diffs, the month's reconciliation (on the
FOCUS sample, to the cent of its imported total), billing basis and margins, a line's cost
records, and usage by service category."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal, localcontext

import pytest
from strawberry.relay import to_base64

from models import BillingRule, ExchangeRate, Invoice, SubAccount
from models.costs import import_costs
from models.invoices.actions import start_generation
from models.invoices.generation.compute import compute
from models.invoices.generation.inputs import load_context
from models.invoices.generation.store import store_revision
from models.invoices.generation.view import build_view
from tests.factories import summed_costs
from tests.graphql import gql
from tests.test_checks import SYSTEM, costs, generated
from tests.test_corrections import gid, restate
from tests.test_costs_import import AWS_BIG, AWS_SECOND, sample_rows, to_csv
from tests.test_exports import _download

SEPT = date(2024, 9, 1)


async def regenerate(invoice) -> Invoice:
    await start_generation(invoice.id, invoice.organization_id, SYSTEM, regenerate=True)
    ctx = await load_context(invoice.id)
    draft = await compute(ctx)
    await store_revision(invoice.id, draft, build_view(ctx, draft, invoice.number, "1"), {"path": None, "sha256": None, "size": None}, SYSTEM)
    return await Invoice.get(id=invoice.id)


# ---------------------------------------------------------------- revision diff


DIFF = """query($n: String!, $against: Int) { invoice(number: $n) { revisions { revision
  diff(against: $against) { against totalChange causes added { description after } removed { description before }
    changed { kind description before after difference } } } } }"""


async def test_a_revision_diff_names_the_lines_and_the_causes(client, world):
    world.account.currency = "EUR"
    await world.account.save()
    rate = await ExchangeRate.create(organization=world.org, month=SEPT, base_currency="USD", currency="EUR", rate=Decimal("0.9"))
    await costs(world, SEPT, [("AWS", "Amazon EC2", "1", "100"), ("AWS", "Amazon S3", "1", "10")])
    invoice = await generated(world, SEPT)
    rate.rate = Decimal("1")
    await rate.save()
    await regenerate(invoice)  # revision 2: the rate alone
    await BillingRule.create(organization=world.org, name="Loyalty", kind="DISCOUNT", calculation="PERCENT", value=Decimal("10"))
    await costs(world, SEPT, [("Microsoft", "Virtual Machines", "2", "5")])
    await regenerate(invoice)  # revision 3: a rule and new costs

    viewer = world.tokens["viewer"]
    revisions = (await gql(client, DIFF, {"n": invoice.number}, viewer))["data"]["invoice"]["revisions"]
    first, second, third = (r["diff"] for r in revisions)
    assert first["against"] is None and {line["description"] for line in first["added"]} == {
        "AWS Amazon EC2 (Compute)", "AWS Amazon S3 (Compute)",
    }
    assert second["causes"] == ["RATES"] and second["totalChange"] == "11.00"
    assert [(c["description"], c["before"], c["after"]) for c in second["changed"]] == [
        ("AWS Amazon EC2 (Compute)", "90.00", "100.00"), ("AWS Amazon S3 (Compute)", "9.00", "10.00"),
    ]
    assert third["causes"] == ["COSTS", "RULES"]
    assert {line["description"] for line in third["added"]} == {"Microsoft Virtual Machines (Compute)", "Discount: Loyalty"}
    against_first = (await gql(client, DIFF, {"n": invoice.number, "against": 1}, viewer))["data"]["invoice"]["revisions"][2]["diff"]
    assert against_first["causes"] == ["COSTS", "RULES", "RATES"] and against_first["against"] == 1
    missing = (await gql(client, DIFF, {"n": invoice.number, "against": 9}, viewer))["data"]["invoice"]["revisions"][0]["diff"]
    assert missing is None
    await Invoice.filter(id=invoice.id).update(status="APPROVED", approved_at=datetime.now(UTC))
    customer = await gql(client, DIFF, {"n": invoice.number}, world.tokens["customer"])
    assert customer["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# ---------------------------------------------------------------- reconciliation


RECONCILE = """query($m: Month!) { reconciliation(period: $m) { month csvUrl
  totals { currency imported invoiced notInvoiced integrationExcluded unclaimed late }
  lines { part currency cost rows accountName subAccountId invoiceNumber invoicedAmount rounding } } }"""


def _sample_total(rows) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    with localcontext() as context:
        context.prec = 60
        for row in rows:
            if row["BillingPeriodStart"].startswith("2024-09"):
                totals[row["BillingCurrency"]] += Decimal(row["BilledCost"])
    return dict(totals)


async def test_the_sample_months_reconciliation_equals_its_imported_billed_total_exactly(client, world):
    header, rows = sample_rows()
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AWS_BIG)
    await SubAccount.create(organization=world.org, managed_account=world.other_account, sub_account_id=AWS_SECOND)
    await import_costs(world.org.id, to_csv(header, rows))
    # The first account's own integration, which it does not bill.
    await costs(world, SEPT, [("AWS", "Integration", "1", "7.25")],
                cost_import=None)
    from models import CostRecord

    await CostRecord.filter(sub_account_id="1").update(origin="ACCOUNT_INTEGRATION")
    await summed_costs(world.org.id)
    invoice = await generated(world, SEPT)
    await Invoice.filter(id=invoice.id).update(status="APPROVED", approved_at=datetime.now(UTC))
    await import_costs(world.org.id, to_csv(header, restate(rows, Decimal("1.25"))))

    viewer = world.tokens["viewer"]
    found = (await gql(client, RECONCILE, {"m": "2024-09"}, viewer))["data"]["reconciliation"]
    expected = _sample_total(rows)
    expected["USD"] += Decimal("7.25") + Decimal("1.25")
    for total in found["totals"]:
        parts = sum(Decimal(total[k]) for k in ("invoiced", "notInvoiced", "integrationExcluded", "unclaimed", "late"))
        assert parts == Decimal(total["imported"]) == expected[total["currency"]], total
    assert {t["currency"] for t in found["totals"]} == set(expected)
    usd = next(t for t in found["totals"] if t["currency"] == "USD")
    assert (Decimal(usd["integrationExcluded"]), Decimal(usd["late"])) == (Decimal("7.25"), Decimal("1.25"))
    invoiced = [line for line in found["lines"] if line["part"] == "INVOICED"]
    assert [(line["accountName"], line["invoiceNumber"]) for line in invoiced] == [("Contoso", invoice.number)]
    # Printed lines are rounded to the cent: the rounding is what they add to the exact cost.
    assert Decimal(invoiced[0]["invoicedAmount"]) - Decimal(invoiced[0]["cost"]) == Decimal(invoiced[0]["rounding"])
    assert abs(Decimal(invoiced[0]["rounding"])) < Decimal("0.01") * 20
    assert {line["accountName"] for line in found["lines"] if line["part"] == "NOT_INVOICED"} == {"Tailspin"}
    assert all(line["subAccountId"] for line in found["lines"] if line["part"] == "UNCLAIMED")

    table = list(csv.reader(io.StringIO((await _download(client, found["csvUrl"])).text)))
    assert table[0][:4] == ["Month", "Part", "Currency", "Cost"]
    imported = {row[2]: Decimal(row[3]) for row in table if row[1] == "TOTAL IMPORTED"}
    assert imported == expected

    assert (await gql(client, RECONCILE, {"m": "2024-09"}, world.tokens["customer"]))["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    foreign = (await gql(client, RECONCILE, {"m": "2024-09"}, world.tokens["foreign_owner"]))["data"]["reconciliation"]
    assert foreign["totals"] == [] and foreign["lines"] == []


# ---------------------------------------------------------------- basis, margin, drill-down


MARGINS = """query($m: Month!) { margins(period: $m) { accountName invoiceNumber currency billed cost margin marginPercent } }"""
LINE_COSTS = """query($n: String!) { invoice(number: $n) { lineItems { description amount
  costs(first: 2) { totalCount totals { currency billedCost rows } edges { node { serviceName } } } } } }"""


async def test_billing_basis_margins_and_the_costs_behind_a_line(client, world):
    from models import CostRecord

    await costs(world, SEPT, [("AWS", "Amazon EC2", "1", "60"), ("AWS", "Amazon EC2", "1", "40"), ("AWS", "Amazon S3", "1", "10")])
    await CostRecord.filter(service_name="Amazon EC2").update(effective_cost=Decimal("45"))
    await summed_costs(world.org.id)
    await BillingRule.create(organization=world.org, name="Management", kind="MARKUP", calculation="PERCENT", value=Decimal("20"))
    invoice = await generated(world, SEPT)
    owner = world.tokens["owner"]
    (margin,) = (await gql(client, MARGINS, {"m": "2024-09"}, owner))["data"]["margins"]
    assert margin == {"accountName": "Contoso", "invoiceNumber": invoice.number, "currency": "USD",
                      "billed": "132.00", "cost": "110.00", "margin": "22.00", "marginPercent": "16.67"}
    lines = (await gql(client, LINE_COSTS, {"n": invoice.number}, owner))["data"]["invoice"]["lineItems"]
    ec2 = next(line for line in lines if line["description"] == "AWS Amazon EC2 (Compute)")
    assert ec2["costs"]["totalCount"] == 2 and ec2["costs"]["totals"] == [{"currency": "USD", "billedCost": "100", "rows": 2}]
    rule = next(line for line in lines if line["description"].startswith("Markup"))
    assert rule["costs"]["totalCount"] == 0
    assert (await gql(client, LINE_COSTS, {"n": invoice.number}, world.tokens["customer"]))["data"]["invoice"] is None

    world.account.billing_basis = "EFFECTIVE"
    await world.account.save()
    regenerated = await regenerate(invoice)
    assert regenerated.subtotal == Decimal("120.00")  # (45 + 45 + 10) x 1.2
    (margin,) = (await gql(client, MARGINS, {"m": "2024-09"}, owner))["data"]["margins"]
    # The MSP paid the BilledCost, whatever the customer is billed on.
    assert (margin["billed"], margin["cost"], margin["margin"], margin["marginPercent"]) == ("120.00", "110.00", "10.00", "8.33")
    diff = (await gql(client, DIFF, {"n": invoice.number}, owner))["data"]["invoice"]["revisions"][1]["diff"]
    assert "BASIS" in diff["causes"]


# ---------------------------------------------------------------- usage


USAGE = """query($a: ID!) { usage(accountId: $a, from: "2024-08", to: "2024-09") { account { name } csvUrl
  lines { month serviceCategory currency amount rows } } }"""


@pytest.mark.parametrize("allowed", [False, True])
async def test_usage_by_service_category_and_who_reads_it(client, world, allowed):
    await costs(world, SEPT, [("AWS", "Amazon EC2", "1", "60"), ("AWS", "Amazon EC2", "1", "40")])
    world.account.usage_visible_to_customer = allowed
    await world.account.save()
    account = to_base64("ManagedAccount", str(world.account.id))
    viewer = (await gql(client, USAGE, {"a": account}, world.tokens["viewer"]))["data"]["usage"]
    assert viewer["lines"] == [{"month": "2024-09", "serviceCategory": "Compute", "currency": "USD", "amount": "100", "rows": 2}]
    table = list(csv.reader(io.StringIO((await _download(client, viewer["csvUrl"])).text)))
    assert table == [["Account", "Month", "ServiceCategory", "Currency", "Amount", "Rows"], ["Contoso", "2024-09", "Compute", "USD", "100", "2"]]
    customer = (await gql(client, USAGE, {"a": account}, world.tokens["customer"]))["data"]["usage"]
    assert (customer is not None) == allowed
    assert (await gql(client, USAGE, {"a": account}, world.tokens["other_customer"]))["data"]["usage"] is None
    assert (await gql(client, USAGE, {"a": account}, world.tokens["foreign_owner"]))["data"]["usage"] is None
    wide = await gql(client, 'query($a: ID!) { usage(accountId: $a, from: "2020-01", to: "2024-09") { csvUrl } }',
                     {"a": account}, world.tokens["owner"])
    assert wide["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "to"}


@pytest.mark.parametrize("role", ["viewer", "customer", "foreign_owner"])
async def test_who_reads_the_cockpit(client, world, role):
    await costs(world, SEPT, [("AWS", "Amazon EC2", "1", "60")])
    invoice = await generated(world, SEPT)
    await Invoice.filter(id=invoice.id).update(status="APPROVED", approved_at=datetime.now(UTC))
    token = world.tokens[role]
    margins = await gql(client, MARGINS, {"m": "2024-09"}, token)
    checks = await gql(client, """query($id: ID!) { node(id: $id) { ... on Invoice { number checks { code } } } }""",
                       {"id": gid(invoice)}, token)
    if role == "viewer":
        assert len(margins["data"]["margins"]) == 1 and checks["data"]["node"]["checks"] == []
    elif role == "customer":
        assert margins["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert checks["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    else:
        assert margins["data"]["margins"] == [] and checks["data"]["node"] is None
