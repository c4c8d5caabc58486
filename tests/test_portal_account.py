"""The portal's answers to what a customer asks next, in a real browser (tests/test_pages.py's
server, Chromium and offline rules): what it owes at the top (balance and ageing), beside each
invoice its lines as CSV and its credit notes with their PDFs, a statement of account for a
date range as PDF printed by the worker, and its usage where the MSP allows it, by keyboard,
with nothing from another origin and nothing of another customer.
Set SCREENSHOT_DIR=docs/images to refresh the manual's screenshot of the balance."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
from datetime import date
from pathlib import Path

import httpx
from strawberry.relay import to_base64

from models import CreditNote
from tests.graphql import gql
from tests.test_checks import costs
from tests.test_pages import PASSWORD, _portal, _rows, _screenshot, _sign_in, _until, browser, site, visit

__all__ = ["browser", "site", "visit"]  # the fixtures this module borrows

CREDIT = """mutation($input: CreateCreditNoteInput!) { createCreditNote(input: $input) { __typename
  ... on CreditNoteCreated { creditNote { number } } ... on UserError { message } } }"""


async def _credited(origin, world, invoice) -> str:
    variables = {
        "input": {
            "invoiceId": to_base64("Invoice", str(invoice.id)),
            "reason": "Storage billed twice",
            "mode": "AMOUNT",
            "amount": "10.25",
            "notifyCustomer": False,
        }
    }
    async with httpx.AsyncClient(base_url=origin) as http:
        done = (await gql(http, CREDIT, variables, token=world.tokens["owner"]))["data"]["createCreditNote"]
    assert done["__typename"] == "CreditNoteCreated", done
    number = done["creditNote"]["number"]

    async def printed() -> bool:
        return (await CreditNote.get(number=number)).pdf_path is not None

    await _until(printed, "the credit note's PDF", timeout=90)
    return number


def _text(pdf: bytes) -> str:
    done = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True)
    return " ".join(done.stdout.decode().replace("\xa0", " ").split())


async def _downloaded(page, click) -> tuple[str, bytes]:
    async with page.expect_download(timeout=90_000) as download:
        await click()
    file = await download.value
    return file.suggested_filename, await asyncio.to_thread(Path(await file.path()).read_bytes)


async def test_the_portal_shows_what_is_owed_the_csv_credit_notes_and_a_statement(visit, world, settings, worker):
    page, origin = visit.page, visit.origin
    made = await _portal(world, settings, origin)
    note = await _credited(origin, world, made.september)
    await _sign_in(page, origin, made.email, PASSWORD)
    await page.get_by_role("heading", name="What you owe").wait_for()

    # The balance at the top: 30.75 less 10.25 credited, overdue since 31 October 2024.
    card = page.locator(".card")
    assert await card.inner_text() == "EUR\nOpen\n€20.50\nOverdue\n€20.50\nCredit on account\n€0.00"
    ageing = await page.eval_on_selector_all("#ageing-rows tr", "rows => rows.map(r => [...r.children].map(c => c.innerText.trim()))")
    assert ageing == [["EUR", "€0.00", "€0.00", "€0.00", "€0.00", "€20.50", "€20.50"]]
    await _screenshot(page, "portal-balance.png")

    # Beside the invoice: its credit note, and its lines as CSV.
    september = (await _rows(page))[0]
    assert september[0] == "INV-2024-0007" and september[3] == "€20.50"
    assert september[7] == f"{note}: €10.25 credited on {_short(await _issue_date(note))} PDF"
    name, data = await _downloaded(page, page.get_by_role("button", name=f"Download credit note {note} as PDF").click)
    assert name == f"{note}.pdf" and "Storage billed twice" in _text(data)
    name, data = await _downloaded(page, page.get_by_role("button", name="Download the lines of INV-2024-0007 as CSV").click)
    lines = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert name == "INV-2024-0007.csv" and [line["Description"] for line in lines if line.get("Description")] == ["Compute", "Storage"]

    # The statement of account, by keyboard: the range, then Enter on the button.
    await page.get_by_label("From", exact=True).fill("2024-09-01")
    today = date.today().isoformat()
    await page.get_by_label("To", exact=True).fill(today)
    await page.get_by_role("button", name="Download statement (PDF)").focus()
    name, data = await _downloaded(page, lambda: page.keyboard.press("Enter"))
    assert name == f"statement-2024-09-01-{today}.pdf"
    text = _text(data)
    for printed in (
        "STATEMENT",
        "Opening balance",
        "Invoice INV-2024-0003",
        "Invoice INV-2024-0007",
        "Payment received",
        "Refund of a payment",
        f"Credit note {note}",
        "Closing balance",
        "25.50",
    ):
        assert printed in text, (printed, text)
    await page.get_by_text("is downloaded").wait_for()

    # No usage page unless the MSP allows it; then the customer's usage by service category.
    assert await page.locator("#usage").is_hidden()
    await costs(world, date(2024, 9, 1), [("AWS", "Amazon EC2", "1", "60", "EUR"), ("AWS", "Amazon S3", "1", "4.5", "EUR")])
    world.account.usage_visible_to_customer = True
    await world.account.save()
    await page.reload()
    await page.get_by_role("heading", name="Your usage").wait_for()
    await page.get_by_label("From month").fill("2024-08")
    await page.get_by_label("To month").fill("2024-09")
    await page.get_by_role("button", name="Show usage").click()
    await page.locator("#usage-rows tr").first.wait_for()
    usage = await page.eval_on_selector_all("#usage-rows tr", "rows => rows.map(r => [...r.children].map(c => c.innerText.trim()))")
    assert usage == [["September 2024", "Compute", "€64.50"]]
    name, data = await _downloaded(page, page.get_by_role("button", name="Download CSV").click)
    assert name == "usage-Contoso-2024-08-2024-09.csv" and b"Compute" in data

    everything = "\n".join(visit.received)
    for hidden in ("INV-2024-0011", "INV-2024-0008", "BANK-REF-INTERNAL", world.other_account.name):
        assert hidden not in everything and hidden not in await page.content()
    assert visit.foreign() == []
    assert await visit.violations() == []

    # Signing out takes what the account owes off the screen too.
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_text("You are signed out.").wait_for()
    assert await page.locator(".card").count() == 0 and await page.locator("#balance").is_hidden()


async def _issue_date(number: str) -> date:
    return (await CreditNote.get(number=number)).issue_date


def _short(day: date) -> str:
    """A date as the page writes it in en-GB: 7 Dec 2026 (September as Sept)."""
    month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sept", "Oct", "Nov", "Dec"][day.month - 1]
    return f"{day.day} {month} {day.year}"
