"""Credit notes: what they credit (full, by lines, by amount, taxes in proportion), the typed
errors that write nothing, the gapless series under concurrency, the invoice's amount due and
payment status, account credit refunded or applied to the next invoice, the scope of every
query and mutation, the database's guards and the Xero and detailed export files."""

from __future__ import annotations

import asyncio
import csv
import io
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from strawberry.relay import to_base64
from tortoise import connections

from jobs.overdue import mark_overdue_invoices
from models import (
    BillingPeriod,
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceEvent,
    InvoiceLineItem,
    InvoiceRevision,
    Payment,
)
from models.credit_notes import amounts
from models.credit_notes.exports import XERO_CREDIT_NOTE_COLUMNS
from models.credit_notes.tables import CreditMode
from models.currencies import round_money
from models.errors import CreditExceeded, ValidationFailed
from models.invoices import LineKind
from tests import factories as f
from tests.graphql import error_codes, gql
from tests.guards import refused_by

ROLES = ["owner", "viewer", "customer", "other_customer", "foreign_owner"]


async def issued_year() -> int:
    """The year of the first credit note's issue date, which its number counts in: the
    organization's today when it was issued, which a run crossing New Year does not share
    with the moment the tests were loaded."""
    first = await CreditNote.all().order_by("created_at").first()
    assert first is not None, "a credit note has been issued"
    return first.issue_date.year
# (kind, description, amount): subtotal 140.00, charges 43.00, total 183.00.
LINES = [
    (LineKind.USAGE, "AWS Amazon EC2", Decimal("100.00")),
    (LineKind.USAGE, "Azure Storage", Decimal("50.00")),
    (LineKind.RULE, "Discount: Loyalty", Decimal("-10.00")),
    (LineKind.CHARGE, "Support plan", Decimal("15.00")),
    (LineKind.TAX, "VAT (20%)", Decimal("28.00")),
]

CREATE = """mutation($input: CreateCreditNoteInput!) { createCreditNote(input: $input) { __typename
  ... on CreditNoteCreated { creditNote { id number issueDate reason mode currency subtotal taxTotal charges total
      allocated remainingCredit status deliveryStatus createdBy
      lines { position kind description invoiceLinePosition amount } invoice { number } account { name } }
    invoice { amountCredited amountDue paymentStatus } }
  ... on CreditExceededError { maximum }
  ... on UserError { code field message } } }"""
APPLY = """mutation($input: ApplyCreditInput!) { applyCredit(input: $input) { __typename
  ... on CreditApplied { creditNote { remainingCredit amountApplied status }
    invoice { number amountDue creditApplied paymentStatus } }
  ... on CreditExceededError { maximum }
  ... on AmountExceededError { maximum }
  ... on UserError { code field message } } }"""
REFUND = """mutation($input: RefundCreditInput!) { refundCredit(input: $input) { __typename
  ... on CreditRefunded { creditNote { remainingCredit amountRefunded uses { kind amount usedOn reference } } }
  ... on CreditExceededError { maximum }
  ... on UserError { code field message } } }"""
