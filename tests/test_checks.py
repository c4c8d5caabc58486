"""Checks before approval, on synthetic months built to trigger each of them, and the approval
that must acknowledge the warnings."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from models import CostDeliveryScope, CostImport, CostRecord, ExchangeRate, Invoice, InvoiceEvent
from models.actors import Actor
from models.billing_periods import close_period
from models.invoices.actions import start_generation
from models.invoices.generation.compute import compute
from models.invoices.generation.inputs import load_context
from models.invoices.generation.store import store_revision
from models.invoices.generation.view import build_view
from models.invoices.numbering import ensure_number
from tests import factories
from tests.graphql import gql
from tests.test_corrections import gid

AUG, SEPT = date(2024, 8, 1), date(2024, 9, 1)
SYSTEM = Actor.system("test")
CHECKS = """query($id: ID!) { node(id: $id) { ... on Invoice { checks { code severity message figures } } } }"""
APPROVE = """mutation($ids: [ID!]!, $ack: [InvoiceCheckCode!]) { approveInvoices(ids: $ids, acknowledge: $ack, notifyCustomer: false) {
  ... on InvoiceActionResults { results { invoice { status } error { code message field } } } } }"""


async def costs(world, month: date, rows, account=None, cost_import=None):
    """rows: (provider, service, sub-account, billed cost[, currency])"""
    cost_import = cost_import or await CostImport.create(
        organization=world.org, file_sha256=uuid.uuid4().hex * 2, row_count=len(rows), inserted_count=len(rows), duplicate_count=0,
    )
    end = (month.replace(day=28) + (date(2024, 1, 5) - date(2024, 1, 1))).replace(day=1)
    for provider, service, sub_account, cost, *currency in rows:
        await CostRecord.create(
            organization=world.org, managed_account=account or world.account, cost_import=cost_import,
            fingerprint=uuid.uuid4().hex, billing_month=month, billing_period_start=datetime(month.year, month.month, 1, tzinfo=UTC),
            billing_period_end=datetime(end.year, end.month, 1, tzinfo=UTC), provider_name=provider,
            sub_account_id=sub_account, billed_cost=Decimal(cost), billing_currency=(currency or ["USD"])[0],
            service_name=service, service_category="Compute", charge_category="Usage",
        )
    await factories.summed_costs(world.org.id)
    return cost_import


async def generated(world, month: date, account=None) -> Invoice:
    """The account's invoice of the month, generated as the worker does (without the PDF)."""
    account = account or world.account
    await close_period(world.org.id, month, SYSTEM)
    invoice = await Invoice.get(managed_account_id=account.id, billing_period__start_date=month)
    if invoice.status == "READY_TO_INVOICE":  # an auto-invoiced account's starts GENERATING
        await start_generation(invoice.id, world.org.id, SYSTEM)
    ctx = await load_context(invoice.id)
    draft = await compute(ctx)
    number = await ensure_number(invoice.id, 2024)
    await store_revision(invoice.id, draft, build_view(ctx, draft, number, "1"), {"path": None, "sha256": None, "size": None}, SYSTEM)
    return await Invoice.get(id=invoice.id)


async def _checks(client, world, invoice, role="owner"):
    result = await gql(client, CHECKS, {"id": gid(invoice)}, world.tokens[role])
    return {(c["code"], c["severity"]): c for c in result["data"]["node"]["checks"]}


