"""What a console needs of invoices: the one display status, tax total and paid date; memos
and one-off items on drafts; months handled by filter; auto-invoice from the worker's
schedule across a month boundary in the organization's time zone; a zip of PDFs."""

from __future__ import annotations

import asyncio
import io
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from jobs.periods import close_due_periods, send_due_invoices
from models import BillingProfileCharge, Invoice, InvoiceEvent, InvoiceExtraLine, InvoiceLineItem, Payment
from models.actors import Actor
from models.billing_periods import close_period
from models.managed_accounts import AutoInvoice
from tests import factories as f
from tests.graphql import gql
from tests.test_corrections import gid
from tests.test_exports import _download, approved_invoice
from tests.test_invoice_generation import _costs
from tests.test_pipeline_e2e import _pdf_text

SEPT = date(2024, 9, 1)
SYSTEM = Actor.system("test")
ROLES = ("viewer", "customer", "foreign_owner")


async def _wait_status(invoice_id, status, timeout=90):
    for _ in range(int(timeout / 0.1)):
        invoice = await Invoice.get(id=invoice_id)
        if invoice.status == status:
            return invoice
        await asyncio.sleep(0.1)
    raise AssertionError(f"invoice stayed {invoice.status}")


# ---------------------------------------------------------------- screen fields


@pytest.mark.parametrize("status,payment,delivery,shown", [
    ("READY_TO_INVOICE", "UNPAID", "NOT_SENT", "DRAFT"),
    ("ERROR", "UNPAID", "NOT_SENT", "DRAFT"),
    ("AWAITING_APPROVAL", "UNPAID", "NOT_SENT", "PENDING"),
    ("APPROVED", "UNPAID", "QUEUED", "PENDING"),
    ("APPROVED", "UNPAID", "SENT", "SENT"),
    ("APPROVED", "PARTIALLY_PAID", "SENT", "SENT"),
    ("APPROVED", "PAID", "SENT", "PAID"),
    ("APPROVED", "OVERDUE", "SENT", "OVERDUE"),
    ("APPROVED", "PARTIALLY_REFUNDED", "SENT", "REFUNDED"),
    ("APPROVED", "REFUNDED", "FAILED", "REFUNDED"),
    ("VOIDED", "UNPAID", "SENT", "VOIDED"),
])
async def test_one_display_status_per_invoice(client, world, status, payment, delivery, shown):
    period = await f.billing_period(world.org, SEPT)
    if status in ("READY_TO_INVOICE", "ERROR"):
        invoice = await f.invoice(world.account, period, status=status)
    else:
        invoice = await f.generated_invoice(world.account, period, number="INV-2024-0001", status=status)
    await Invoice.filter(id=invoice.id).update(payment_status=payment, delivery_status=delivery)
    data = await gql(client, "query($id: ID!) { node(id: $id) { ... on Invoice { displayStatus } } }",
                     {"id": gid(invoice)}, world.tokens["owner"])
    assert data["data"]["node"]["displayStatus"] == shown
    # The list's filter says the same: this value finds it, every other one does not.
    listed = "query($s: [InvoiceDisplayStatus!]) { invoices(filter: {displayStatus: $s}) { totalCount } }"
    others = [v for v in ("DRAFT", "PENDING", "SENT", "PAID", "OVERDUE", "VOIDED", "REFUNDED") if v != shown]
    assert (await gql(client, listed, {"s": [shown]}, world.tokens["owner"]))["data"]["invoices"]["totalCount"] == 1
    assert (await gql(client, listed, {"s": others}, world.tokens["owner"]))["data"]["invoices"]["totalCount"] == 0