PAY = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) { __typename
  ... on PaymentRecorded { invoice { amountDue paymentStatus } }
  ... on AmountExceededError { maximum }
  ... on UserError { code } } }"""
LIST = """query($filter: CreditNoteFilter) { creditNotes(first: 50, filter: $filter) { totalCount
  edges { node { number invoice { number } } } } }"""
NODE = """query($id: ID!) { node(id: $id) { ... on CreditNote { number total } } }"""
OF_INVOICE = """query($n: String!) { invoice(number: $n) { creditNotes { number total } } }"""
TIMELINE = """query($n: String!) { invoice(number: $n) { timeline { kind detail } } }"""


def gid(kind, row):
    return to_base64(kind, str(row.id))


async def approved(account, number, month=date(2024, 9, 1), lines=LINES, status="APPROVED",
                   issue_date=None, snapshot=None):
    """An approved invoice with `lines` (its totals add them up), issued five days ago."""
    organization = await account.organization
    period = await BillingPeriod.get_or_none(organization_id=organization.id, start_date=month)
    period = period or await f.billing_period(organization, month)
    invoice = await f.invoice(account, period, number=number)
    subtotal = sum((a for k, _, a in lines if k in (LineKind.USAGE, LineKind.RULE)), Decimal(0))
    charges = sum((a for k, _, a in lines if k in (LineKind.CHARGE, LineKind.TAX)), Decimal(0))
    issue_date = issue_date or date.today() - timedelta(days=5)
    due_date = issue_date + timedelta(days=30)
    revision = await InvoiceRevision.create(
        invoice=invoice, revision=1, template_version="1", currency=invoice.currency, cost_currency="USD",
        subtotal=subtotal, adjustments=0, charges=charges, total=subtotal + charges, issue_date=issue_date,
        due_date=due_date, snapshot=snapshot or {},
    )
    await InvoiceLineItem.bulk_create([
        InvoiceLineItem(revision=revision, position=i, kind=kind, description=text, amount=amount)
        for i, (kind, text, amount) in enumerate(lines, start=1)
    ])
    await Invoice.filter(id=invoice.id).update(
        current_revision_id=revision.id, subtotal=subtotal, charges=charges, total=subtotal + charges,
        issue_date=issue_date, due_date=due_date, status=status,
        approved_at=datetime.now(UTC) if status in ("APPROVED", "VOIDED") else None,
    )
    return await Invoice.get(id=invoice.id)


async def credit(client, world, invoice, role="owner", **fields):
    variables = {"input": {"invoiceId": gid("Invoice", invoice), "reason": "Duplicate usage billed",
                           "mode": "FULL", "notifyCustomer": False, **fields}}
    result = await gql(client, CREATE, variables, token=world.tokens[role])
    return result["data"]["createCreditNote"] if result.get("data") else result


async def pay(client, world, invoice, amount):
    variables = {"input": {"invoiceId": gid("Invoice", invoice), "amount": amount, "paidOn": str(date.today()),
                           "method": "BANK_TRANSFER"}}
    return (await gql(client, PAY, variables, token=world.tokens["owner"]))["data"]["recordPayment"]


def lines_of(done):
    return [(x["kind"], x["description"], x["invoiceLinePosition"], x["amount"]) for x in done["creditNote"]["lines"]]


# -- what a credit note credits --------------------------------------------------------------

async def test_a_full_credit_mirrors_the_invoice_and_settles_it(client, world):
    invoice = await approved(world.account, "INV-2024-0001")
    done = await credit(client, world, invoice)
    assert done["__typename"] == "CreditNoteCreated", done
    note = done["creditNote"]
    year = await issued_year()
    assert (note["number"], note["mode"], note["currency"], note["reason"]) == (
        f"CN-{year}-0001", "FULL", "USD", "Duplicate usage billed")
    assert (note["subtotal"], note["taxTotal"], note["charges"], note["total"]) == ("140.00", "28.00", "43.00", "183.00")
    assert lines_of(done) == [
        ("USAGE", "AWS Amazon EC2", 1, "100.00"), ("USAGE", "Azure Storage", 2, "50.00"),
        ("RULE", "Discount: Loyalty", 3, "-10.00"), ("CHARGE", "Support plan", 4, "15.00"),
        ("TAX", "VAT (20%)", 5, "28.00"),
    ]
    assert (note["allocated"], note["remainingCredit"], note["status"]) == ("183.00", "0.00", "ALLOCATED")
    assert (note["invoice"]["number"], note["account"]["name"], note["createdBy"]) == (
        "INV-2024-0001", "Contoso", world.users["owner"].email)
    assert note["deliveryStatus"] == "NOT_SENT"
    # Fully credited: nothing due, settled (as Xero shows it), so never OVERDUE either.
    assert done["invoice"] == {"amountCredited": "183.00", "amountDue": "0.00", "paymentStatus": "PAID"}
    events = await InvoiceEvent.filter(invoice_id=invoice.id, kind="CREDIT_NOTE_ISSUED")
    assert len(events) == 1 and events[0].actor_id == world.users["owner"].id
    assert events[0].detail | {"creditNote": None} == {
        "creditNote": None, "number": f"CN-{year}-0001", "mode": "FULL", "reason": "Duplicate usage billed",
        "total": "183.00", "allocated": "183.00", "accountCredit": "0.00", "notifyCustomer": False,
        "paymentStatus": "PAID", "previousPaymentStatus": "UNPAID",
    }


async def test_a_credit_by_lines_carries_its_share_of_taxes_and_charges(client, world):
    invoice = await approved(world.account, "INV-2024-0001")
    done = await credit(client, world, invoice, mode="LINES", lines=[{"position": 2, "amount": "50.00"}])
    # 50 of the 150 of positive lines: the discount follows (-10 x 50/150 = -3.33), so the net
    # is 46.67 of the 140 subtotal: VAT 28 x 46.67/140 = 9.334 -> 9.33, support 15 x ... = 5.00.
    assert lines_of(done) == [
        ("USAGE", "Azure Storage", 2, "50.00"), ("RULE", "Discount: Loyalty", 3, "-3.33"),
        ("CHARGE", "Support plan", 4, "5.00"), ("TAX", "VAT (20%)", 5, "9.33"),
    ]
    assert (done["creditNote"]["subtotal"], done["creditNote"]["taxTotal"], done["creditNote"]["total"]) == (
        "46.67", "9.33", "61.00")
    assert done["invoice"] == {"amountCredited": "61.00", "amountDue": "122.00", "paymentStatus": "UNPAID"}
    # A line is credited in part, then what is left of it, never more; every line in full
    # credits the invoice's total to the cent.
    part = await credit(client, world, invoice, mode="LINES", lines=[{"position": 1, "amount": "40"}])
    assert part["creditNote"]["total"] == "48.80"
    rest = await credit(client, world, invoice, mode="LINES", lines=[{"position": 1}])
    assert rest["creditNote"]["total"] == "73.20"
    assert rest["invoice"] == {"amountCredited": "183.00", "amountDue": "0.00", "paymentStatus": "PAID"}
    again = await credit(client, world, invoice, mode="LINES", lines=[{"position": 1, "amount": "0.01"}])
    assert (again["__typename"], again["code"], again["field"], again["maximum"]) == (
        "CreditExceededError", "CREDIT_EXCEEDS_INVOICE", "lines", "0.00")


async def test_a_credit_by_amount_includes_tax_in_proportion_and_adds_up(client, world):
    invoice = await approved(world.account, "INV-2024-0001")
    done = await credit(client, world, invoice, mode="AMOUNT", amount="91.50")
    assert lines_of(done) == [
        ("USAGE", "Credit on invoice INV-2024-0001", None, "70.00"),
        ("CHARGE", "Support plan", 4, "7.50"), ("TAX", "VAT (20%)", 5, "14.00"),
    ]
    assert done["creditNote"]["total"] == "91.50" and done["invoice"]["amountDue"] == "91.50"
    # FULL once part is credited: what is left, in the same proportions.
    rest = await credit(client, world, invoice)
    assert rest["creditNote"]["total"] == "91.50" and rest["invoice"]["amountDue"] == "0.00"
    assert sum(Decimal(x[3]) for x in lines_of(rest)) == Decimal("91.50")


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    cents=st.integers(min_value=1, max_value=18300),
    vat=st.decimals(min_value=0, max_value=1000, places=2),
    fee=st.decimals(min_value=0, max_value=1000, places=2),
)
def test_an_amount_is_split_to_the_cent(cents, vat, fee):
    printed = [
        {"position": 1, "kind": LineKind.USAGE, "description": "Usage", "amount": Decimal("140.00")},
        {"position": 2, "kind": LineKind.CHARGE, "description": "Fee", "amount": fee},
        {"position": 3, "kind": LineKind.TAX, "description": "VAT", "amount": vat},
    ]
    total = Decimal("140.00") + vat + fee
    amount = min(Decimal(cents) / 100, total)
    split = amounts.by_amount(printed, amount, total, "USD", "Credit")
    assert sum((line.amount for line in split), Decimal(0)) == amount
    assert all(line.amount == line.amount.quantize(Decimal("0.01")) for line in split)


# The issue's invoice: subtotal 1361.64, VAT 272.33, total 1633.97.
VAT_CENT = [
    (LineKind.USAGE, "AWS Amazon EC2", Decimal("1338.61")),
    (LineKind.USAGE, "AWS Amazon S3", Decimal("23.03")),
    (LineKind.TAX, "VAT (20%)", Decimal("272.33")),
]
# Two taxes of different rates and a fixed charge, after a discount: subtotal 1023.45.
TAXES = [
    (LineKind.USAGE, "AWS Amazon EC2", Decimal("777.77")),
    (LineKind.USAGE, "Azure Storage", Decimal("333.33")),
    (LineKind.USAGE, "GCP BigQuery", Decimal("15.01")),
    (LineKind.RULE, "Discount: Loyalty", Decimal("-102.66")),
    (LineKind.CHARGE, "Support plan", Decimal("49.99")),
    (LineKind.TAX, "VAT (19%)", Decimal("194.46")),
    (LineKind.TAX, "Digital services tax (7.5%)", Decimal("76.76")),
]


async def _credited_per_line(invoice):
    """What the invoice's credit notes credited of each of its lines, by position."""
    credited: dict[int, Decimal] = {}
    for line in await CreditNoteLine.filter(credit_note__invoice_id=invoice.id, invoice_line_position__isnull=False):
        credited[line.invoice_line_position] = credited.get(line.invoice_line_position, Decimal(0)) + line.amount
    return credited


