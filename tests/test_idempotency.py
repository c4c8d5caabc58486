"""Idempotency keys: every mutation that creates money or sends something, retried with its key,
does its work once and answers the first answer again; the key with another input is refused;
two requests at once with one key do the work once; keys are per user and expire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from strawberry.relay import to_base64

from jobs.worker import purge_old_tokens
from models import CostImport, CreditNote, CreditUseEntry, IdempotencyKey, Invoice, InvoiceEvent, Payment, Refund, idempotency
from models.base import Scope
from models.invoices.tables import InvoiceExtraLine
from tests import factories as f
from tests.graphql import gql
from tests.test_credit_notes import approved
from tests.test_scope_matrix import FOCUS_CSV


def gid(kind: str, row: Any) -> str:
    return to_base64(kind, str(row.id))


@dataclass
class Case:
    """One mutation: its document (taking `$key`), its variables, and how many times its work was done."""

    query: str
    variables: dict[str, Any]
    done: Callable[[], Awaitable[int]]
    # Variables that make it another request.
    other: dict[str, Any]
    upload: bool = False


ERROR = "... on UserError { code field message }"


async def _paid(client, world, invoice, amount="183.00") -> str:
    query = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) {
      ... on PaymentRecorded { payment { id } } } }"""
    variables = {"input": {"invoiceId": gid("Invoice", invoice), "amount": amount, "paidOn": str(date.today()), "method": "BANK_TRANSFER"}}
    return (await gql(client, query, variables, token=world.tokens["owner"]))["data"]["recordPayment"]["payment"]["id"]


async def _credit(client, world, invoice) -> str:
    """A credit note of 50.00 on a paid invoice: all of it account credit, to refund or apply."""
    await _paid(client, world, invoice)
    query = """mutation($input: CreateCreditNoteInput!) { createCreditNote(input: $input) {
      ... on CreditNoteCreated { creditNote { id } } } }"""
    variables = {
        "input": {"invoiceId": gid("Invoice", invoice), "reason": "Goodwill", "mode": "AMOUNT", "amount": "50", "notifyCustomer": False}
    }
    return (await gql(client, query, variables, token=world.tokens["owner"]))["data"]["createCreditNote"]["creditNote"]["id"]


async def record_payment(client, world) -> Case:
    invoice = await approved(world.account, "INV-2024-0001")
    return Case(
        """mutation($input: RecordPaymentInput!, $key: String) { recordPayment(input: $input, idempotencyKey: $key) {
          __typename ... on PaymentRecorded { payment { id amount } invoice { amountDue paymentStatus } } """
        + ERROR
        + " } }",
        {"input": {"invoiceId": gid("Invoice", invoice), "amount": "10.00", "paidOn": str(date.today()), "method": "CARD"}},
        lambda: Payment.filter(invoice_id=invoice.id).count(),
        {"input": {"invoiceId": gid("Invoice", invoice), "amount": "11.00", "paidOn": str(date.today()), "method": "CARD"}},
    )


async def refund_payment(client, world) -> Case:
    invoice = await approved(world.account, "INV-2024-0001")
    payment_id = await _paid(client, world, invoice)
    return Case(
        """mutation($input: RefundPaymentInput!, $key: String) { refundPayment(input: $input, idempotencyKey: $key) {
          __typename ... on PaymentRefunded { refund { id amount } invoice { amountRefunded } } """
        + ERROR
        + " } }",
        {
            "input": {
                "paymentId": payment_id,
                "amount": "5.00",
                "refundedOn": str(date.today()),
                "reason": "Goodwill",
                "notifyCustomer": False,
            }
        },
        lambda: Refund.filter(invoice_id=invoice.id).count(),
        {
            "input": {
                "paymentId": payment_id,
                "amount": "6.00",
                "refundedOn": str(date.today()),
                "reason": "Goodwill",
                "notifyCustomer": False,
            }
        },
    )


async def create_credit_note(client, world) -> Case:
    invoice = await approved(world.account, "INV-2024-0001")
    return Case(
        """mutation($input: CreateCreditNoteInput!, $key: String) { createCreditNote(input: $input, idempotencyKey: $key) {
          __typename ... on CreditNoteCreated { creditNote { id number total } invoice { amountDue } } """
        + ERROR
        + " } }",
        {
            "input": {
                "invoiceId": gid("Invoice", invoice),
                "reason": "Duplicate usage",
                "mode": "AMOUNT",
                "amount": "10",
                "notifyCustomer": False,
            }
        },
        lambda: CreditNote.filter(invoice_id=invoice.id).count(),
        {
            "input": {
                "invoiceId": gid("Invoice", invoice),
                "reason": "Duplicate usage",
                "mode": "AMOUNT",
                "amount": "11",
                "notifyCustomer": False,
            }
        },
    )


