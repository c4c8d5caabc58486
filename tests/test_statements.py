"""What a managed account owes: the balance (open, overdue, account credit), the ageing of what
is owed at each bucket's boundary days, and the statement of account (opening and closing
balance to the cent, every line, several currencies) in the domain and over GraphQL, for each
scope and another organization; the statement printed as PDF by the worker in the account's
language and downloaded through its signed link; the invoice e-mail's link to the portal."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from strawberry.relay import to_base64

from infra import links
from models import Invoice, Organization
from models.invoices import LineKind
from models.invoices.queries import organization_today
from models.statements import EntryKind, ageings, balances, bucket, statement
from tests.graphql import gql
from tests.test_credit_notes import approved

CREATE_NOTE = """mutation($input: CreateCreditNoteInput!) { createCreditNote(input: $input) { __typename
  ... on CreditNoteCreated { creditNote { id number } } ... on UserError { code message } } }"""
PAY = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) { __typename
  ... on PaymentRecorded { payment { id } } ... on UserError { code message } } }"""
REFUND = """mutation($input: RefundPaymentInput!) { refundPayment(input: $input) { __typename
  ... on UserError { code message } } }"""
REFUND_CREDIT = """mutation($input: RefundCreditInput!) { refundCredit(input: $input) { __typename
  ... on UserError { code message } } }"""
VOID = """mutation($ids: [ID!]!) { voidInvoices(ids: $ids, reason: "Wrong month", notifyCustomer: false) { __typename } }"""
OWED = """query($id: ID!, $from: Date!, $to: Date!) { node(id: $id) { ... on ManagedAccount {
  balance { currency open overdue credit net }
  ageing { currency current days1To30 days31To60 days61To90 over90Days total }
  statement(from: $from, to: $to) { from to currencies { currency openingBalance closingBalance
    entries { date kind reference invoiceNumber amount balance } } } } } }"""
LISTED = """query($from: Date!, $to: Date!) { managedAccounts(first: 10) { edges { node { name
  balance { currency open } statement(from: $from, to: $to) { currencies { closingBalance } } } } } }"""
PRINT = """mutation($id: ID!, $from: Date!, $to: Date!) { printStatement(accountId: $id, from: $from, to: $to) {
  __typename ... on StatementPrinting { ready statement { currencies { currency closingBalance } } }
  ... on UserError { code field message } } }"""
LINK = """query($id: ID!, $from: Date!, $to: Date!) { node(id: $id) { ... on ManagedAccount {
  statement(from: $from, to: $to) { pdfUrl } } } }"""


def gid(kind: str, row) -> str:
    return to_base64(kind, str(row.id))


def usage(amount: str) -> list:
    return [(LineKind.USAGE, "Cloud usage", Decimal(amount))]


async def today_of(world) -> date:
    return organization_today((await Organization.get(id=world.org.id)).timezone)


async def issued(account, number: str, amount: str, *, due: date, month: date, currency: str | None = None) -> Invoice:
    """An approved invoice of `amount`, issued 30 days before `due`, in `currency` (else the account's)."""
    kept = account.currency
    account.currency = currency or kept  # the invoice takes the account's currency when it is made
    try:
        return await approved(account, number, month=month, lines=usage(amount), issue_date=due - timedelta(days=30))
    finally:
        account.currency = kept


async def ok(client, world, query: str, variables: dict, name: str, typename: str, role: str = "owner") -> dict:
    answer = await gql(client, query, variables, token=world.tokens[role])
    assert answer["data"][name]["__typename"] == typename, answer
    return answer["data"][name]


# --- Ageing and balance -----------------------------------------------------------------------


def test_each_day_past_due_falls_in_its_bucket():
    assert [bucket(days) for days in (-5, 0, 1, 30, 31, 60, 61, 90, 91, 400)] == [
        "current",
        "current",
        "days_1_30",
        "days_1_30",
        "days_31_60",
        "days_31_60",
        "days_61_90",
        "days_61_90",
        "over_90",
        "over_90",
    ]