async def test_vat_credited_over_three_notes_is_the_vat_charged_to_the_cent(client, world):
    invoice = await approved(world.account, "INV-2024-0001", lines=VAT_CENT)
    by_lines = await credit(client, world, invoice, mode="LINES", lines=[{"position": 2}])
    by_amount = await credit(client, world, invoice, mode="AMOUNT", amount="123.45")
    rest = await credit(client, world, invoice)
    notes = [by_lines["creditNote"], by_amount["creditNote"], rest["creditNote"]]
    assert [(n["total"], n["taxTotal"]) for n in notes] == [
        ("27.64", "4.61"), ("123.45", "20.58"), ("1482.88", "247.14")]
    assert sum(Decimal(n["taxTotal"]) for n in notes) == Decimal("272.33")
    assert sum(Decimal(n["subtotal"]) for n in notes) == Decimal("1361.64")
    assert lines_of(rest) == [
        ("USAGE", "Credit on invoice INV-2024-0001", None, "1235.74"), ("TAX", "VAT (20%)", 3, "247.14")]
    assert rest["invoice"] == {"amountCredited": "1633.97", "amountDue": "0.00", "paymentStatus": "PAID"}
    assert (await _credited_per_line(invoice))[3] == Decimal("272.33")
    # The printed credit notes, and Xero's credit notes file, add up the same way.
    printed_vat = Decimal(0)
    for note in await CreditNote.filter(invoice_id=invoice.id):
        view = note.snapshot
        printed_vat += sum((Decimal(c["amount"]) for c in view["charges"] if c["is_tax"]), Decimal(0))
        printed = [Decimal(x["amount"]) for x in view["lines"]] + [Decimal(c["amount"]) for c in view["charges"]]
        assert Decimal(view["subtotal"]) + sum(Decimal(c["amount"]) for c in view["charges"]) == Decimal(view["total"])
        assert sum(printed, Decimal(0)) == note.total
    assert printed_vat == Decimal("272.33")
    _, archive = await _export(client, world, "XERO")
    records = _rows(archive.read("credit-notes-2024-09-xero.csv"))
    assert sum(Decimal(r["*UnitAmount"]) for r in records if r["*Description"] == "VAT (20%)") == Decimal("272.33")
    assert sum(Decimal(r["*Quantity"]) * Decimal(r["*UnitAmount"]) for r in records) == Decimal("1633.97")


async def test_several_taxes_are_credited_to_the_cent_over_any_notes(client, world):
    invoice = await approved(world.account, "INV-2024-0001", lines=TAXES)
    charged = {i: amount for i, (kind, _, amount) in enumerate(TAXES, start=1) if kind in amounts.CHARGE_KINDS}
    steps = [
        {"mode": "AMOUNT", "amount": "0.03"}, {"mode": "LINES", "lines": [{"position": 3, "amount": "0.01"}]},
        {"mode": "AMOUNT", "amount": "333.33"}, {"mode": "LINES", "lines": [{"position": 2}, {"position": 3}]},
        {"mode": "AMOUNT", "amount": "0.07"}, {"mode": "FULL"},
    ]
    for step in steps:
        done = await credit(client, world, invoice, **step)
        assert done["__typename"] == "CreditNoteCreated", (step, done)
        note = done["creditNote"]
        assert Decimal(note["subtotal"]) + Decimal(note["charges"]) == Decimal(note["total"])
        assert sum(Decimal(x[3]) for x in lines_of(done)) == Decimal(note["total"])
        credited = await _credited_per_line(invoice)
        assert all(credited.get(position, Decimal(0)) <= amount for position, amount in charged.items()), credited
    assert {position: credited[position] for position in charged} == charged
    assert done["invoice"]["amountDue"] == "0.00"
    notes = await CreditNote.filter(invoice_id=invoice.id)
    assert sum(n.tax_total for n in notes) == Decimal("194.46") + Decimal("76.76")
    assert sum(n.total for n in notes) == invoice.total


def _printed(lines):
    return [{"position": i, "kind": kind, "description": text, "amount": amount}
            for i, (kind, text, amount) in enumerate(lines, start=1)]