async def refund_credit(client, world) -> Case:
    note_id = await _credit(client, world, await approved(world.account, "INV-2024-0001"))
    return Case(
        """mutation($input: RefundCreditInput!, $key: String) { refundCredit(input: $input, idempotencyKey: $key) {
          __typename ... on CreditRefunded { creditNote { id remainingCredit } } """
        + ERROR
        + " } }",
        {"input": {"creditNoteId": note_id, "amount": "20", "refundedOn": str(date.today()), "reference": "BANK-9"}},
        lambda: CreditUseEntry.all().count(),
        {"input": {"creditNoteId": note_id, "amount": "20", "refundedOn": str(date.today()), "reference": "BANK-10"}},
    )


async def apply_credit(client, world) -> Case:
    note_id = await _credit(client, world, await approved(world.account, "INV-2024-0001"))
    october = await approved(world.account, "INV-2024-0002", month=date(2024, 10, 1))
    return Case(
        """mutation($input: ApplyCreditInput!, $key: String) { applyCredit(input: $input, idempotencyKey: $key) {
          __typename ... on CreditApplied { creditNote { id remainingCredit } invoice { number amountDue } } """
        + ERROR
        + " } }",
        {"input": {"creditNoteId": note_id, "invoiceId": gid("Invoice", october), "amount": "20"}},
        lambda: CreditUseEntry.all().count(),
        {"input": {"creditNoteId": note_id, "invoiceId": gid("Invoice", october), "amount": "21"}},
    )


async def add_invoice_item(client, world) -> Case:
    invoice = await f.invoice(world.account, await f.billing_period(world.org), status="READY_TO_INVOICE")
    return Case(
        """mutation($id: ID!, $item: InvoiceItemInput!, $key: String) { addInvoiceItem(invoiceId: $id, item: $item,
          idempotencyKey: $key) { __typename ... on InvoiceChanged { invoice { id status } item { id amount } } """
        + ERROR
        + " } }",
        {"id": gid("Invoice", invoice), "item": {"description": "Onboarding workshop", "unitPrice": "250"}},
        lambda: InvoiceExtraLine.filter(invoice_id=invoice.id).count(),
        {"id": gid("Invoice", invoice), "item": {"description": "Onboarding workshop", "unitPrice": "251"}},
    )


async def import_costs(client, world) -> Case:
    return Case(
        """mutation($file: Upload, $key: String) { importCosts(file: $file, idempotencyKey: $key) {
          __typename ... on CostImportQueued { costImport { id state filename } } """
        + ERROR
        + " } }",
        {"file": None},
        lambda: CostImport.all().count(),
        {"data": FOCUS_CSV.replace(b",1.00,USD,", b",2.00,USD,")},
        upload=True,
    )


def _invoice_events(invoice: Invoice, kind: str) -> Callable[[], Awaitable[int]]:
    return lambda: InvoiceEvent.filter(invoice_id=invoice.id, kind=kind).count()


BULK = "... on InvoiceActionResults { succeeded results { id invoice { status } error { code } } } " + ERROR


async def approve_invoices(client, world) -> Case:
    invoice = await f.generated_invoice(world.account, await f.billing_period(world.org), number="INV-2024-0001")
    other = await f.generated_invoice(world.other_account, await f.billing_period(world.org, date(2024, 10, 1)), number="INV-2024-0002")
    return Case(
        """mutation($ids: [ID!], $key: String) { approveInvoices(ids: $ids, notifyCustomer: false, idempotencyKey: $key) {
          __typename """
        + BULK
        + " } }",
        {"ids": [gid("Invoice", invoice)]},
        _invoice_events(invoice, "APPROVE"),
        {"ids": [gid("Invoice", other)]},
    )


async def void_invoices(client, world) -> Case:
    invoice = await approved(world.account, "INV-2024-0001")
    return Case(
        """mutation($ids: [ID!]!, $key: String) { voidInvoices(ids: $ids, reason: "Wrong rate", notifyCustomer: false,
          idempotencyKey: $key) { __typename """
        + BULK
        + " } }",
        {"ids": [gid("Invoice", invoice)]},
        _invoice_events(invoice, "VOID"),
        {"ids": [gid("Invoice", await approved(world.account, "INV-2024-0002", month=date(2024, 10, 1)))]},
    )