async def test_ageing_puts_what_is_owed_in_its_bucket_on_the_boundary_days(client, world):
    today = await today_of(world)
    # (days past due, amount): each boundary day on both sides.
    cases = [
        (0, "1.00"),
        (1, "2.00"),
        (30, "4.00"),
        (31, "8.00"),
        (60, "16.00"),
        (61, "32.00"),
        (90, "64.00"),
        (91, "128.00"),
        (-3, "0.50"),
    ]
    for index, (late, amount) in enumerate(cases):
        await issued(world.account, f"INV-A-{index}", amount, due=today - timedelta(days=late), month=date(2023, index + 1, 1))
    # Partly paid: only what is still owed ages; another account's invoice is not counted.
    paid = await issued(world.account, "INV-A-PAID", "100.00", due=today - timedelta(days=45), month=date(2022, 1, 1))
    await ok(
        client,
        world,
        PAY,
        {"input": {"invoiceId": gid("Invoice", paid), "amount": "99.01", "paidOn": today.isoformat(), "method": "CARD"}},
        "recordPayment",
        "PaymentRecorded",
    )
    await issued(world.other_account, "INV-OTHER", "1000.00", due=today - timedelta(days=100), month=date(2023, 1, 1))

    [ageing] = await ageings(world.account, today)
    assert (ageing.current, ageing.days_1_30, ageing.days_31_60, ageing.days_61_90, ageing.over_90) == (
        Decimal("1.50"),
        Decimal("6.00"),
        Decimal("24.99"),
        Decimal("96.00"),
        Decimal("128.00"),
    )
    [balance] = await balances(world.account, today)
    assert balance.open == ageing.total == Decimal("256.49")
    assert balance.overdue == Decimal("254.99")  # all but what is due today or later
    assert balance.credit == Decimal("0.00")

    # The same over GraphQL, for the account's customer.
    answer = await gql(
        client,
        OWED,
        {"id": gid("ManagedAccount", world.account), "from": "2020-01-01", "to": today.isoformat()},
        token=world.tokens["customer"],
    )
    node = answer["data"]["node"]
    assert node["ageing"] == [
        {
            "currency": "USD",
            "current": "1.50",
            "days1To30": "6.00",
            "days31To60": "24.99",
            "days61To90": "96.00",
            "over90Days": "128.00",
            "total": "256.49",
        }
    ]
    assert node["balance"] == [{"currency": "USD", "open": "256.49", "overdue": "254.99", "credit": "0.00", "net": "256.49"}]


async def test_account_credit_is_what_credit_notes_hold_beyond_what_their_invoice_owed(client, world):
    today = await today_of(world)
    invoice = await issued(world.account, "INV-C-1", "100.00", due=today + timedelta(days=10), month=date(2024, 1, 1))
    await ok(
        client,
        world,
        PAY,
        {"input": {"invoiceId": gid("Invoice", invoice), "amount": "100.00", "paidOn": today.isoformat(), "method": "CARD"}},
        "recordPayment",
        "PaymentRecorded",
    )
    note = (
        await ok(
            client,
            world,
            CREATE_NOTE,
            {
                "input": {
                    "invoiceId": gid("Invoice", invoice),
                    "reason": "Billed twice",
                    "mode": "AMOUNT",
                    "amount": "30.00",
                    "notifyCustomer": False,
                }
            },
            "createCreditNote",
            "CreditNoteCreated",
        )
    )["creditNote"]
    [balance] = await balances(world.account, today)
    assert (balance.open, balance.overdue, balance.credit, balance.net) == (
        Decimal("0.00"),
        Decimal("0.00"),
        Decimal("30.00"),
        Decimal("-30.00"),
    )
    assert await ageings(world.account, today) == []  # nothing is owed

    await ok(
        client,
        world,
        REFUND_CREDIT,
        {"input": {"creditNoteId": note["id"], "amount": "10.00", "refundedOn": today.isoformat(), "notifyCustomer": False}},
        "refundCredit",
        "CreditRefunded",
    )
    [balance] = await balances(world.account, today)
    assert balance.credit == Decimal("20.00")
    # The statement's closing balance is what the balance says: credit is negative.
    found = await statement(world.account, today - timedelta(days=60), today)
    [usd] = found.currencies
    assert [(e.kind, e.amount) for e in usd.entries] == [
        (EntryKind.INVOICE, Decimal("100.00")),
        (EntryKind.CREDIT_NOTE, Decimal("-30.00")),
        (EntryKind.PAYMENT, Decimal("-100.00")),
        (EntryKind.CREDIT_REFUND, Decimal("10.00")),
    ]
    assert usd.closing == balance.net == Decimal("-20.00")