@st.composite
def invoices(draw):
    """Printed lines as generation makes them: usage lines, perhaps a discount, then one to
    three percentage taxes of different rates on the subtotal and perhaps a fixed charge."""
    cents = st.integers(min_value=1, max_value=5_000_000)
    usage = [Decimal(c) / 100 for c in draw(st.lists(cents, min_size=1, max_size=4))]
    lines = [(LineKind.USAGE, f"Service {i}", amount) for i, amount in enumerate(usage, start=1)]
    discount = draw(st.integers(min_value=0, max_value=30))
    if discount:
        lines.append((LineKind.RULE, "Discount", round_money(-sum(usage) * discount / 100, "USD")))
    subtotal = sum((amount for _, _, amount in lines), Decimal(0))
    if draw(st.booleans()):
        lines.append((LineKind.CHARGE, "Support", Decimal(draw(st.integers(min_value=1, max_value=100_000))) / 100))
    rates = draw(st.lists(st.integers(min_value=1, max_value=275), min_size=1, max_size=3, unique=True))
    lines += [(LineKind.TAX, f"Tax {rate / 10}%", round_money(subtotal * rate / 1000, "USD")) for rate in rates]
    return [line for line in lines if line[2] != 0]


STEP = st.one_of(
    st.tuples(st.just(CreditMode.FULL)),
    st.tuples(st.just(CreditMode.AMOUNT), st.integers(min_value=1, max_value=10_000_000)),
    st.tuples(st.just(CreditMode.LINES), st.lists(st.tuples(st.integers(1, 4), st.integers(0, 10_000_000)),
                                                  min_size=1, max_size=3)),
)


@hypothesis_settings(max_examples=400, deadline=None)
@given(lines=invoices(), steps=st.lists(STEP, max_size=6), last=st.sampled_from(["FULL", "AMOUNT", "LINES"]))
def test_no_sequence_of_credit_notes_credits_a_tax_beyond_its_charge(lines, steps, last):
    printed = _printed(lines)
    total = sum((amount for _, _, amount in lines), Decimal(0))
    charged = {line["position"]: line["amount"] for line in printed if line["kind"] in amounts.CHARGE_KINDS}
    net_lines = {line["position"]: line["amount"] for line in printed if line["kind"] in amounts.NET_KINDS}
    credited: dict[int, Decimal] = {}
    left, net_credited = total, Decimal(0)
    by_amount = False
    # The rest, whichever way it is asked for: FULL, an AMOUNT of what is left, or what is
    # left of every usage line.
    final = {"FULL": (CreditMode.FULL,), "AMOUNT": (CreditMode.AMOUNT, None), "LINES": (CreditMode.LINES, None)}
    for step in [*steps, final[last]]:
        mode = step[0]
        chosen, amount = None, None
        if mode == CreditMode.AMOUNT:
            amount = left if step[1] is None else Decimal(step[1]) / 100
        elif mode == CreditMode.LINES and step[1] is None:
            chosen = [amounts.LineCredit(p) for p, a in net_lines.items() if a > 0 and credited.get(p, 0) < a]
        elif mode == CreditMode.LINES:
            chosen = [amounts.LineCredit(p, Decimal(c) / 100 if c else None) for p, c in dict(step[1]).items()]
        try:
            note = amounts.credit(mode, printed, credited, left, "USD", "INV-1", chosen, amount)
        except (CreditExceeded, ValidationFailed):
            continue  # refused: nothing changes
        note_total = sum((c.amount for c in note), Decimal(0))
        net = sum((c.amount for c in note if c.kind in amounts.NET_KINDS), Decimal(0))
        charges = sum((c.amount for c in note if c.kind in amounts.CHARGE_KINDS), Decimal(0))
        assert net + charges == note_total and 0 < note_total <= left
        assert all(c.amount == c.amount.quantize(Decimal("0.01")) for c in note)
        if mode == CreditMode.AMOUNT:
            assert note_total == amount
        for c in note:
            if c.invoice_line_position is not None:
                credited[c.invoice_line_position] = credited.get(c.invoice_line_position, Decimal(0)) + c.amount
        left -= note_total
        net_credited += net
        by_amount = by_amount or mode == CreditMode.AMOUNT
        for position, amount_charged in charged.items():
            assert 0 <= credited.get(position, Decimal(0)) <= amount_charged, (position, credited, step)
        assert net_credited <= sum(net_lines.values())
    # LINES reach the rest unless a credit by amount took a net that names no line.
    assert left == 0 or (last == "LINES" and by_amount)
    if left == 0:
        assert {p: credited.get(p, Decimal(0)) for p in charged} == charged
        assert net_credited == sum(net_lines.values())


# -- typed errors write nothing ---------------------------------------------------------------

@pytest.mark.parametrize("fields,typename,code,field", [
    ({"mode": "AMOUNT", "amount": "183.01"}, "CreditExceededError", "CREDIT_EXCEEDS_INVOICE", "amount"),
    ({"mode": "AMOUNT", "amount": "0"}, "ValidationError", "INVALID", "amount"),
    ({"mode": "AMOUNT", "amount": "-5"}, "ValidationError", "INVALID", "amount"),
    ({"mode": "AMOUNT", "amount": "1.234"}, "ValidationError", "INVALID", "amount"),
    ({"mode": "AMOUNT"}, "ValidationError", "INVALID", "amount"),
    ({"mode": "FULL", "amount": "5"}, "ValidationError", "INVALID", "amount"),
    ({"mode": "LINES", "lines": [{"position": 99}]}, "ValidationError", "INVALID", "lines"),
    ({"mode": "LINES", "lines": [{"position": 5}]}, "ValidationError", "INVALID", "lines"),
    ({"mode": "LINES", "lines": [{"position": 3}]}, "ValidationError", "INVALID", "lines"),
    ({"mode": "LINES", "lines": [{"position": 1}, {"position": 1}]}, "ValidationError", "INVALID", "lines"),
    ({"mode": "LINES", "lines": []}, "ValidationError", "INVALID", "lines"),
    ({"mode": "LINES", "lines": [{"position": 1, "amount": "100.01"}]},
     "CreditExceededError", "CREDIT_EXCEEDS_INVOICE", "lines"),
    ({"mode": "LINES", "lines": [{"position": 1, "amount": "-1"}]}, "ValidationError", "INVALID", "lines"),
    ({"reason": "  "}, "ValidationError", "INVALID", "reason"),
    ({"reason": "x" * 1025}, "ValidationError", "INVALID", "reason"),
    ({"invoiceId": to_base64("Invoice", "00000000-0000-0000-0000-000000000000")}, "NotFoundError", "NOT_FOUND",
     "invoiceId"),
    ({"invoiceId": "not-an-id"}, "NotFoundError", "NOT_FOUND", "invoiceId"),
])
async def test_refused_credits_write_nothing(client, world, fields, typename, code, field):
    invoice = await approved(world.account, "INV-2024-0001")
    before = await _state(invoice)
    refused = await credit(client, world, invoice, **fields)
    assert (refused["__typename"], refused["code"], refused["field"]) == (typename, code, field), refused
    if typename == "CreditExceededError" and field == "amount":
        assert refused["maximum"] == "183.00"
    assert await _state(invoice) == before
    # No number was taken: the next credit note is the first.
    made = await credit(client, world, invoice, mode="AMOUNT", amount="1")
    assert made["creditNote"]["number"] == f"CN-{await issued_year()}-0001"


