"""Credit notes: the list, issuing one, and using the account credit it leaves."""

from __future__ import annotations

import strawberry

from models import credit_notes
from models.credit_notes import LineCredit
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid
from schema.core.pagination import Direction, paginate
from schema.core.permissions import ANY_USER, OWNERS, requires
from schema.credit_notes import (
    ApplyCreditInput,
    ApplyCreditPayload,
    CreateCreditNoteInput,
    CreateCreditNotePayload,
    CreditApplied,
    CreditNote,
    CreditNoteConnection,
    CreditNoteCreated,
    CreditNoteFilter,
    CreditNoteOrder,
    CreditNoteOrderField,
    CreditRefunded,
    RefundCreditInput,
    RefundCreditPayload,
    listed_columns,
)
from schema.invoices import Invoice


@strawberry.type
class Query:
    @strawberry.field(
        description="Credit notes visible to you: your organization's, or (for a customer) your account's.",
        extensions=requires(*ANY_USER),
    )
    async def credit_notes(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
        filter: CreditNoteFilter | None = None, order_by: CreditNoteOrder | None = None,
    ) -> CreditNoteConnection:
        query = credit_notes.visible_credit_notes(info.context.authenticated())
        if filter is not None:
            query = credit_notes.filter_credit_notes(query, filter.to_query())
        order = order_by or CreditNoteOrder(field=CreditNoteOrderField.CREATED_AT, direction=Direction.DESC)
        return await paginate(
            info, CreditNoteConnection, listed_columns(query), CreditNote.from_model, order,
            first=first, after=after, last=last, before=before,
        )


@strawberry.type
class Mutation:
    @mutation(
        description="Credit an approved invoice in full, by lines or by an amount, with a reason. The credit note "
        "gets its own number (CN-2026-0001), never changes, lowers what the invoice leaves due (what was paid "
        "beyond it is account credit to refund or apply), and is printed and e-mailed in the background.",
        scopes=OWNERS, idempotent=True,
    )
    async def create_credit_note(self, info: Info, input: CreateCreditNoteInput) -> CreateCreditNotePayload:
        lines = None if input.lines is None else [LineCredit(line.position, line.amount) for line in input.lines]
        done = await credit_notes.create_credit_note(
            info.context.principal, node_uuid(input.invoice_id, "Invoice", field="invoiceId"), reason=input.reason,
            mode=input.mode, lines=lines, amount=input.amount, notify_customer=input.notify_customer,
        )
        return CreditNoteCreated(credit_note=CreditNote.from_model(done.credit_note), invoice=Invoice.from_model(done.invoice))

    @mutation(
        description="Apply a credit note's remaining account credit to another approved invoice of the account "
        "(its next invoice): it lowers that invoice's amount due as a payment does.",
        scopes=OWNERS, idempotent=True,
    )
    async def apply_credit(self, info: Info, input: ApplyCreditInput) -> ApplyCreditPayload:
        done = await credit_notes.apply_credit(
            info.context.principal, node_uuid(input.credit_note_id, "CreditNote", field="creditNoteId"),
            node_uuid(input.invoice_id, "Invoice", field="invoiceId"), amount=input.amount, applied_on=input.applied_on,
        )
        assert done.invoice is not None, "credit applied goes to an invoice"
        return CreditApplied(credit_note=CreditNote.from_model(done.credit_note), invoice=Invoice.from_model(done.invoice))

    @mutation(
        description="Record that a credit note's remaining account credit was paid back to the customer.",
        scopes=OWNERS, idempotent=True,
    )
    async def refund_credit(self, info: Info, input: RefundCreditInput) -> RefundCreditPayload:
        done = await credit_notes.refund_credit(
            info.context.principal, node_uuid(input.credit_note_id, "CreditNote", field="creditNoteId"),
            amount=input.amount, refunded_on=input.refunded_on, reference=input.reference,
            notify_customer=input.notify_customer,
        )
        return CreditRefunded(credit_note=CreditNote.from_model(done.credit_note))