# --- The statement ----------------------------------------------------------------------------


async def _two_currencies(client, world, today: date) -> None:
    """EUR: 1000.00 issued 100 days ago, 400.00 paid 60 days ago, 250.55 issued 40 days ago,
    100.00 of the payment refunded 5 days ago, 50.55 credited today; USD: 99.99 issued 20 days
    ago and paid 2 days ago; a voided EUR invoice of 70.00 issued 30 days ago."""
    world.account.currency = "EUR"
    await world.account.save()
    first = await issued(world.account, "INV-S-1", "1000.00", due=today - timedelta(days=70), month=date(2024, 1, 1))
    payment = (
        await ok(
            client,
            world,
            PAY,
            {
                "input": {
                    "invoiceId": gid("Invoice", first),
                    "amount": "400.00",
                    "paidOn": (today - timedelta(days=60)).isoformat(),
                    "method": "BANK_TRANSFER",
                }
            },
            "recordPayment",
            "PaymentRecorded",
        )
    )["payment"]
    second = await issued(world.account, "INV-S-2", "250.55", due=today - timedelta(days=10), month=date(2024, 2, 1))
    await ok(
        client,
        world,
        REFUND,
        {
            "input": {
                "paymentId": payment["id"],
                "amount": "100.00",
                "refundedOn": (today - timedelta(days=5)).isoformat(),
                "notifyCustomer": False,
            }
        },
        "refundPayment",
        "PaymentRefunded",
    )
    await ok(
        client,
        world,
        CREATE_NOTE,
        {
            "input": {
                "invoiceId": gid("Invoice", second),
                "reason": "Discount agreed",
                "mode": "AMOUNT",
                "amount": "50.55",
                "notifyCustomer": False,
            }
        },
        "createCreditNote",
        "CreditNoteCreated",
    )
    dollars = await issued(world.account, "INV-S-3", "99.99", due=today + timedelta(days=10), month=date(2024, 3, 1), currency="USD")
    await ok(
        client,
        world,
        PAY,
        {
            "input": {
                "invoiceId": gid("Invoice", dollars),
                "amount": "99.99",
                "paidOn": (today - timedelta(days=2)).isoformat(),
                "method": "CARD",
            }
        },
        "recordPayment",
        "PaymentRecorded",
    )
    voided = await issued(world.account, "INV-S-4", "70.00", due=today, month=date(2024, 4, 1))
    await gql(client, VOID, {"ids": [gid("Invoice", voided)]}, token=world.tokens["owner"])
    # Never the customer's: a draft, and another account's invoice.
    await approved(world.account, "INV-S-DRAFT", month=date(2024, 5, 1), lines=usage("5.00"), status="AWAITING_APPROVAL")
    await issued(world.other_account, "INV-S-OTHER", "333.00", due=today, month=date(2024, 1, 1))