@pytest.mark.parametrize("status", ["AWAITING_APPROVAL", "VOIDED", "READY_TO_INVOICE"])
async def test_only_an_approved_invoice_is_credited(client, world, status):
    invoice = await approved(world.account, "INV-2024-0001", status=status)
    before = await _state(invoice)
    refused = await credit(client, world, invoice)
    assert (refused["__typename"], refused["code"], refused["field"]) == (
        "InvalidTransitionError", "INVALID_TRANSITION", "invoiceId")
    assert await _state(invoice) == before


async def test_a_credit_beyond_what_is_left_is_refused_with_the_maximum(client, world):
    invoice = await approved(world.account, "INV-2024-0001")
    await credit(client, world, invoice, mode="AMOUNT", amount="100")
    before = await _state(invoice)
    refused = await credit(client, world, invoice, mode="AMOUNT", amount="83.01")
    assert (refused["code"], refused["maximum"]) == ("CREDIT_EXCEEDS_INVOICE", "83.00")
    assert await _state(invoice) == before
    await credit(client, world, invoice)
    full = await credit(client, world, invoice)
    assert (full["code"], full["maximum"]) == ("CREDIT_EXCEEDS_INVOICE", "0.00")


async def _state(invoice):
    conn = connections.get("default")
    (counters,) = await conn.execute_query_dict("SELECT count(*) AS n FROM credit_note_number_counters")
    row = await Invoice.get(id=invoice.id)
    return (
        await CreditNote.all().count(), await CreditNoteLine.all().count(), counters["n"],
        await InvoiceEvent.filter(invoice_id=invoice.id).count(),
        (row.amount_credited, row.payment_status, row.updated_at),
    )


# -- the number series -------------------------------------------------------------------------

async def test_numbers_are_gapless_under_concurrency(client, world):
    first = await approved(world.account, "INV-2024-0001")
    second = await approved(world.other_account, "INV-2024-0002")
    results = await asyncio.gather(*[
        credit(client, world, invoice, mode="AMOUNT", amount="50")
        for invoice in (first, second) * 5
    ])
    made = [r for r in results if r["__typename"] == "CreditNoteCreated"]
    refused = [r for r in results if r["__typename"] != "CreditNoteCreated"]
    # 183 leaves room for three credits of 50 on each invoice.
    assert len(made) == 6 and {r["code"] for r in refused} == {"CREDIT_EXCEEDS_INVOICE"}
    year = await issued_year()
    assert sorted(r["creditNote"]["number"] for r in made) == [f"CN-{year}-{n:04d}" for n in range(1, 7)]
    for invoice in (first, second):
        assert (await Invoice.get(id=invoice.id)).amount_credited == Decimal("150")
    # Another organization has its own series.
    foreign = await approved(world.foreign_account, "INV-2024-0001")
    done = await credit(client, world, foreign, role="foreign_owner")
    assert done["creditNote"]["number"] == f"CN-{year}-0001"


# -- paid invoices: account credit refunded or applied ----------------------------------------------

async def test_a_paid_invoice_leaves_credit_to_refund_and_apply_to_the_next_invoice(client, world):
    september = await approved(world.account, "INV-2024-0001")
    october = await approved(world.account, "INV-2024-0002", month=date(2024, 10, 1))
    elsewhere = await approved(world.other_account, "INV-2024-0003", month=date(2024, 10, 1))
    assert (await pay(client, world, september, "183.00"))["invoice"]["paymentStatus"] == "PAID"
    done = await credit(client, world, september, mode="AMOUNT", amount="50")
    note = done["creditNote"]
    assert (note["allocated"], note["remainingCredit"], note["status"]) == ("0.00", "50.00", "CREDIT_AVAILABLE")
    assert done["invoice"] == {"amountCredited": "50.00", "amountDue": "0.00", "paymentStatus": "PAID"}
    note_id = note["id"]

    refunded = (await gql(client, REFUND, {"input": {
        "creditNoteId": note_id, "amount": "20", "refundedOn": str(date.today()), "reference": "BANK-9"}},
        token=world.tokens["owner"]))["data"]["refundCredit"]
    assert refunded["creditNote"]["remainingCredit"] == "30.00"
    assert refunded["creditNote"]["uses"] == [
        {"kind": "REFUND", "amount": "20.00", "usedOn": str(date.today()), "reference": "BANK-9"}]

    async def apply(invoice, **extra):
        variables = {"input": {"creditNoteId": note_id, "invoiceId": gid("Invoice", invoice), **extra}}
        return (await gql(client, APPLY, variables, token=world.tokens["owner"]))["data"]["applyCredit"]

    other = await apply(elsewhere)
    assert (other["__typename"], other["field"]) == ("ValidationError", "invoiceId")
    own = await apply(september)
    assert (own["__typename"], own["field"]) == ("ValidationError", "invoiceId")
    too_much = await apply(october, amount="30.01")
    assert (too_much["code"], too_much["maximum"]) == ("CREDIT_EXCEEDS_BALANCE", "30.00")
    applied = await apply(october)
    assert applied["creditNote"] == {"remainingCredit": "0.00", "amountApplied": "30.00", "status": "ALLOCATED"}
    assert applied["invoice"] == {
        "number": "INV-2024-0002", "amountDue": "153.00", "creditApplied": "30.00", "paymentStatus": "PARTIALLY_PAID"}
    empty = await apply(october)
    assert empty["code"] == "CREDIT_EXCEEDS_BALANCE"
    again = (await gql(client, REFUND, {"input": {"creditNoteId": note_id, "amount": "0.01",
                                                  "refundedOn": str(date.today())}},
                       token=world.tokens["owner"]))["data"]["refundCredit"]
    assert (again["code"], again["maximum"]) == ("CREDIT_EXCEEDS_BALANCE", "0.00")
    # The credit counts as paid: paying the rest settles the next invoice, and no more.
    over = await pay(client, world, october, "153.01")
    assert (over["__typename"], over["maximum"]) == ("AmountExceededError", "153.00")
    assert (await pay(client, world, october, "153.00"))["invoice"] == {"amountDue": "0.00", "paymentStatus": "PAID"}
    # Both timelines tell it.
    source = [e for e in (await gql(client, TIMELINE, {"n": "INV-2024-0001"}, token=world.tokens["viewer"]))[
        "data"]["invoice"]["timeline"] if e["kind"].startswith("CREDIT")]
    target = [e for e in (await gql(client, TIMELINE, {"n": "INV-2024-0002"}, token=world.tokens["viewer"]))[
        "data"]["invoice"]["timeline"] if e["kind"].startswith("CREDIT")]
    assert [e["kind"] for e in source] == ["CREDIT_NOTE_ISSUED", "CREDIT_REFUNDED", "CREDIT_CARRIED"]
    assert source[2]["detail"]["toInvoice"] == "INV-2024-0002" and source[2]["detail"]["amount"] == "30.00"
    assert [e["kind"] for e in target] == ["CREDIT_APPLIED"]
    assert target[0]["detail"]["fromInvoice"] == "INV-2024-0001"
    year = await issued_year()
    assert target[0]["detail"]["creditNoteNumber"] == f"CN-{year}-0001"