async def reissue_invoice(client, world) -> Case:
    invoice = await approved(world.account, "INV-2024-0001", status="VOIDED")
    return Case(
        """mutation($id: ID!, $key: String) { reissueInvoice(id: $id, idempotencyKey: $key) {
          __typename ... on InvoiceReissued { invoice { id status } replaced { number } } """
        + ERROR
        + " } }",
        {"id": gid("Invoice", invoice)},
        lambda: Invoice.filter(replaces_id=invoice.id).count(),
        {"id": gid("Invoice", await approved(world.account, "INV-2024-0002", month=date(2024, 10, 1), status="VOIDED"))},
    )


async def resend_invoice(client, world) -> Case:
    invoice = await approved(world.account, "INV-2024-0001")
    return Case(
        """mutation($id: ID!, $key: String) { resendInvoice(id: $id, idempotencyKey: $key) {
          __typename ... on InvoiceResendQueued { invoice { number deliveryStatus } } """
        + ERROR
        + " } }",
        {"id": gid("Invoice", invoice)},
        _invoice_events(invoice, "RESEND_REQUESTED"),
        {"id": gid("Invoice", await approved(world.account, "INV-2024-0002", month=date(2024, 10, 1)))},
    )


CASES = {
    "recordPayment": record_payment,
    "refundPayment": refund_payment,
    "createCreditNote": create_credit_note,
    "refundCredit": refund_credit,
    "applyCredit": apply_credit,
    "addInvoiceItem": add_invoice_item,
    "importCosts": import_costs,
    "approveInvoices": approve_invoices,
    "voidInvoices": void_invoices,
    "reissueInvoice": reissue_invoice,
    "resendInvoice": resend_invoice,
}


async def ask(client, case: Case, token: str, key: str | None, **changes: Any) -> dict[str, Any]:
    """The mutation, answered; a file goes as a GraphQL multipart request."""
    variables = {**case.variables, **changes, "key": key}
    if not case.upload:
        return await gql(client, case.query, variables, token=token)
    data = changes.pop("data", FOCUS_CSV)
    variables.pop("data", None)
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps({"query": case.query, "variables": variables}), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": ("focus.csv", data, "text/csv")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def payload(answer: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in answer, answer
    return next(iter(answer["data"].values()))


SUCCESS = {
    "recordPayment": "PaymentRecorded",
    "refundPayment": "PaymentRefunded",
    "createCreditNote": "CreditNoteCreated",
    "refundCredit": "CreditRefunded",
    "applyCredit": "CreditApplied",
    "addInvoiceItem": "InvoiceChanged",
    "importCosts": "CostImportQueued",
    "approveInvoices": "InvoiceActionResults",
    "voidInvoices": "InvoiceActionResults",
    "reissueInvoice": "InvoiceReissued",
    "resendInvoice": "InvoiceResendQueued",
}


@pytest.mark.parametrize("name", list(CASES))
async def test_a_retry_with_its_key_answers_the_first_answer_and_does_nothing(client, world, name):
    case = await CASES[name](client, world)
    owner = world.tokens["owner"]
    before = await case.done()
    first = payload(await ask(client, case, owner, "retry-1"))
    assert first["__typename"] == SUCCESS[name], first
    assert await case.done() == before + 1
    again = payload(await ask(client, case, owner, "retry-1"))
    assert again == first
    assert await case.done() == before + 1
    # Without a key (or with another one) the work is done again: the key is what stopped it.
    if name in (
        "recordPayment",
        "refundPayment",
        "createCreditNote",
        "refundCredit",
        "applyCredit",
        "addInvoiceItem",
        "importCosts",
        "resendInvoice",
    ):
        assert payload(await ask(client, case, owner, "retry-2"))["__typename"] == SUCCESS[name]
        assert await case.done() == before + 2


@pytest.mark.parametrize("name", list(CASES))
async def test_the_key_with_another_input_is_refused_and_does_nothing(client, world, name):
    case = await CASES[name](client, world)
    owner = world.tokens["owner"]
    first = payload(await ask(client, case, owner, "same-key"))
    assert first["__typename"] == SUCCESS[name]
    done = await case.done()
    refused = payload(await ask(client, case, owner, "same-key", **case.other))
    assert (refused["__typename"], refused["code"], refused["field"]) == ("ConflictError", "IDEMPOTENCY_KEY_REUSED", "idempotencyKey")
    assert await case.done() == done