async def test_month_over_month_checks_find_every_change_and_the_approval_must_acknowledge_them(client, world):
    await costs(world, AUG, [
        ("AWS", "Amazon EC2", "1", "100"), ("AWS", "Amazon S3", "1", "50"), ("AWS", "Amazon EC2", "3", "0.5"),
        ("Microsoft", "Virtual Machines", "2", "30"),
    ])
    august = await generated(world, AUG)
    assert await _checks(client, world, august) == {}, "no previous month: nothing to compare"
    await Invoice.filter(id=august.id).update(status="APPROVED", approved_at=datetime.now(UTC))
    await costs(world, SEPT, [("AWS", "Amazon EC2", "1", "300"), ("Google", "BigQuery", "9", "150")])
    september = await generated(world, SEPT)

    found = await _checks(client, world, september, role="viewer")
    assert set(found) == {
        ("TOTAL_CHANGED", "WARNING"), ("SERVICE_CHANGED", "WARNING"), ("NEW_SERVICE", "WARNING"),
        ("SERVICE_GONE", "INFO"), ("NO_DATA", "WARNING"),
    }
    assert found[("TOTAL_CHANGED", "WARNING")]["figures"] == {
        "previous": "180.50", "current": "450.00", "change": "269.50", "percent": "149.3",
    }
    assert found[("SERVICE_CHANGED", "WARNING")]["figures"]["service"] == "Amazon EC2"
    no_data = [c for c in (await gql(client, CHECKS, {"id": gid(september)}, world.tokens["owner"]))["data"]["node"]["checks"]
               if c["code"] == "NO_DATA"]
    assert sorted(c["figures"].get("subAccount", c["figures"]["provider"]) for c in no_data) == ["3", "Microsoft"]
    gone = [c for c in (await gql(client, CHECKS, {"id": gid(september)}, world.tokens["owner"]))["data"]["node"]["checks"]
            if c["code"] == "SERVICE_GONE"]
    assert {c["figures"]["service"] for c in gone} == {"Amazon S3", "Virtual Machines"}
    customer = await gql(client, CHECKS, {"id": gid(september)}, world.tokens["customer"])
    assert customer["data"]["node"] is None  # not approved: the customer cannot see the invoice

    owner = world.tokens["owner"]
    refused = await gql(client, APPROVE, {"ids": [gid(september)]}, owner)
    assert "errors" not in refused, refused
    refused = refused["data"]["approveInvoices"]["results"][0]
    assert refused["error"]["code"] == "CHECKS_UNACKNOWLEDGED" and refused["invoice"] is None
    partial = (await gql(client, APPROVE, {"ids": [gid(september)], "ack": ["TOTAL_CHANGED", "SERVICE_CHANGED"]}, owner))
    assert partial["data"]["approveInvoices"]["results"][0]["error"]["code"] == "CHECKS_UNACKNOWLEDGED"
    assert (await Invoice.get(id=september.id)).status == "AWAITING_APPROVAL"
    done = await gql(client, APPROVE, {"ids": [gid(september)], "ack": ["TOTAL_CHANGED", "SERVICE_CHANGED", "NEW_SERVICE", "NO_DATA"]}, owner)
    assert done["data"]["approveInvoices"]["results"][0]["invoice"]["status"] == "APPROVED"
    event = await InvoiceEvent.get(invoice_id=september.id, kind="APPROVE")
    assert sorted({a["code"] for a in event.detail["acknowledged"]}) == ["NEW_SERVICE", "NO_DATA", "SERVICE_CHANGED", "TOTAL_CHANGED"]
    assert event.actor_id == world.users["owner"].id


async def test_thresholds_are_the_organizations(client, world):
    world.org.check_change_percent, world.org.check_change_amount = Decimal(500), Decimal(1000)
    await world.org.save()
    await costs(world, AUG, [("AWS", "Amazon EC2", "1", "100")])
    august = await generated(world, AUG)
    await Invoice.filter(id=august.id).update(status="APPROVED", approved_at=datetime.now(UTC))
    await costs(world, SEPT, [("AWS", "Amazon EC2", "1", "300")])
    assert await _checks(client, world, await generated(world, SEPT)) == {}


@pytest.mark.parametrize("amount,code", [(None, "ZERO_TOTAL"), ("-5", "NEGATIVE_TOTAL")])
async def test_a_zero_or_negative_total_is_a_warning(client, world, amount, code):
    if amount:
        await costs(world, SEPT, [("AWS", "Credits", "1", amount)])
    invoice = await generated(world, SEPT)
    assert set(await _checks(client, world, invoice)) == {(code, "WARNING")}


async def test_a_rate_changed_or_a_delivery_since_generation_makes_the_revision_stale(client, world):
    world.account.currency = "EUR"
    await world.account.save()
    rate = await ExchangeRate.create(organization=world.org, month=SEPT, base_currency="USD", currency="EUR", rate=Decimal("0.9"))
    await costs(world, SEPT, [("AWS", "Amazon EC2", "1", "100")])
    invoice = await generated(world, SEPT)
    assert await _checks(client, world, invoice) == {}

    rate.rate = Decimal("0.95")
    await rate.save()
    redelivered = await costs(world, SEPT, [("AWS", "Amazon EC2", "1", "1")])
    await CostDeliveryScope.create(
        organization=world.org, cost_import=redelivered, provider_name="AWS", billing_account_id="", billing_month=SEPT,
        is_current=True, row_count=1, totals={"USD": "1"},
    )
    found = await _checks(client, world, invoice)
    assert set(found) == {("RATE_CHANGED", "WARNING"), ("STALE_REVISION", "WARNING")}
    assert found[("RATE_CHANGED", "WARNING")]["figures"] == {"currency": "USD", "applied": "0.9", "current": "0.95"}
    # Regenerated, it is current again.
    await start_generation(invoice.id, world.org.id, SYSTEM, regenerate=True)
    ctx = await load_context(invoice.id)
    draft = await compute(ctx)
    await store_revision(invoice.id, draft, build_view(ctx, draft, invoice.number, "1"), {"path": None, "sha256": None, "size": None}, SYSTEM)
    assert await _checks(client, world, invoice) == {}


