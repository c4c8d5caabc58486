"""`monthSummary`: a month's invoices by display status and currency, summed by the database
to the cent, and what needs a person; owners and viewers only, their own organization only."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

from models import Invoice, InvoiceRevision
from models.costs.records import CostImport, LateCost
from models.invoices import display_status
from models.invoices.checks import CheckCode, Finding, Severity
from tests import factories
from tests.graphql import gql

SEPT = date(2024, 9, 1)
SUMMARY = """query($period: Month!) { monthSummary(period: $period) { month invoiceCount
  totals { displayStatus currency count total }
  attention { ready awaitingApproval errors warnings invoicesWithWarnings undelivered lateDeliveries } } }"""


async def _month(world):
    """Northwind's September: eight invoices in every state and two currencies, a warning
    on two of them, a delivery after approval on one; October's and Fabrikam's around it."""
    period = await factories.billing_period(world.org, SEPT)
    october = await factories.billing_period(world.org, date(2024, 10, 1))
    foreign = await factories.billing_period(world.foreign_org, SEPT)
    a, b = world.account, world.other_account
    made = [
        await factories.generated_invoice(a, period, number="NW-1", lines=1),
        await factories.generated_invoice(b, period, number="NW-2", lines=3, currency="EUR"),
        await factories.generated_invoice(a, period, number="NW-3", status="ERROR", provider_name="Azure", lines=2),
        await factories.generated_invoice(
            a, period, number="NW-4", status="APPROVED", provider_name="GCP", lines=4, delivery_status="SENT", payment_status="PAID"
        ),
        await factories.generated_invoice(b, period, number="NW-5", status="APPROVED", provider_name="GCP", lines=5),
        await factories.generated_invoice(
            b, period, number="NW-6", status="APPROVED", provider_name="Azure", lines=2, delivery_status="SENT"
        ),
        await factories.generated_invoice(a, period, number="NW-7", status="VOIDED", provider_name="Oracle", lines=3),
        await factories.invoice(b, period, provider_name="Oracle"),
    ]
    warning = Finding(CheckCode.TOTAL_CHANGED, Severity.WARNING, "The total moved.").stored()
    info = Finding(CheckCode.NEW_SERVICE, Severity.INFO, "A new service.").stored()
    for invoice, found in ((made[0], [warning, info]), (made[1], [warning, warning])):
        await _checked(invoice, found)
    delivery = await CostImport.create(organization=world.org, filename="late.csv", state="DONE")
    for cost in ("1.50", "2.25"):  # two rows, one invoice
        await LateCost.create(
            organization=world.org,
            cost_import=delivery,
            managed_account=b,
            invoice=made[5],
            billing_month=SEPT,
            provider_name="Azure",
            billing_account_id="1",
            currency="USD",
            invoiced_cost=Decimal(0),
            delivered_cost=Decimal(cost),
            difference=Decimal(cost),
            invoiced_rows=0,
            delivered_rows=1,
            billable=Decimal(cost),
        )
    await factories.generated_invoice(a, october, number="NW-8", lines=6)
    await factories.generated_invoice(world.foreign_account, foreign, number="FB-1", lines=7)
    return made


async def _checked(invoice: Invoice, checks: list[dict]) -> None:
    """A second revision of the invoice (revisions are never updated), with these findings."""
    first = await InvoiceRevision.get(id=invoice.current_revision_id)
    revision = await InvoiceRevision.create(
        invoice=invoice,
        revision=2,
        template_version="1",
        currency=first.currency,
        cost_currency="USD",
        subtotal=first.subtotal,
        adjustments=0,
        charges=0,
        total=first.total,
        issue_date=first.issue_date,
        due_date=first.due_date,
        snapshot={},
        checks=checks,
    )
    await Invoice.filter(id=invoice.id).update(current_revision_id=revision.id)


def _expected(invoices: list[Invoice]) -> list[dict]:
    sums: dict[tuple[str, str], list] = defaultdict(lambda: [0, Decimal(0)])
    for invoice in invoices:
        entry = sums[(display_status(invoice).value, invoice.currency)]
        entry[0] += 1
        entry[1] += invoice.total
    order = ["DRAFT", "PENDING", "SENT", "PAID", "OVERDUE", "VOIDED", "REFUNDED"]
    return [
        {"displayStatus": s, "currency": c, "count": n, "total": f"{total:.2f}"}
        for (s, c), (n, total) in sorted(sums.items(), key=lambda item: (order.index(item[0][0]), item[0][1]))
    ]


async def test_the_month_adds_up_per_display_status_and_currency_for_owners_and_viewers(client, world):
    made = await _month(world)
    rows = await Invoice.filter(organization_id=world.org.id, billing_period__start_date=SEPT)
    for role in ("owner", "viewer"):
        found = (await gql(client, SUMMARY, {"period": "2024-09"}, world.tokens[role]))["data"]["monthSummary"]
        assert found["month"] == "2024-09" and found["invoiceCount"] == len(made) == 8
        assert found["totals"] == _expected(rows)
        assert [(t["displayStatus"], t["currency"], t["count"], t["total"]) for t in found["totals"]] == [
            ("DRAFT", "USD", 2, "30.75"),  # NW-3 (an error) and the one ready to generate
            ("PENDING", "EUR", 1, "61.50"),
            ("PENDING", "USD", 2, "164.00"),  # NW-1 awaiting approval, NW-5 approved and not sent
            ("SENT", "USD", 1, "30.75"),
            ("PAID", "USD", 1, "102.50"),
            ("VOIDED", "USD", 1, "61.50"),
        ]
        assert found["attention"] == {
            "ready": 1,
            "awaitingApproval": 2,
            "errors": 1,
            "warnings": 3,
            "invoicesWithWarnings": 2,
            "undelivered": 1,
            "lateDeliveries": 1,
        }
    # A month without invoices is all zeros; another organization's month is not Northwind's.
    empty = (await gql(client, SUMMARY, {"period": "2024-11"}, world.tokens["owner"]))["data"]["monthSummary"]
    assert empty["invoiceCount"] == 0 and empty["totals"] == [] and set(empty["attention"].values()) == {0}
    foreign = (await gql(client, SUMMARY, {"period": "2024-09"}, world.tokens["foreign_owner"]))["data"]["monthSummary"]
    assert foreign["invoiceCount"] == 1 and foreign["totals"] == [
        {"displayStatus": "PENDING", "currency": "USD", "count": 1, "total": "287.00"}
    ]
    assert foreign["attention"]["awaitingApproval"] == 1 and foreign["attention"]["warnings"] == 0


async def test_the_figures_follow_the_invoices_as_they_change(client, world):
    made = await _month(world)
    await Invoice.filter(id=made[0].id).update(status="APPROVED", approved_at=datetime.now(UTC), delivery_status="SENT")
    await LateCost.filter(invoice_id=made[5].id).update(billed_invoice_id=made[4].id)
    found = (await gql(client, SUMMARY, {"period": "2024-09"}, world.tokens["owner"]))["data"]["monthSummary"]
    rows = await Invoice.filter(organization_id=world.org.id, billing_period__start_date=SEPT)
    assert found["totals"] == _expected(rows)
    assert ("SENT", "USD", 2, "41.00") in [(t["displayStatus"], t["currency"], t["count"], t["total"]) for t in found["totals"]]
    attention = found["attention"]
    assert (attention["awaitingApproval"], attention["warnings"], attention["invoicesWithWarnings"]) == (1, 2, 1)
    assert attention["lateDeliveries"] == 0  # the late costs are billed by another invoice now


async def test_customers_and_strangers_get_no_figures(client, world):
    await _month(world)
    for role in ("customer", "other_customer"):
        answer = await gql(client, SUMMARY, {"period": "2024-09"}, world.tokens[role])
        assert answer["data"] is None and answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await gql(client, SUMMARY, {"period": "2024-09"}, None)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