async def test_two_requests_at_once_with_one_key_record_one_payment(client, world, settings):
    """The second comes while the first holds its claim (its invoice's row is locked by another
    transaction, so the first waits there): it is told the first is in progress. Once the
    first answered, the key replays its answer."""
    case = await record_payment(client, world)
    owner = world.tokens["owner"]
    invoice_id = case.variables["input"]["invoiceId"]
    locker = await asyncpg.connect(settings.database_url)
    try:
        async with locker.transaction():
            await locker.execute("SELECT id FROM invoices WHERE number = 'INV-2024-0001' FOR UPDATE")
            first = asyncio.create_task(ask(client, case, owner, "at-once"))
            async with asyncio.timeout(10):
                while not await IdempotencyKey.filter(key="at-once").exists():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            second = payload(await ask(client, case, owner, "at-once"))
            assert (second["__typename"], second["code"]) == ("ConflictError", "IDEMPOTENCY_KEY_IN_PROGRESS")
            assert not first.done()
    finally:
        await locker.close()
    answered = payload(await first)
    assert answered["__typename"] == "PaymentRecorded"
    assert payload(await ask(client, case, owner, "at-once")) == answered
    assert await case.done() == 1
    assert invoice_id


async def test_many_requests_at_once_with_one_key_do_the_work_once(client, world):
    case = await record_payment(client, world)
    answers = [payload(a) for a in await asyncio.gather(*(ask(client, case, world.tokens["owner"], "burst") for _ in range(6)))]
    recorded = [a for a in answers if a["__typename"] == "PaymentRecorded"]
    assert recorded and all(a == recorded[0] for a in recorded)
    assert all(a["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS" for a in answers if a["__typename"] != "PaymentRecorded")
    assert await case.done() == 1


async def test_a_claim_left_by_a_claimant_that_died_is_taken_over_once_its_lease_runs_out(client, world):
    """A process that died mid-work leaves its claim WORKING (its work rolled back with it). While
    the lease holds, a retry is told the work is in progress; once it has run out, the retry does
    the work, and the key then replays that answer."""
    case = await record_payment(client, world)
    owner = world.tokens["owner"]
    probe = payload(await ask(client, case, owner, "probe"))
    assert probe["__typename"] == "PaymentRecorded"
    held = await IdempotencyKey.get(key="probe")
    dead = await IdempotencyKey.create(
        organization_id=held.organization_id,
        user_id=held.user_id,
        key="dead",
        fingerprint=held.fingerprint,
        expires_at=held.expires_at,
        lease_until=datetime.now(UTC) + timedelta(seconds=30),
    )
    waiting = payload(await ask(client, case, owner, "dead"))
    assert (waiting["__typename"], waiting["code"]) == ("ConflictError", "IDEMPOTENCY_KEY_IN_PROGRESS")
    assert await case.done() == 1
    await IdempotencyKey.filter(id=dead.id).update(lease_until=datetime.now(UTC) - timedelta(seconds=1))
    other = payload(await ask(client, case, owner, "dead", **case.other))
    assert other["code"] == "IDEMPOTENCY_KEY_REUSED" and await case.done() == 1
    retried = payload(await ask(client, case, owner, "dead"))
    assert retried["__typename"] == "PaymentRecorded" and retried["payment"]["id"] != probe["payment"]["id"]
    assert await case.done() == 2
    assert payload(await ask(client, case, owner, "dead")) == retried
    assert await case.done() == 2
    assert (await IdempotencyKey.get(id=dead.id)).lease_until is None


async def test_a_claimant_still_working_renews_its_lease(client, world, settings, monkeypatch):
    """The first request waits on a locked row for three lease lengths: it keeps renewing its
    claim, so a retry meanwhile is told it is in progress, and the work is done once."""
    monkeypatch.setattr(idempotency, "LEASE", timedelta(seconds=2))
    case = await record_payment(client, world)
    owner = world.tokens["owner"]
    locker = await asyncpg.connect(settings.database_url)
    try:
        async with locker.transaction():
            await locker.execute("SELECT id FROM invoices WHERE number = 'INV-2024-0001' FOR UPDATE")
            first = asyncio.create_task(ask(client, case, owner, "slow"))
            async with asyncio.timeout(10):
                while not await IdempotencyKey.filter(key="slow").exists():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            for _ in range(4):
                await asyncio.sleep(1.5)
                second = payload(await ask(client, case, owner, "slow"))
                assert second["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS"
            assert (await IdempotencyKey.get(key="slow")).lease_until > datetime.now(UTC)
    finally:
        await locker.close()
    assert payload(await first)["__typename"] == "PaymentRecorded"
    assert await case.done() == 1


async def test_keys_are_per_user_and_a_replay_is_for_its_own_user_only(client, world):
    case = await record_payment(client, world)
    other_owner = await f.user(world.org, Scope.OWNER)
    first = payload(await ask(client, case, world.tokens["owner"], "shared"))
    second = payload(await ask(client, case, await f.token(other_owner), "shared"))
    assert first["__typename"] == second["__typename"] == "PaymentRecorded"
    assert first["payment"]["id"] != second["payment"]["id"]
    assert await case.done() == 2


@pytest.mark.parametrize("role", ["viewer", "customer", "foreign_owner"])
async def test_a_key_is_no_way_past_the_scope(client, world, role):
    case = await record_payment(client, world)
    first = payload(await ask(client, case, world.tokens["owner"], "mine"))
    assert first["__typename"] == "PaymentRecorded"
    answer = await ask(client, case, world.tokens[role], "mine")
    if role == "foreign_owner":
        assert payload(answer)["code"] == "NOT_FOUND"
    else:
        assert [e["extensions"]["code"] for e in answer["errors"]] == ["FORBIDDEN"]
    assert await case.done() == 1
    assert await IdempotencyKey.all().count() == 1 + (role == "foreign_owner")


async def test_a_refusal_is_answered_again_and_a_bad_key_is_refused(client, world):
    case = await record_payment(client, world)
    owner = world.tokens["owner"]
    too_much = {"input": {**case.variables["input"], "amount": "1000.00"}}
    refused = payload(await ask(client, case, owner, "too-much", **too_much))
    assert (refused["__typename"], refused["code"]) == ("AmountExceededError", "OVERPAYMENT")
    assert payload(await ask(client, case, owner, "too-much", **too_much)) == refused
    for malformed in ("x" * 256, ""):
        bad = await ask(client, case, owner, malformed)
        assert bad["data"] is None, bad
        assert [(e["extensions"]["code"], e["extensions"]["field"]) for e in bad["errors"]] == [("BAD_USER_INPUT", "idempotencyKey")]
    assert await case.done() == 0


async def test_a_key_expires_after_a_day_and_the_worker_purges_it(client, world):
    case = await record_payment(client, world)
    owner = world.tokens["owner"]
    first = payload(await ask(client, case, owner, "day-old"))
    await IdempotencyKey.filter(key="day-old").update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    again = payload(await ask(client, case, owner, "day-old"))
    assert again["payment"]["id"] != first["payment"]["id"] and await case.done() == 2
    await IdempotencyKey.all().update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    await purge_old_tokens({})
    assert await IdempotencyKey.all().count() == 0


async def test_a_key_holding_nul_is_bad_input_also_where_the_payload_has_no_validation_error(client, world):
    period = await f.billing_period(world.org, date(2024, 9, 1))
    invoice = await f.generated_invoice(world.account, period, number="INV-2024-0001", status="VOIDED")
    answer = await gql(
        client,
        "mutation($id: ID!, $key: String) { reissueInvoice(id: $id, idempotencyKey: $key) { __typename } }",
        {"id": to_base64("Invoice", str(invoice.id)), "key": "retry\x00one"},
        token=world.tokens["owner"],
    )
    assert answer["data"] is None, answer
    assert [(e["extensions"]["code"], e["extensions"]["field"]) for e in answer["errors"]] == [("BAD_USER_INPUT", "idempotencyKey")]
    assert await IdempotencyKey.all().count() == 0


async def test_an_answer_echoing_a_nul_the_client_sent_is_kept_and_answered_again(client, world):
    void = (
        'mutation($ids: [ID!]!, $key: String) { voidInvoices(ids: $ids, reason: "Duplicate", notifyCustomer: false,'
        " idempotencyKey: $key) { __typename } }"
    )
    variables = {"ids": ["not\x00an-id"], "key": "void-once"}
    first = await gql(client, void, variables, token=world.tokens["owner"])
    assert "errors" not in first, first
    assert await gql(client, void, variables, token=world.tokens["owner"]) == first
    assert await IdempotencyKey.filter(state="DONE").count() == 1