async def test_a_statement_carries_its_opening_balance_each_line_and_its_closing_balance_per_currency(client, world):
    today = await today_of(world)
    await _two_currencies(client, world, today)
    variables = {"id": gid("ManagedAccount", world.account), "from": (today - timedelta(days=50)).isoformat(), "to": today.isoformat()}
    answer = await gql(client, OWED, variables, token=world.tokens["customer"])
    eur, usd = answer["data"]["node"]["statement"]["currencies"]
    day = lambda n: (today - timedelta(days=n)).isoformat()  # noqa: E731
    assert eur == {
        "currency": "EUR",
        "openingBalance": "600.00",
        "closingBalance": "900.00",
        "entries": [
            {
                "date": day(40),
                "kind": "INVOICE",
                "reference": "INV-S-2",
                "invoiceNumber": "INV-S-2",
                "amount": "250.55",
                "balance": "850.55",
            },
            {
                "date": day(30),
                "kind": "INVOICE",
                "reference": "INV-S-4",
                "invoiceNumber": "INV-S-4",
                "amount": "70.00",
                "balance": "920.55",
            },
            {
                "date": day(5),
                "kind": "REFUND",
                "reference": "INV-S-1",
                "invoiceNumber": "INV-S-1",
                "amount": "100.00",
                "balance": "1020.55",
            },
            {
                "date": day(0),
                "kind": "CREDIT_NOTE",
                "reference": eur["entries"][3]["reference"],
                "invoiceNumber": "INV-S-2",
                "amount": "-50.55",
                "balance": "970.00",
            },
            {"date": day(0), "kind": "VOID", "reference": "INV-S-4", "invoiceNumber": "INV-S-4", "amount": "-70.00", "balance": "900.00"},
        ],
    }
    assert eur["entries"][3]["reference"].startswith("CN-")
    assert usd == {
        "currency": "USD",
        "openingBalance": "0.00",
        "closingBalance": "0.00",
        "entries": [
            {"date": day(20), "kind": "INVOICE", "reference": "INV-S-3", "invoiceNumber": "INV-S-3", "amount": "99.99", "balance": "99.99"},
            {"date": day(2), "kind": "PAYMENT", "reference": "INV-S-3", "invoiceNumber": "INV-S-3", "amount": "-99.99", "balance": "0.00"},
        ],
    }
    # A range before anything happened has no currency; one in between opens where the last closed.
    earlier = await statement(world.account, today - timedelta(days=400), today - timedelta(days=101))
    assert earlier.currencies == []
    middle = await statement(world.account, today - timedelta(days=59), today - timedelta(days=41))
    [quiet] = middle.currencies
    assert (quiet.currency, quiet.opening, quiet.entries, quiet.closing) == ("EUR", Decimal("600.00"), [], Decimal("600.00"))
    # What the balance says is owed: the refund of a payment does not reopen its invoice.
    eur_balance, usd_balance = await balances(world.account, today)
    assert (eur_balance.open, eur_balance.overdue) == (Decimal("800.00"), Decimal("800.00"))
    assert (usd_balance.open, usd_balance.credit) == (Decimal("0.00"), Decimal("0.00"))


async def test_a_range_that_ends_before_it_starts_or_is_too_long_is_refused(client, world):
    variables = {"id": gid("ManagedAccount", world.account), "from": "2024-05-01", "to": "2024-04-30"}
    answer = await gql(client, OWED, variables, token=world.tokens["owner"])
    assert answer["data"]["node"] is None
    assert answer["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "to"}
    printed = await ok(client, world, PRINT, {**variables, "from": "2010-01-01", "to": "2024-04-30"}, "printStatement", "ValidationError")
    assert printed["field"] == "from"


# --- Scopes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role,sees", [("owner", True), ("viewer", True), ("customer", True), ("other_customer", False), ("foreign_owner", False)]
)
async def test_each_scope_reads_what_an_account_owes_only_where_it_may(client, world, role, sees):
    today = await today_of(world)
    await issued(world.account, "INV-R-1", "12.34", due=today - timedelta(days=3), month=date(2024, 1, 1))
    variables = {"id": gid("ManagedAccount", world.account), "from": "2020-01-01", "to": today.isoformat()}
    node = (await gql(client, OWED, variables, token=world.tokens[role]))["data"]["node"]
    if sees:
        assert node["balance"] == [{"currency": "USD", "open": "12.34", "overdue": "12.34", "credit": "0.00", "net": "12.34"}]
        assert node["statement"]["currencies"][0]["closingBalance"] == "12.34"
    else:
        assert node is None
    # In the list: MSP users see each of their accounts; a customer only its own; another
    # organization none of these.
    listed = (await gql(client, LISTED, {"from": "2020-01-01", "to": today.isoformat()}, token=world.tokens[role]))["data"][
        "managedAccounts"
    ]["edges"]
    names = {edge["node"]["name"]: edge["node"] for edge in listed}
    expected = {
        "owner": {"Contoso", "Tailspin"},
        "viewer": {"Contoso", "Tailspin"},
        "customer": {"Contoso"},
        "other_customer": {"Tailspin"},
        "foreign_owner": {"Litware"},
    }[role]
    assert set(names) == expected
    if "Tailspin" in names:
        assert names["Tailspin"]["balance"] == [] and names["Tailspin"]["statement"]["currencies"] == []
    # Printing: the same rule; the others are told there is no such account, and nothing is queued.
    printed = (await gql(client, PRINT, variables, token=world.tokens[role]))["data"]["printStatement"]
    if sees:
        assert printed["__typename"] == "StatementPrinting" and printed["ready"] is False
        assert printed["statement"]["currencies"] == [{"currency": "USD", "closingBalance": "12.34"}]
    else:
        assert (printed["__typename"], printed["code"], printed["field"]) == ("NotFoundError", "NOT_FOUND", "accountId")