async def test_a_partly_paid_invoice_credits_what_it_still_owed_first(client, world):
    invoice = await approved(world.account, "INV-2024-0001")
    await pay(client, world, invoice, "100.00")
    done = await credit(client, world, invoice, mode="AMOUNT", amount="100")
    assert (done["creditNote"]["allocated"], done["creditNote"]["remainingCredit"]) == ("83.00", "17.00")
    assert done["invoice"] == {"amountCredited": "100.00", "amountDue": "0.00", "paymentStatus": "PAID"}


async def test_after_a_partial_credit_the_rest_is_paid_in_full(client, world):
    invoice = await approved(world.account, "INV-2024-0001")
    await credit(client, world, invoice, mode="AMOUNT", amount="83")
    over = await pay(client, world, invoice, "100.01")
    assert (over["__typename"], over["maximum"]) == ("AmountExceededError", "100.00")
    assert (await pay(client, world, invoice, "100"))["invoice"] == {"amountDue": "0.00", "paymentStatus": "PAID"}


async def test_a_fully_credited_invoice_is_never_overdue(client, world):
    credited = await approved(world.account, "INV-2024-0001", issue_date=date(2024, 10, 1))
    due = await approved(world.other_account, "INV-2024-0002", issue_date=date(2024, 10, 1))
    done = await credit(client, world, credited)
    assert done["invoice"]["paymentStatus"] == "PAID"
    await credit(client, world, due, mode="AMOUNT", amount="100")
    await mark_overdue_invoices({"redis": None})
    assert (await Invoice.get(id=credited.id)).payment_status == "PAID"
    assert (await Invoice.get(id=due.id)).payment_status == "OVERDUE"


# -- who may do and see what -----------------------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
async def test_create_credit_note_scope_matrix(client, world, role):
    invoice = await approved(world.account, "INV-2024-0001")
    result = await credit(client, world, invoice, role=role)
    if role == "owner":
        assert result["__typename"] == "CreditNoteCreated"
    elif role == "foreign_owner":
        assert (result["__typename"], result["code"]) == ("NotFoundError", "NOT_FOUND")
    else:
        assert error_codes(result) == ["FORBIDDEN"]
    assert await CreditNote.all().count() == (1 if role == "owner" else 0)


@pytest.mark.parametrize("mutation", ["apply", "refund"])
@pytest.mark.parametrize("role", ROLES)
async def test_credit_use_scope_matrix(client, world, role, mutation):
    september = await approved(world.account, "INV-2024-0001")
    october = await approved(world.account, "INV-2024-0002", month=date(2024, 10, 1))
    await pay(client, world, september, "183")
    note_id = (await credit(client, world, september, mode="AMOUNT", amount="10"))["creditNote"]["id"]
    if mutation == "apply":
        query, name = APPLY, "applyCredit"
        variables = {"input": {"creditNoteId": note_id, "invoiceId": gid("Invoice", october)}}
    else:
        query, name = REFUND, "refundCredit"
        variables = {"input": {"creditNoteId": note_id, "amount": "10", "refundedOn": str(date.today())}}
    result = await gql(client, query, variables, token=world.tokens[role])
    if role == "owner":
        assert result["data"][name]["creditNote"]["remainingCredit"] == "0.00"
    elif role == "foreign_owner":
        assert result["data"][name]["code"] == "NOT_FOUND"
    else:
        assert error_codes(result) == ["FORBIDDEN"]
    assert (await CreditNote.get(id=_db_id(note_id))).amount_applied + (
        await CreditNote.get(id=_db_id(note_id))).amount_refunded == (Decimal(10) if role == "owner" else 0)


def _db_id(global_id):
    from strawberry.relay import GlobalID

    return GlobalID.from_id(global_id).node_id