async def test_an_automatic_send_with_warnings_waits_for_a_person(world, redis):
    from jobs.periods import send_due_invoices
    from models.managed_accounts import AutoInvoice

    world.account.auto_invoice = AutoInvoice.SEND
    await world.account.save()
    invoice = await generated(world, SEPT)  # no costs: zero total
    assert invoice.auto_send_at is not None
    assert await send_due_invoices({"redis": redis}, invoice.auto_send_at) == 0
    held = await Invoice.get(id=invoice.id)
    assert (held.status, held.auto_send_at) == ("AWAITING_APPROVAL", None)
    assert (await InvoiceEvent.get(invoice_id=invoice.id, kind="AUTO_SEND_HELD")).detail == {"warnings": ["ZERO_TOTAL"]}


async def test_a_page_of_invoices_reads_and_approves_each_ones_own_checks(client, world):
    """The list reads the checks of its page together, and an approval of several at once
    weighs each invoice's warnings alone: one account's stale revision and changed rate do not
    spill onto another's invoice of the same month."""
    world.account.currency = "EUR"
    await world.account.save()
    rate = await ExchangeRate.create(organization=world.org, month=SEPT, base_currency="USD", currency="EUR", rate=Decimal("0.9"))
    await costs(world, SEPT, [("AWS", "Amazon EC2", "1", "100")])
    await costs(world, SEPT, [("AWS", "Amazon EC2", "2", "40")], account=world.other_account)
    stale, fine = await generated(world, SEPT), await generated(world, SEPT, world.other_account)
    rate.rate = Decimal("0.95")
    await rate.save()
    redelivered = await costs(world, SEPT, [("AWS", "Amazon EC2", "1", "1")])
    await CostDeliveryScope.create(
        organization=world.org, cost_import=redelivered, provider_name="AWS", billing_account_id="", billing_month=SEPT,
        is_current=True, row_count=1, totals={"USD": "1"},
    )
    listed = await gql(client, """{ invoices(first: 10) { edges { node { number checks { code severity } } } } }""",
                       token=world.tokens["owner"])
    found = {edge["node"]["number"]: {c["code"] for c in edge["node"]["checks"]} for edge in listed["data"]["invoices"]["edges"]}
    assert found == {stale.number: {"RATE_CHANGED", "STALE_REVISION"}, fine.number: set()}
    # One at a time (node) reads the same.
    assert set(await _checks(client, world, stale)) == {("RATE_CHANGED", "WARNING"), ("STALE_REVISION", "WARNING")}

    refused = await gql(client, APPROVE, {"ids": [gid(stale), gid(fine)]}, world.tokens["owner"])
    results = refused["data"]["approveInvoices"]["results"]
    assert results[0]["error"]["code"] == "CHECKS_UNACKNOWLEDGED" and "RATE_CHANGED, STALE_REVISION" in results[0]["error"]["message"]
    assert results[1] == {"invoice": {"status": "APPROVED"}, "error": None}
    assert (await Invoice.get(id=stale.id)).status == "AWAITING_APPROVAL"

    both = await gql(client, APPROVE, {"ids": [gid(stale), gid(fine)], "ack": ["RATE_CHANGED", "STALE_REVISION"]}, world.tokens["owner"])
    # The second approval of the approved one changes nothing.
    assert [r["invoice"]["status"] for r in both["data"]["approveInvoices"]["results"]] == ["APPROVED", "APPROVED"]
    events = await InvoiceEvent.filter(kind="APPROVE").order_by("at", "id").values("invoice_id", "detail")
    assert [(e["invoice_id"], sorted(a["code"] for a in e["detail"].get("acknowledged", []))) for e in events] == [
        (fine.id, []), (stale.id, ["RATE_CHANGED", "STALE_REVISION"]),
    ]