async def test_nobody_signed_in_reads_or_prints_nothing(client, world):
    variables = {"id": gid("ManagedAccount", world.account), "from": "2024-01-01", "to": "2024-02-01"}
    for query in (OWED, PRINT):
        answer = await gql(client, query, variables)
        assert answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# --- The PDF ----------------------------------------------------------------------------------


def _text(pdf: bytes) -> str:
    done = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True)
    return " ".join(done.stdout.decode().replace("\u202f", " ").replace("\xa0", " ").split())


async def _link(client, world, variables, role="customer", timeout=90.0) -> str:
    for _ in range(int(timeout / 0.2)):
        node = (await gql(client, LINK, variables, token=world.tokens[role]))["data"]["node"]
        if node["statement"]["pdfUrl"]:
            return node["statement"]["pdfUrl"]
        await asyncio.sleep(0.2)
    raise AssertionError("the statement was not printed")


async def test_the_statement_is_printed_in_the_accounts_language_and_downloaded_by_its_customer(
    client, world, worker, settings, monkeypatch
):
    today = await today_of(world)
    await _two_currencies(client, world, today)
    world.account.locale = "de"
    world.account.official_company_name = "Contoso GmbH"
    await world.account.save()
    variables = {"id": gid("ManagedAccount", world.account), "from": (today - timedelta(days=50)).isoformat(), "to": today.isoformat()}
    await ok(client, world, PRINT, variables, "printStatement", "StatementPrinting", role="customer")
    url = await _link(client, world, variables)
    response = await client.get(urlsplit(url).path)
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    text = _text(response.content)
    for printed in (
        "KONTOAUSZUG",
        "Contoso GmbH",
        "Anfangssaldo",
        "Endsaldo",
        "Rechnung INV-S-2",
        "Zahlung erhalten",
        "Erstattung einer Zahlung",
        "Rechnung storniert",
        "600,00",
        "250,55",
        "1.020,55",
        "-50,55",
        "900,00",
        "99,99",
        "Seite 1 von 1",
    ):
        assert printed in text, (printed, text)
    for never in ("INV-S-DRAFT", "INV-S-OTHER", "333,00"):
        assert never not in text
    # Printed once: asking again answers ready, with the same file.
    again = await ok(client, world, PRINT, variables, "printStatement", "StatementPrinting", role="owner")
    assert again["ready"] is True
    assert (await client.get(urlsplit(await _link(client, world, variables, "owner")).path)).content == response.content
    # Kept a day, then purged with the expired exports; asked again, it is printed again.
    links.purge_exports(settings)
    assert (await gql(client, LINK, variables, token=world.tokens["owner"]))["data"]["node"]["statement"]["pdfUrl"] is not None
    later = datetime.now(UTC) + timedelta(days=2)
    monkeypatch.setattr(links, "clock", lambda: later)
    links.purge_exports(settings)
    monkeypatch.undo()
    assert (await gql(client, LINK, variables, token=world.tokens["owner"]))["data"]["node"]["statement"]["pdfUrl"] is None
    assert (await ok(client, world, PRINT, variables, "printStatement", "StatementPrinting"))["ready"] is False
    await _link(client, world, variables, "owner")
    # The link is the customer's: once the customer belongs to another account it serves nothing.
    world.users["customer"].managed_account_id = world.other_account.id
    await world.users["customer"].save()
    assert (await client.get(urlsplit(url).path)).status_code == 404


async def test_the_invoice_email_links_to_the_portal():
    from jobs.mailer import render_invoice_email

    context = {
        "msp_company_name": "Northwind",
        "customer_name": "Contoso",
        "number": "INV-2024-0001",
        "period_label": "September 2024",
        "total": "10.00",
        "currency": "EUR",
        "due_date": "2024-10-31",
        "payment_terms_days": 30,
        "locale": "de",
        "portal_url": "https://billing.example/portal",
    }
    _, text, html = render_invoice_email(context)
    assert "Ihr Kundenportal zeigt diese Rechnung" in text and "https://billing.example/portal" in text
    assert 'href="https://billing.example/portal"' in html
    _, text, _ = render_invoice_email({**context, "locale": "en", "portal_url": ""})
    assert "portal" not in text