async def test_tax_total_and_paid_date(client, world):
    period = await f.billing_period(world.org, SEPT)
    invoice = await f.generated_invoice(world.account, period, number="INV-2024-0001")
    await Invoice.filter(id=invoice.id).update(tax_total=Decimal("4.10"), charges=Decimal("6.10"), total=invoice.total + Decimal("6.10"))
    await Invoice.filter(id=invoice.id).update(status="APPROVED", approved_at=datetime.now(UTC))
    invoice = await Invoice.get(id=invoice.id)
    query = 'query { invoice(number: "INV-2024-0001") { charges taxTotal total amountDue paidAt } }'
    before = (await gql(client, query, token=world.tokens["customer"]))["data"]["invoice"]
    assert (before["charges"], before["taxTotal"], before["paidAt"]) == ("6.10", "4.10", None)
    pay = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) { __typename } }"""
    for amount, day in (("10.00", "2024-10-05"), (str(invoice.total - 10), "2024-10-09")):
        result = await gql(client, pay, {"input": {"invoiceId": gid(invoice), "amount": amount, "paidOn": day,
                                                   "method": "BANK_TRANSFER"}}, world.tokens["owner"])
        assert result["data"]["recordPayment"]["__typename"] == "PaymentRecorded", result
    after = (await gql(client, query, token=world.tokens["customer"]))["data"]["invoice"]
    assert (after["amountDue"], after["paidAt"]) == ("0.00", "2024-10-09")
    assert await Payment.filter(invoice_id=invoice.id).count() == 2


# ---------------------------------------------------------------- memo and one-off items


ADD = """mutation($id: ID!, $item: InvoiceItemInput!) { addInvoiceItem(invoiceId: $id, item: $item) { __typename
  ... on InvoiceChanged { invoice { status items { id description amount } } item { id position amount } }
  ... on UserError { code field message } } }"""
MEMO = """mutation($id: ID!, $memo: String!) { setInvoiceMemo(id: $id, memo: $memo) { __typename
  ... on InvoiceChanged { invoice { status memo } } ... on UserError { code field } } }"""


async def test_memo_and_one_off_items_are_generated_taxed_and_kept_by_regeneration(client, world, worker, settings):
    await _costs(world.org, world.account, [("AWS", "Amazon EC2", "Compute", "100", None, None)])
    await BillingProfileCharge.create(billing_profile=world.profile, position=1, name="VAT", kind="PERCENT", value=Decimal("20"))
    world.profile.invoice_notes = "Pay by bank transfer within the terms. Registered in England, no. 0123."
    await world.profile.save()
    await close_period(world.org.id, SEPT, SYSTEM)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    owner = world.tokens["owner"]

    added = (await gql(client, ADD, {"id": gid(invoice), "item": {"description": "Onboarding workshop", "unitPrice": "250"}},
                       owner))["data"]["addInvoiceItem"]
    assert added["invoice"]["status"] == "READY_TO_INVOICE" and added["item"]["amount"] == "250.00"
    memo = (await gql(client, MEMO, {"id": gid(invoice), "memo": "Thank you for choosing us."}, owner))["data"]["setInvoiceMemo"]
    assert memo["invoice"] == {"status": "READY_TO_INVOICE", "memo": "Thank you for choosing us."}
    await gql(client, "mutation($ids: [ID!]!) { generateInvoices(ids: $ids) { __typename } }", {"ids": [gid(invoice)]}, owner)
    generated = await _wait_status(invoice.id, "AWAITING_APPROVAL")
    assert (generated.subtotal, generated.tax_total, generated.total) == (Decimal("350.00"), Decimal("70.00"), Decimal("420.00"))

    # A change to a generated invoice generates it again at once.
    second = (await gql(client, ADD, {"id": gid(invoice), "item": {"description": "Firewall appliance", "quantity": "2",
                                                                   "unitPrice": "99.50"}}, owner))["data"]["addInvoiceItem"]
    assert second["invoice"]["status"] == "GENERATING" and second["item"]["position"] == 2
    regenerated = await _wait_status(invoice.id, "AWAITING_APPROVAL")
    assert regenerated.total == Decimal("658.80")
    lines = await InvoiceLineItem.filter(revision_id=regenerated.current_revision_id).order_by("position")
    assert [(line.kind, line.description, line.amount) for line in lines] == [
        ("USAGE", "AWS Amazon EC2 (Compute)", Decimal("100.00")),
        ("ONE_OFF", "Onboarding workshop", Decimal("250.00")),
        ("ONE_OFF", "Firewall appliance", Decimal("199.00")),
        ("TAX", "VAT (20%)", Decimal("109.80")),
    ]
    from infra import storage

    revision = await regenerated.current_revision
    text = _pdf_text(storage.load(settings, revision.pdf_path))
    assert "Firewall appliance" in text and "Thank you for choosing us." in text and "Registered in England" in text

    # Removed, then approved: nothing changes any more.
    removal = await gql(client, "mutation($id: ID!) { removeInvoiceItem(id: $id) { __typename ... on InvoiceChanged { invoice { status } } } }",
                        {"id": second["item"]["id"]}, owner)
    assert removal["data"]["removeInvoiceItem"]["invoice"]["status"] == "GENERATING"
    approved = await _wait_status(invoice.id, "AWAITING_APPROVAL")
    assert approved.total == Decimal("420.00")
    await gql(client, "mutation($ids: [ID!]!) { approveInvoices(ids: $ids, notifyCustomer: false) { __typename } }",
              {"ids": [gid(invoice)]}, owner)
    refused = (await gql(client, ADD, {"id": gid(invoice), "item": {"description": "Late fee", "unitPrice": "5"}}, owner))
    assert refused["data"]["addInvoiceItem"]["code"] == "INVALID_TRANSITION"
    assert await InvoiceExtraLine.filter(invoice_id=invoice.id).count() == 1
    assert [e.kind for e in await InvoiceEvent.filter(invoice_id=invoice.id, kind__startswith="ITEM").order_by("id")] == [
        "ITEM_ADDED", "ITEM_ADDED", "ITEM_REMOVED"
    ]


@pytest.mark.parametrize("item,field", [
    ({"description": " ", "unitPrice": "1"}, "description"),
    ({"description": "Fee", "unitPrice": "1", "quantity": "0"}, "quantity"),
    ({"description": "Fee", "unitPrice": "0.00001"}, "unitPrice"),
    ({"description": "Fee", "unitPrice": "1e15"}, "unitPrice"),
])
async def test_a_bad_item_is_refused_and_nothing_is_written(client, world, item, field):
    invoice = await f.invoice(world.account, await f.billing_period(world.org, SEPT))
    result = (await gql(client, ADD, {"id": gid(invoice), "item": item}, world.tokens["owner"]))["data"]["addInvoiceItem"]
    assert (result["code"], result["field"]) == ("INVALID", field)
    assert await InvoiceExtraLine.all().count() == 0 and await InvoiceEvent.all().count() == 0


@pytest.mark.parametrize("role", ROLES)
async def test_only_owners_change_drafts(client, world, role):
    invoice = await f.invoice(world.account, await f.billing_period(world.org, SEPT))
    line = await InvoiceExtraLine.create(invoice=invoice, position=1, description="Fee", quantity=1, unit_price=5)
    from strawberry.relay import to_base64

    item_id = to_base64("InvoiceItem", str(line.id))
    token = world.tokens[role]
    answers = [
        await gql(client, ADD, {"id": gid(invoice), "item": {"description": "X", "unitPrice": "1"}}, token),
        await gql(client, MEMO, {"id": gid(invoice), "memo": "Hello"}, token),
        await gql(client, 'mutation($id: ID!) { updateInvoiceItem(id: $id, item: {unitPrice: "9"}) { __typename ... on UserError { code } } }',
                  {"id": item_id}, token),
        await gql(client, "mutation($id: ID!) { removeInvoiceItem(id: $id) { __typename ... on UserError { code } } }",
                  {"id": item_id}, token),
        await gql(client, "mutation($id: ID!) { cancelQueuedInvoice(id: $id) { __typename ... on UserError { code } } }",
                  {"id": gid(invoice)}, token),
    ]
    for answer in answers:
        if role == "foreign_owner":
            assert next(iter(answer["data"].values()))["code"] == "NOT_FOUND", answer
        else:
            assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN", answer
    assert (await InvoiceExtraLine.get(id=line.id)).unit_price == 5
    assert (await Invoice.get(id=invoice.id)).memo == ""


# ---------------------------------------------------------------- by month


async def test_a_month_is_closed_generated_and_listed_without_ids(client, world, worker):
    world.other_account.is_invoiced = False
    await world.other_account.save()
    await _costs(world.org, world.account, [("AWS", "Amazon EC2", "Compute", "10", None, None)])
    owner = world.tokens["owner"]
    closed = await gql(client, """mutation { closeBillingPeriod(month: "2024-09") { __typename
        ... on BillingPeriodClosed { invoicesCreated invoices { id status account { name } }
          billingPeriod { invoices(first: 10) { totalCount edges { node { id } } } } } } }""", token=owner)
    closed = closed["data"]["closeBillingPeriod"]
    assert closed["invoicesCreated"] == 1
    assert [(i["status"], i["account"]["name"]) for i in closed["invoices"]] == [("READY_TO_INVOICE", "Contoso")]
    assert closed["billingPeriod"]["invoices"]["totalCount"] == 1
    # Another month's invoice, ready too, is left alone by the month's filter.
    other_month = await f.invoice(world.account, await f.billing_period(world.org, date(2024, 8, 1)))
    generated = await gql(client, """mutation { generateInvoices(filter: {periodFrom: "2024-09", periodTo: "2024-09"}) {
        __typename ... on InvoiceActionResults { succeeded results { id } } ... on UserError { code field } } }""", token=owner)
    assert generated["data"]["generateInvoices"]["succeeded"] == 1
    assert generated["data"]["generateInvoices"]["results"][0]["id"] == closed["invoices"][0]["id"]
    assert (await Invoice.get(id=other_month.id)).status == "READY_TO_INVOICE"
    both = await gql(client, 'mutation($ids: [ID!]) { generateInvoices(ids: $ids, filter: {periodFrom: "2024-09"}) { __typename ... on UserError { code field } } }',
                     {"ids": []}, owner)
    assert both["data"]["generateInvoices"] == {"__typename": "ValidationError", "code": "INVALID", "field": "ids"}


# ---------------------------------------------------------------- auto-invoice


async def test_auto_invoice_generates_at_month_end_in_the_organizations_time_zone_then_sends_after_review(
    client, world, worker, smtp, redis,
):
    world.org.timezone = "Pacific/Auckland"
    await world.org.save()
    # September is closed already, everywhere: only October is due at the boundary.
    for org in (world.org, world.foreign_org):
        await close_period(org.id, SEPT, SYSTEM)
    world.account.auto_invoice, world.account.auto_send_after_hours = AutoInvoice.SEND, 2
    world.account.billing_emails = ["ap@contoso.example"]
    await world.account.save()
    world.other_account.auto_invoice = AutoInvoice.GENERATE
    await world.other_account.save()
    await _october_costs(world)
    ctx = {"redis": redis}
    # 31 October 10:30 UTC is still October in Auckland (UTC+13): nothing closes.
    assert await close_due_periods(ctx, datetime(2024, 10, 31, 10, 30, tzinfo=UTC)) == 0
    # 11:30 UTC is 1 November 00:30 there: October closes and both invoices start generating.
    assert await close_due_periods(ctx, datetime(2024, 10, 31, 11, 30, tzinfo=UTC)) == 2
    october = date(2024, 10, 1)
    sending = await Invoice.get(managed_account_id=world.account.id, billing_period__start_date=october)
    reviewed = await Invoice.get(managed_account_id=world.other_account.id, billing_period__start_date=october)
    sending = await _wait_status(sending.id, "AWAITING_APPROVAL")
    reviewed = await _wait_status(reviewed.id, "AWAITING_APPROVAL")
    assert reviewed.auto_send_at is None
    assert sending.auto_send_at is not None
    due = sending.auto_send_at
    assert timedelta(hours=1, minutes=59) < due - datetime.now(UTC) <= timedelta(hours=2)

    assert await send_due_invoices(ctx, due - timedelta(seconds=1)) == 0
    assert await send_due_invoices(ctx, due + timedelta(seconds=1)) == 1
    sent = await _wait_status(sending.id, "APPROVED")
    for _ in range(300):
        if (await Invoice.get(id=sent.id)).delivery_status == "SENT":
            break
        await asyncio.sleep(0.1)
    assert (await Invoice.get(id=sent.id)).delivery_status == "SENT"
    assert [rcpt for rcpt, _ in smtp[1].messages] == [["ap@contoso.example"]]
    assert (await InvoiceEvent.filter(invoice_id=sent.id, kind="APPROVE").first()).detail["automatic"] is True
    assert (await Invoice.get(id=reviewed.id)).status == "AWAITING_APPROVAL"


async def _october_costs(world):
    """A month with costs: an invoice that totals zero would be held for a person."""
    import uuid

    from models import CostImport, CostRecord

    imp = await CostImport.create(organization=world.org, file_sha256="1" * 64, row_count=1, inserted_count=1, duplicate_count=0)
    await CostRecord.create(
        organization=world.org, managed_account=world.account, cost_import=imp, fingerprint=uuid.uuid4().hex,
        billing_month=date(2024, 10, 1), billing_period_start=datetime(2024, 10, 1, tzinfo=UTC),
        billing_period_end=datetime(2024, 11, 1, tzinfo=UTC), provider_name="AWS", sub_account_id="1",
        billed_cost=Decimal("42"), billing_currency="USD", service_name="Amazon EC2", service_category="Compute",
        charge_category="Usage",
    )
    from tests.factories import summed_costs

    await summed_costs(world.org.id)


async def test_a_cancelled_automatic_send_stays_for_review_even_when_regenerated(client, world, worker, redis):
    world.account.auto_invoice = AutoInvoice.SEND
    await world.account.save()
    from jobs.effects import following

    async with following(redis):
        await close_period(world.org.id, SEPT, SYSTEM)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    invoice = await _wait_status(invoice.id, "AWAITING_APPROVAL")
    assert invoice.auto_send_at is not None
    owner = world.tokens["owner"]
    cancel = "mutation($id: ID!) { cancelQueuedInvoice(id: $id) { __typename ... on InvoiceChanged { invoice { autoSendAt } } ... on UserError { code } } }"
    assert (await gql(client, cancel, {"id": gid(invoice)}, owner))["data"]["cancelQueuedInvoice"] == {
        "__typename": "InvoiceChanged", "invoice": {"autoSendAt": None}
    }
    assert (await gql(client, cancel, {"id": gid(invoice)}, owner))["data"]["cancelQueuedInvoice"]["code"] == "INVALID_TRANSITION"
    await gql(client, "mutation($ids: [ID!]!) { regenerateInvoices(ids: $ids) { __typename } }", {"ids": [gid(invoice)]}, owner)
    await _wait_status(invoice.id, "GENERATING")
    regenerated = await _wait_status(invoice.id, "AWAITING_APPROVAL")
    assert regenerated.auto_send_at is None
    assert await send_due_invoices({"redis": redis}, datetime.now(UTC) + timedelta(days=2)) == 0


# ---------------------------------------------------------------- PDFs at once


DOWNLOAD = """mutation($ids: [ID!], $filter: InvoiceFilter) { downloadInvoicePdfs(ids: $ids, filter: $filter) {
  __typename ... on InvoiceExport { url filename invoiceCount } ... on UserError { code field } } }"""


async def test_a_zip_of_the_chosen_invoices_pdfs(client, world):
    september = await f.billing_period(world.org, SEPT)
    first = await approved_invoice(world.account, september, "INV-2024-0001", pdf=b"%PDF-first")
    second = await approved_invoice(world.other_account, september, "INV-2024-0002", pdf=b"%PDF-second")
    draft = await f.invoice(world.account, await f.billing_period(world.org, date(2024, 10, 1)))
    foreign = await approved_invoice(world.foreign_account, await f.billing_period(world.foreign_org, SEPT),
                                     "INV-2024-0009", pdf=b"%PDF-foreign")
    owner = world.tokens["owner"]
    result = (await gql(client, DOWNLOAD, {"filter": {"periodFrom": "2024-09"}}, world.tokens["viewer"]))["data"]["downloadInvoicePdfs"]
    assert (result["filename"].endswith(".zip"), result["invoiceCount"]) == (True, 2)
    archive = zipfile.ZipFile(io.BytesIO((await _download(client, result["url"])).content))
    assert {name: archive.read(name) for name in archive.namelist()} == {
        "INV-2024-0001.pdf": b"%PDF-first", "INV-2024-0002.pdf": b"%PDF-second",
    }
    refused = (await gql(client, DOWNLOAD, {"ids": [gid(first), gid(draft)]}, owner))["data"]["downloadInvoicePdfs"]
    assert (refused["code"], refused["field"]) == ("NOT_EXPORTABLE", "ids")
    hidden = (await gql(client, DOWNLOAD, {"ids": [gid(second), gid(foreign)]}, owner))["data"]["downloadInvoicePdfs"]
    assert hidden["code"] == "NOT_FOUND"
    customer = await gql(client, DOWNLOAD, {"ids": [gid(first)]}, world.tokens["customer"])
    assert customer["errors"][0]["extensions"]["code"] == "FORBIDDEN"


UPDATE_ACCOUNT = """mutation($id: ID!, $input: UpdateManagedAccountInput!) { updateManagedAccount(id: $id, input: $input) {
  __typename ... on ManagedAccountSaved { managedAccount { isInvoiced autoInvoice autoSendAfterHours invoicePerProvider } }
  ... on UserError { code field } } }"""


async def test_an_accounts_automation_is_set_over_the_api_and_checked(client, world):
    from strawberry.relay import to_base64

    account_id = to_base64("ManagedAccount", str(world.account.id))
    owner = world.tokens["owner"]
    changed = await gql(client, UPDATE_ACCOUNT, {"id": account_id, "input": {
        "isInvoiced": False, "autoInvoice": "SEND", "autoSendAfterHours": 48, "invoicePerProvider": True}}, owner)
    assert changed["data"]["updateManagedAccount"]["managedAccount"] == {
        "isInvoiced": False, "autoInvoice": "SEND", "autoSendAfterHours": 48, "invoicePerProvider": True,
    }
    refused = await gql(client, UPDATE_ACCOUNT, {"id": account_id, "input": {"autoSendAfterHours": 721, "autoInvoice": "OFF"}}, owner)
    assert refused["data"]["updateManagedAccount"] == {"__typename": "ValidationError", "code": "INVALID", "field": "autoSendAfterHours"}
    account = await world.account.__class__.get(id=world.account.id)
    assert (account.auto_invoice, account.auto_send_after_hours) == ("SEND", 48)
    viewer = await gql(client, UPDATE_ACCOUNT, {"id": account_id, "input": {"isInvoiced": True}}, world.tokens["viewer"])
    assert viewer["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_the_database_keeps_one_off_items_in_order_and_described(world):
    from tortoise.exceptions import IntegrityError

    invoice = await f.invoice(world.account, await f.billing_period(world.org, SEPT))
    await InvoiceExtraLine.create(invoice=invoice, position=1, description="Fee", quantity=1, unit_price=5)
    with pytest.raises(IntegrityError):
        await InvoiceExtraLine.create(invoice=invoice, position=1, description="Again", quantity=1, unit_price=5)
    with pytest.raises(IntegrityError):
        await InvoiceExtraLine.create(invoice=invoice, position=2, description="  ", quantity=1, unit_price=5)
