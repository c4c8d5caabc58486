"""The month-end console's work on one invoice, in a real browser (tests/test_pages.py's
server and Chromium, every host name unresolvable), on the demo's September: an owner issues
credit notes on an approved invoice by an amount and by part of a line, is told in the API's
words when an amount is more than is left to credit (nothing is written), and a viewer's
session sees each credit note arrive live, with no control of its own; the credit notes are
listed with their PDFs, each downloaded through a fresh signed link. The costs behind a line
of more than 50 records are read page by page to the end, by keyboard, with their count,
through `Invoice.lineItem(position:)`, which MSP users page and no one else reads."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

from infra import storage
from models import CostRecord, CreditNote, CreditNoteLine, Invoice, InvoiceLineItem
from models.credit_notes.delivery import record_pdf
from tests import factories as f
from tests.graphql import gql
from tests.test_checks import costs, generated
from tests.test_console import LOGIN, SEPT, _approval, _gid, _month, _september, _sign_in, _table
from tests.test_corrections import gid
from tests.test_pages import WATCH_POLICY, _until, browser, site, visit

__all__ = ["browser", "site", "visit"]  # the fixtures this module borrows

CODES = [
    "TOTAL_CHANGED",
    "SERVICE_CHANGED",
    "NEW_SERVICE",
    "SERVICE_GONE",
    "NO_DATA",
    "ZERO_TOTAL",
    "NEGATIVE_TOTAL",
    "RATE_CHANGED",
    "STALE_REVISION",
    "INCOMPLETE_DATA",
]
APPROVE = """mutation($ids: [ID!]!, $codes: [InvoiceCheckCode!]) { approveInvoices(ids: $ids, acknowledge: $codes,
  notifyCustomer: false) { ... on InvoiceActionResults { succeeded results { error { message } } } } }"""


async def _approved(origin: str, users: dict, invoice: Invoice) -> Invoice:
    async with httpx.AsyncClient(base_url=origin) as http:
        token = (await gql(http, LOGIN, dict(zip(("email", "password"), users["owner"]))))["data"]["login"]["token"]
        answer = await gql(http, APPROVE, {"ids": [_gid(invoice)], "codes": CODES}, token=token)
    assert answer["data"]["approveInvoices"]["succeeded"] == 1, answer
    return await Invoice.get(id=invoice.id)


async def _open(page, invoice: Invoice, status: str) -> None:
    await _approval(page)
    await page.get_by_label("Status", exact=True).select_option(status)
    await page.locator("#approval[data-ready]").wait_for()
    await page.get_by_role("button", name=f"Open {invoice.number} ·", exact=False).click()
    await page.locator("#detail-title").get_by_text(invoice.number).wait_for()


async def _second_session(browser, origin: str, users: dict, role: str):
    context = await browser.new_context(
        viewport={"width": 1200, "height": 720}, locale="en-GB", timezone_id="Europe/London", service_workers="block"
    )
    await context.add_init_script(WATCH_POLICY)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    await _sign_in(page, origin, *users[role])
    await _september(page)
    await page.get_by_text("Live updates on").wait_for()
    return context, page


async def test_an_owner_credits_by_amount_and_by_line_refused_above_what_is_left_and_a_viewer_sees_it_live(
    visit,
    browser,
    settings,
):
    page, origin = visit.page, visit.origin
    made = await _month()
    invoice = await _approved(origin, made.users, made.demo[-1])
    creditable = (
        await InvoiceLineItem.filter(revision_id=invoice.current_revision_id, kind__in=["USAGE", "RULE"], amount__gt=0)
        .order_by("position")
        .first()
    )
    assert invoice.status == "APPROVED" and creditable is not None

    viewer, watching = await _second_session(browser, origin, made.users, "viewer")
    try:
        await _open(watching, invoice, "APPROVED")
        # A viewer reads the invoice's credit notes, and gets no control over them.
        assert await watching.locator("#detail-credit-notes").inner_text() == "No credit note."
        assert await watching.locator("#detail-actions").get_by_role("button", name="Credit note…").count() == 0

        await _sign_in(page, origin, *made.users["owner"])
        await _september(page)
        await page.get_by_text("Live updates on").wait_for()
        await _open(page, invoice, "APPROVED")
        await page.get_by_role("button", name="Credit note…").click()
        form = page.locator("form.credit")
        assert await page.evaluate("document.activeElement.value") == "FULL"

        # More than is left to credit: the API's typed refusal, its maximum, nothing written.
        await form.get_by_label("An amount, taxes included").check()
        await form.get_by_label("Amount to credit", exact=False).fill(str(invoice.total + Decimal("1.00")))
        await form.get_by_label("Reason", exact=False).fill("Goodwill for the outage")
        await form.get_by_label("E-mail the credit note to the customer").uncheck()
        await form.get_by_role("button", name="Issue credit note").click()
        problem = form.get_by_role("alert")
        await problem.get_by_text("left to credit", exact=False).wait_for()
        assert f"The most that may be credited now: US${invoice.total:,.2f}." in await problem.inner_text()
        assert await page.evaluate("document.activeElement.id") == "credit-amount"
        assert await CreditNote.filter(invoice_id=invoice.id).count() == 0

        # By an amount.
        await form.get_by_label("Amount to credit", exact=False).fill("10.00")
        await form.get_by_role("button", name="Issue credit note").click()
        await page.locator("#message").get_by_text("issued for US$10.00", exact=False).wait_for()
        first = await CreditNote.get(invoice_id=invoice.id)
        assert (first.mode, first.total, first.reason) == ("AMOUNT", Decimal("10.00"), "Goodwill for the outage")
        assert await form.count() == 0

        # Once the invoice is read again, the focus is on its credit notes, the new one listed.
        async def on_credit_notes() -> bool:
            return await page.evaluate("document.activeElement.id") == "credit-notes-title"

        await _until(on_credit_notes, "the focus on the credit notes")
        assert first.number in await page.locator("#detail-credit-notes").inner_text()
        # The viewer's session, without a reload.
        await watching.locator("#detail-credit-notes li", has_text=first.number).wait_for()

        # By part of a line: its taxes and charges follow.
        await page.get_by_role("button", name="Credit note…").click()
        await form.get_by_label("Chosen lines, whole or in part").check()
        await form.get_by_label(f"Line {creditable.position}: ", exact=False).check()
        await form.get_by_label(f"Part of line {creditable.position} to credit", exact=False).fill("5.00")
        await form.get_by_label("Reason", exact=False).fill("Storage billed twice")
        await form.get_by_label("E-mail the credit note to the customer").uncheck()
        await form.get_by_role("button", name="Issue credit note").click()
        second = None
        for _ in range(200):
            second = await CreditNote.filter(invoice_id=invoice.id, mode="LINES").first()
            if second:
                break
            await asyncio.sleep(0.1)
        assert second is not None
        credited = await CreditNoteLine.get(credit_note_id=second.id, invoice_line_position=creditable.position)
        assert credited.amount == Decimal("5.00")
        await page.locator("#detail-credit-notes li", has_text=second.number).wait_for()
        await watching.locator("#detail-credit-notes li", has_text=second.number).wait_for()
        listed = await page.locator("#detail-credit-notes li").all_inner_texts()
        assert [item.split(" · ")[0] for item in listed] == [first.number, second.number]
        assert "US$10.00 credited by an amount · Goodwill for the outage" in listed[0]
        assert "credited by lines · Storage billed twice" in listed[1]
        assert await watching.locator("#detail-actions").get_by_role("button", name="Credit note…").count() == 0
        assert await watching.locator("form.credit").count() == 0

        # Each PDF through a fresh signed link; before the worker prints one, the page says so.
        await page.get_by_role("button", name=f"Download credit note {second.number} as PDF").click()
        await page.locator("#message").get_by_text("is not available yet", exact=False).wait_for()
        pdf = b"%PDF-1.7\n% credit note " + first.number.encode() + b"\n%%EOF\n"
        path = f"credit_notes/{first.organization_id}/{first.number}-test.pdf"
        storage.save(settings, path, pdf)
        assert await record_pdf(first.id, path, hashlib.sha256(pdf).hexdigest(), len(pdf))
        async with page.expect_download() as download:
            await page.get_by_role("button", name=f"Download credit note {first.number} as PDF").click()
        saved = await download.value
        assert saved.suggested_filename == f"{first.number}.pdf"
        assert await asyncio.to_thread(Path(await saved.path()).read_bytes) == pdf
        assert await watching.evaluate("window.__violations || []") == []
    finally:
        await viewer.close()
    assert visit.foreign() == [] and await visit.violations() == []


async def test_the_costs_behind_a_line_of_more_than_fifty_records_page_to_the_end_by_keyboard(visit):
    page, origin = visit.page, visit.origin
    made = await _month()
    invoice = made.demo[-1]
    line = await InvoiceLineItem.filter(revision_id=invoice.current_revision_id, kind="USAGE").order_by("position").first()
    same = CostRecord.filter(
        managed_account_id=invoice.managed_account_id,
        billing_month=SEPT,
        provider_name=line.provider_name,
        service_name=line.service_name,
        service_category=line.service_category,
    )
    row = await same.first().values()
    row.pop("id")
    await CostRecord.bulk_create([CostRecord(**{**row, "fingerprint": f"drill-{n:04d}", "resource_id": f"vm-{n:04d}"}) for n in range(120)])
    await f.summed_costs(invoice.organization_id)
    total = await same.count()
    assert total > 120

    await _sign_in(page, origin, *made.users["owner"])
    await _september(page)
    await _open(page, invoice, "AWAITING_APPROVAL")
    await page.get_by_role("button", name=f"Costs behind line {line.position}:", exact=False).click()
    await page.locator("#drill-title").get_by_text(f"({total} records)", exact=False).wait_for()
    count = page.locator("#drill-count")
    assert await count.inner_text() == f"50 of {total} records shown"
    more = page.locator("#drill-more")
    assert await more.inner_text() == "Show the next 50"
    shown = 50
    while shown < total:
        await more.focus()
        await page.keyboard.press("Enter")
        before, shown = shown, min(shown + 50, total)
        await count.get_by_text(f"{shown} of {total} records", exact=False).wait_for()
        # The first row read has the focus, and Tab reaches the button again while more remain.
        focused = await page.evaluate("[...document.querySelectorAll('#drill-rows tr')].indexOf(document.activeElement.parentElement)")
        assert focused == before
        if shown < total:
            left = total - shown
            assert await more.inner_text() == (f"Show the last {left}" if left <= 50 else "Show the next 50")
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.id") == "drill-more"
    assert await count.inner_text() == f"{total} of {total} records shown: all of them"
    assert await more.is_hidden()
    rows = await _table(page, "drill-rows")
    assert len(rows) == total and len({r[2] for r in rows if r[2].startswith("vm-")}) == 120
    assert visit.foreign() == [] and await visit.violations() == []


LINE = """query($id: ID!, $p: Int!, $after: String) { node(id: $id) { ... on Invoice { lineItem(position: $p) {
  position description costs(first: 2, after: $after) { totalCount pageInfo { hasNextPage endCursor }
  edges { node { id billedCost } } } } } } }"""


async def test_one_lines_costs_are_paged_by_their_cursor_for_msp_users_only(client, world):
    await costs(
        world,
        SEPT,
        [
            ("AWS", "Amazon EC2", "1", "60"),
            ("AWS", "Amazon EC2", "2", "40"),
            ("AWS", "Amazon EC2", "3", "5"),
            ("AWS", "Amazon S3", "1", "10"),
        ],
    )
    await f.summed_costs(world.org.id)
    invoice = await generated(world, SEPT)
    ec2 = await InvoiceLineItem.get(revision_id=invoice.current_revision_id, service_name="Amazon EC2")
    asked = {"id": gid(invoice), "p": ec2.position}
    for role in ("owner", "viewer"):
        first = (await gql(client, LINE, asked, world.tokens[role]))["data"]["node"]["lineItem"]
        assert first["position"] == ec2.position and first["costs"]["totalCount"] == 3
        assert len(first["costs"]["edges"]) == 2 and first["costs"]["pageInfo"]["hasNextPage"] is True
        after = first["costs"]["pageInfo"]["endCursor"]
        rest = (await gql(client, LINE, {**asked, "after": after}, world.tokens[role]))["data"]["node"]["lineItem"]["costs"]
        assert rest["pageInfo"]["hasNextPage"] is False and len(rest["edges"]) == 1
        read = [e["node"] for e in first["costs"]["edges"] + rest["edges"]]
        assert len({c["id"] for c in read}) == 3 and sorted(Decimal(c["billedCost"]) for c in read) == [5, 40, 60]
    missing = await gql(client, LINE, {**asked, "p": 99}, world.tokens["owner"])
    assert missing["data"]["node"]["lineItem"] is None

    # A customer reads its approved invoice's line, never the costs behind it; no one else the line.
    await Invoice.filter(id=invoice.id).update(status="APPROVED", approved_at=datetime.now(UTC))
    customer = await gql(client, LINE, asked, world.tokens["customer"])
    assert [e["extensions"]["code"] for e in customer["errors"]] == ["FORBIDDEN"]
    line_only = """query($id: ID!, $p: Int!) { node(id: $id) { ... on Invoice { lineItem(position: $p) { description } } } }"""
    seen = await gql(client, line_only, asked, world.tokens["customer"])
    assert seen["data"]["node"]["lineItem"]["description"] == ec2.description
    for role in ("other_customer", "foreign_owner"):
        assert (await gql(client, LINE, asked, world.tokens[role]))["data"]["node"] is None