@pytest.mark.parametrize("role", ROLES)
async def test_reading_credit_notes_scope_matrix(client, world, role):
    mine = await approved(world.account, "INV-2024-0001")
    theirs = await approved(world.other_account, "INV-2024-0002")
    foreign = await approved(world.foreign_account, "INV-2024-0001")
    mine_id = (await credit(client, world, mine))["creditNote"]["id"]
    await credit(client, world, theirs, mode="AMOUNT", amount="10")
    foreign_id = (await credit(client, world, foreign, role="foreign_owner"))["creditNote"]["id"]
    token = world.tokens[role]
    listed = (await gql(client, LIST, token=token))["data"]["creditNotes"]
    numbers = sorted((e["node"]["number"], e["node"]["invoice"]["number"]) for e in listed["edges"])
    year = await issued_year()
    expected = {
        "owner": [(f"CN-{year}-0001", "INV-2024-0001"), (f"CN-{year}-0002", "INV-2024-0002")],
        "viewer": [(f"CN-{year}-0001", "INV-2024-0001"), (f"CN-{year}-0002", "INV-2024-0002")],
        "customer": [(f"CN-{year}-0001", "INV-2024-0001")],
        "other_customer": [(f"CN-{year}-0002", "INV-2024-0002")],
        "foreign_owner": [(f"CN-{year}-0001", "INV-2024-0001")],
    }[role]
    assert numbers == expected and listed["totalCount"] == len(expected)
    node = (await gql(client, NODE, {"id": mine_id}, token=token))["data"]["node"]
    assert (node is not None) == (role in ("owner", "viewer", "customer"))
    foreign_node = (await gql(client, NODE, {"id": foreign_id}, token=token))["data"]["node"]
    assert (foreign_node is not None) == (role == "foreign_owner")
    of_invoice = (await gql(client, OF_INVOICE, {"n": "INV-2024-0001"}, token=token))["data"]["invoice"]
    if role in ("owner", "viewer", "customer", "foreign_owner"):
        assert [c["total"] for c in of_invoice["creditNotes"]] == ["183.00"]
    else:
        assert of_invoice is None
    created_by = await gql(client, "query($id: ID!) { node(id: $id) { ... on CreditNote { createdBy } } }",
                           {"id": mine_id}, token=token)
    if role == "customer":
        assert error_codes(created_by) == ["FORBIDDEN"]


async def test_the_list_filters_by_account_period_and_dates(client, world):
    september = await approved(world.account, "INV-2024-0001")
    october = await approved(world.other_account, "INV-2024-0002", month=date(2024, 10, 1))
    await credit(client, world, september, mode="AMOUNT", amount="10")
    await credit(client, world, october, mode="AMOUNT", amount="10")
    token = world.tokens["viewer"]

    async def numbers(**where):
        listed = (await gql(client, LIST, {"filter": where}, token=token))["data"]["creditNotes"]
        return [e["node"]["invoice"]["number"] for e in listed["edges"]]

    assert await numbers(accountIds=[gid("ManagedAccount", world.account)]) == ["INV-2024-0001"]
    assert await numbers(accountIds=["not-an-id"]) == []
    assert await numbers(periodFrom="2024-10", periodTo="2024-10") == ["INV-2024-0002"]
    assert await numbers(invoiceIds=[gid("Invoice", september)]) == ["INV-2024-0001"]
    assert await numbers(issuedFrom=str(date.today() + timedelta(days=1))) == []
    assert sorted(await numbers(issuedTo=str(date.today()))) == ["INV-2024-0001", "INV-2024-0002"]
    assert await numbers(search="0002") == ["INV-2024-0002"]


# -- the database's guards ---------------------------------------------------------------------

async def test_an_issued_credit_note_never_changes(client, world):
    invoice = await approved(world.account, "INV-2024-0001")
    await credit(client, world, invoice, mode="AMOUNT", amount="10")
    note = await CreditNote.get()
    conn = connections.get("default")
    for statement, guard in (
        ("UPDATE credit_notes SET total = 20, subtotal = 20, charges = 0", "credit_notes_guard"),
        ("UPDATE credit_notes SET number = 'CN-1999-0001'", "credit_notes_guard"),
        ("UPDATE credit_notes SET amount_refunded = amount_refunded - 1", "credit_notes_guard"),
        ("DELETE FROM credit_notes", "credit_notes_guard"),
        ("UPDATE credit_note_lines SET amount = 1", "credit_note_lines_frozen"),
        ("DELETE FROM credit_note_lines", "credit_note_lines_frozen"),
    ):
        async with refused_by(guard):
            await conn.execute_query(statement)
    await conn.execute_query("UPDATE credit_notes SET pdf_path = 'a.pdf', pdf_sha256 = 'x', pdf_size = 1")
    async with refused_by("credit_notes_guard"):
        await conn.execute_query("UPDATE credit_notes SET pdf_path = 'b.pdf'")
    assert (await CreditNote.get(id=note.id)).total == Decimal(10)


# -- exports -----------------------------------------------------------------------------------

EXPORT = """mutation($format: ExportFormat!, $filter: InvoiceFilter) { exportInvoices(format: $format, filter: $filter) {
  __typename ... on InvoiceExport { url filename invoiceCount creditNoteCount } ... on UserError { code } } }"""
XERO_CREDIT_NOTE_HEADER = (
    b"*ContactName,EmailAddress,POAddressLine1,POAddressLine2,POAddressLine3,POAddressLine4,POCity,PORegion,"
    b"POPostalCode,POCountry,*CreditNoteNumber,Reference,*CreditNoteDate,InventoryItemCode,*Description,"
    b"*Quantity,*UnitAmount,Discount,*AccountCode,*TaxType,TrackingName1,TrackingOption1,TrackingName2,"
    b"TrackingOption2,Currency,BrandingTheme\r\n"
)


def _rows(data: bytes):
    header, *rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    return [dict(zip(header, row)) for row in rows]


async def _export(client, world, fmt):
    done = (await gql(client, EXPORT, {"format": fmt, "filter": {"periodFrom": "2024-09", "periodTo": "2024-09"}},
                      token=world.tokens["owner"]))["data"]["exportInvoices"]
    response = await client.get(urlsplit(done["url"]).path)
    assert response.status_code == 200
    return done, zipfile.ZipFile(io.BytesIO(response.content))


async def test_xero_export_has_a_credit_notes_file_that_totals_to_the_cent(client, world):
    world.account.billing_emails = ["ap@contoso.example"]
    await world.account.save()
    first = await approved(world.account, "INV-2024-0001")
    second = await approved(world.other_account, "INV-2024-0002")
    await approved(world.account, "INV-2024-0003", month=date(2024, 10, 1))
    await credit(client, world, first)
    await credit(client, world, second, mode="LINES", lines=[{"position": 2, "amount": "33.33"}])
    await credit(client, world, second, mode="AMOUNT", amount="0.07")
    done, archive = await _export(client, world, "XERO")
    assert (done["filename"], done["invoiceCount"], done["creditNoteCount"]) == ("invoices-2024-09-xero.zip", 2, 3)
    assert sorted(archive.namelist()) == ["credit-notes-2024-09-xero.csv", "invoices-2024-09-xero.csv"]
    invoices = _rows(archive.read("invoices-2024-09-xero.csv"))
    assert {r["*InvoiceNumber"] for r in invoices} == {"INV-2024-0001", "INV-2024-0002"}
    data = archive.read("credit-notes-2024-09-xero.csv")
    assert data.startswith(XERO_CREDIT_NOTE_HEADER)
    records = _rows(data)
    assert tuple(records[0]) == XERO_CREDIT_NOTE_COLUMNS
    first_row = records[0]
    assert (first_row["*ContactName"], first_row["EmailAddress"], first_row["Reference"]) == (
        "Contoso", "ap@contoso.example", "INV-2024-0001")
    assert first_row["*CreditNoteDate"] == date.today().strftime("%d/%m/%Y")
    assert (first_row["*AccountCode"], first_row["*TaxType"], first_row["Currency"]) == ("200", "Tax Exempt", "USD")
    for note in await CreditNote.all():
        mine = [r for r in records if r["*CreditNoteNumber"] == note.number]
        assert mine, note.number
        assert sum(Decimal(r["*Quantity"]) * Decimal(r["*UnitAmount"]) for r in mine) == note.total
    # Xero books a credit note as a credit: its lines are written positive (a credited discount
    # stays negative, as it was on the invoice).
    year = await issued_year()
    assert [r["*UnitAmount"] for r in records if r["*CreditNoteNumber"] == f"CN-{year}-0001"] == [
        "100.00", "50.00", "-10.00", "15.00", "28.00"]
    assert sum(Decimal(r["*UnitAmount"]) for r in records if r["*CreditNoteNumber"] == f"CN-{year}-0003") == Decimal(
        "0.07")


async def test_detailed_export_has_every_credit_note_line(client, world):
    invoice = await approved(world.account, "INV-2024-0001")
    await pay(client, world, invoice, "183")
    await credit(client, world, invoice, mode="LINES", lines=[{"position": 1}])
    done, archive = await _export(client, world, "DETAILED")
    assert done["filename"] == "invoices-2024-09-detailed.zip"
    invoices = _rows(archive.read("invoices-2024-09-detailed.csv"))
    assert {(r["AmountCredited"], r["AmountDue"]) for r in invoices} == {("122.00", "0.00")}
    records = _rows(archive.read("credit-notes-2024-09-detailed.csv"))
    assert [(r["LineKind"], r["InvoiceLinePosition"], r["Amount"]) for r in records] == [
        ("USAGE", "1", "100.00"), ("RULE", "3", "-6.67"), ("CHARGE", "4", "10.00"), ("TAX", "5", "18.67")]
    assert sum(Decimal(r["Amount"]) for r in records) == Decimal(records[0]["CreditNoteTotal"]) == Decimal("122.00")
    assert (records[0]["Allocated"], records[0]["RemainingCredit"], records[0]["InvoiceNumber"]) == (
        "0.00", "122.00", "INV-2024-0001")


async def test_an_export_without_credit_notes_stays_one_csv(client, world):
    await approved(world.account, "INV-2024-0001")
    done = (await gql(client, EXPORT, {"format": "XERO", "filter": {"periodFrom": "2024-09", "periodTo": "2024-09"}},
                      token=world.tokens["owner"]))["data"]["exportInvoices"]
    assert (done["filename"], done["creditNoteCount"]) == ("invoices-2024-09-xero.csv", 0)


async def test_credit_given_back_as_a_payment_refund_cannot_be_used_again(client, world):
    september = await approved(world.account, "INV-2024-0001")
    october = await approved(world.account, "INV-2024-0002", month=date(2024, 10, 1))
    await pay(client, world, september, "183")
    note_id = (await credit(client, world, september, mode="AMOUNT", amount="50"))["creditNote"]["id"]
    payment = await Payment.get(invoice_id=september.id)
    refunded = await gql(client, """mutation($input: RefundPaymentInput!) { refundPayment(input: $input) {
        __typename } }""", {"input": {"paymentId": gid("Payment", payment), "amount": "30", "refundedOn": str(
        date.today()), "notifyCustomer": False}}, token=world.tokens["owner"])
    assert refunded["data"]["refundPayment"]["__typename"] == "PaymentRefunded"
    # 30 of the 50 went back with the payment: 20 is left to use.
    applied = (await gql(client, APPLY, {"input": {"creditNoteId": note_id, "invoiceId": gid("Invoice", october),
                                                   "amount": "20.01"}}, token=world.tokens["owner"]))
    assert (applied["data"]["applyCredit"]["code"], applied["data"]["applyCredit"]["maximum"]) == (
        "CREDIT_EXCEEDS_BALANCE", "20.00")
    done = (await gql(client, APPLY, {"input": {"creditNoteId": note_id, "invoiceId": gid("Invoice", october)}},
                      token=world.tokens["owner"]))["data"]["applyCredit"]
    assert done["invoice"]["creditApplied"] == "20.00"
    refused = (await gql(client, REFUND, {"input": {"creditNoteId": note_id, "amount": "0.01",
                                                    "refundedOn": str(date.today())}},
                         token=world.tokens["owner"]))["data"]["refundCredit"]
    assert (refused["code"], refused["maximum"]) == ("CREDIT_EXCEEDS_BALANCE", "0.00")
