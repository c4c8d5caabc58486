"""GraphQL types of credit notes: the credit note, its lines and the uses of its credit, the
list's filter and order, the inputs and payloads of issuing one and of using its credit."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import relay

from infra import links
from models import CreditNoteLine as CreditNoteLineModel
from models import CreditUseEntry as CreditUseModel
from models import Invoice as InvoiceModel
from models import ManagedAccount as ManagedAccountModel
from models import User as UserModel
from models import credit_notes as domain
from models.currencies import round_money
from models.einvoicing.files import ready_revisions
from schema.core.context import Info
from schema.core.errors import (
    AmountExceededError,
    ConflictError,
    CreditExceededError,
    InvalidTransitionError,
    NotFoundError,
    ValidationError,
)
from schema.core.nodes import filter_uuids, scoped_nodes
from schema.core.pagination import CountedConnection, Direction
from schema.core.permissions import ANY_USER, MSP_USERS, requires
from schema.core.scalars import Month
from schema.invoices.enums import DeliveryStatus
from schema.invoices.types import Invoice
from schema.line_kinds import LineKind
from schema.managed_accounts import ManagedAccount

# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
CreditMode = domain.CreditMode
strawberry.enum(
    CreditMode,
    description="How a credit note was chosen: FULL (every line of the invoice, or what is left to "
    "credit), LINES (chosen usage or markup lines, with their share of taxes and charges) or AMOUNT "
    "(an amount, taxes included, split into the invoice's taxes and charges in proportion).",
)
CreditUse = domain.CreditUse
strawberry.enum(
    CreditUse, description="Where account credit went: REFUND (paid back) or INVOICE (applied to an invoice)."
)


@strawberry.enum(description="What is left of a credit note: ALLOCATED (all of it lowered its invoice, "
                 "or was refunded or applied) or CREDIT_AVAILABLE (part is account credit to refund or apply).")
class CreditNoteStatus(Enum):
    ALLOCATED = "ALLOCATED"
    CREDIT_AVAILABLE = "CREDIT_AVAILABLE"


@strawberry.type(description="One printed line of a credit note; positive where it credits the customer.")
class CreditNoteLine:
    position: int = strawberry.field(description="Order on the credit note, from 1.")
    kind: LineKind = strawberry.field(description="What the line credits: usage, a rule line, a charge or a tax.")
    description: str = strawberry.field(description="The text printed on the line.")
    invoice_line_position: int | None = strawberry.field(
        description="The position of the invoice line it credits; null for the net line of a credit by amount."
    )
    amount: Decimal = strawberry.field(description="Amount credited, in the credit note's currency.")

    @classmethod
    def from_row(cls, row: dict, currency: str) -> CreditNoteLine:
        return cls(
            position=row["position"], kind=row["kind"], description=row["description"],
            invoice_line_position=row["invoice_line_position"], amount=round_money(row["amount"], currency),
        )


@strawberry.type(description="Account credit of a credit note refunded to the customer or applied to an invoice.")
class CreditNoteUse:
    kind: CreditUse = strawberry.field(description="Refunded, or applied to an invoice.")
    amount: Decimal = strawberry.field(description="The amount, in the credit note's currency.")
    used_on: date = strawberry.field(description="The day it was refunded or applied.")
    created_at: datetime = strawberry.field(description="When it was recorded.")
    row: strawberry.Private[dict]

    @strawberry.field(description="The invoice the credit was applied to; null for a refund.")
    async def invoice(self, info: Info) -> Invoice | None:
        row = await info.context.loaders.by_id(InvoiceModel).load(self.row["invoice_id"])
        return Invoice.from_model(row) if row else None

    @strawberry.field(description="The bank reference of a refund (internal).", extensions=requires(*MSP_USERS))
    def reference(self) -> str:
        return self.row["reference"]


_COLUMNS = (
    "id", "invoice_id", "managed_account_id", "created_by_id", "pdf_path", "number", "issue_date", "reason", "mode",
    "currency", "subtotal", "charges", "tax_total", "total", "allocated", "amount_refunded", "amount_applied",
    "delivery_status", "created_at",
)


@strawberry.type(name="CreditNote", description="An issued credit note: it credits an approved invoice in full, "
                 "by lines or by an amount, and never changes.")
class CreditNote(relay.Node):
    id: relay.NodeID[str]
    number: str = strawberry.field(description="CN-2026-0001: the organization's own gapless series, per year.")
    issue_date: date = strawberry.field(description="Date of issue, in the organization's time zone.")
    reason: str = strawberry.field(description="Why the invoice was credited (printed and e-mailed).")
    mode: CreditMode = strawberry.field(description="How the credited amount was chosen.")
    currency: str = strawberry.field(description="The invoice's currency (ISO 4217).")
    subtotal: Decimal = strawberry.field(description="Net amount credited (usage and rule lines).")
    tax_total: Decimal = strawberry.field(description="Taxes credited (the TAX lines).")
    charges: Decimal = strawberry.field(description="Taxes and additional charges credited.")
    total: Decimal = strawberry.field(description="Total credited: subtotal plus charges.")
    allocated: Decimal = strawberry.field(
        description="The part that lowered the invoice's amount due when the credit note was issued."
    )
    amount_refunded: Decimal = strawberry.field(description="Account credit refunded to the customer.")
    amount_applied: Decimal = strawberry.field(description="Account credit applied to other invoices.")
    delivery_status: DeliveryStatus = strawberry.field(description="Whether its e-mail went out.")
    created_at: datetime = strawberry.field(description="When it was issued.")
    model: strawberry.Private[Any]

    @classmethod
    def from_model(cls, row: Any) -> CreditNote:
        """From a credit note row (a model, or a dict of its columns)."""
        values: dict[str, Any] = row if isinstance(row, dict) else {name: getattr(row, name) for name in _COLUMNS}
        get = values.__getitem__
        currency = get("currency")

        def money(amount: Decimal) -> Decimal:
            return round_money(amount, currency)

        return cls(
            id=str(get("id")), number=get("number"), issue_date=get("issue_date"), reason=get("reason"),
            mode=CreditMode(get("mode")), currency=currency, subtotal=money(get("subtotal")),
            tax_total=money(get("tax_total")),
            charges=money(get("charges")), total=money(get("total")), allocated=money(get("allocated")),
            amount_refunded=money(get("amount_refunded")), amount_applied=money(get("amount_applied")),
            delivery_status=DeliveryStatus(get("delivery_status")), created_at=get("created_at"),
            model={name: get(name) for name in (
                "id", "invoice_id", "managed_account_id", "created_by_id", "pdf_path", "total", "allocated",
            )},
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, domain.visible_credit_notes)

    @strawberry.field(
        description="Account credit still to refund or apply: the total less what lowered the invoice, less "
        "refunds and credit applied to other invoices, and never more than the customer keeps paid on the "
        "invoice beyond what it owes (a payment refunded with `refundPayment` uses it up too)."
    )
    async def remaining_credit(self, info: Info) -> Decimal:
        return await self._usable(info)

    @strawberry.field(description="Whether account credit is left to refund or apply.")
    async def status(self, info: Info) -> CreditNoteStatus:
        left = await self._usable(info)
        return CreditNoteStatus.CREDIT_AVAILABLE if left > 0 else CreditNoteStatus.ALLOCATED

    async def _usable(self, info: Info) -> Decimal:
        invoice = await info.context.loaders.by_id(InvoiceModel).load(self.model["invoice_id"])
        used = await info.context.loaders.keyed("credit_used", _credit_used).load(self.model["invoice_id"])
        left = self.model["total"] - self.model["allocated"] - self.amount_refunded - self.amount_applied
        return domain.usable_credit(left, self.currency, invoice, used)

    @strawberry.field(description="The invoice it credits.")
    async def invoice(self, info: Info) -> Invoice:
        return Invoice.from_model(await info.context.loaders.by_id(InvoiceModel).load(self.model["invoice_id"]))

    @strawberry.field(description="The customer credited.")
    async def account(self, info: Info) -> ManagedAccount:
        row = await info.context.loaders.by_id(ManagedAccountModel).load(self.model["managed_account_id"])
        return ManagedAccount.from_model(row)

    @strawberry.field(description="The printed lines, in order.")
    async def lines(self, info: Info) -> list[CreditNoteLine]:
        rows = await info.context.loaders.children(CreditNoteLineModel, "credit_note_id", order=("position",)).load(
            self.model["id"])
        return [CreditNoteLine.from_row(r, self.currency) for r in rows]

    @strawberry.field(description="Account credit refunded or applied, oldest first.")
    async def uses(self, info: Info) -> list[CreditNoteUse]:
        rows = await info.context.loaders.children(CreditUseModel, "credit_note_id", order=("created_at", "id")).load(
            self.model["id"])
        return [
            CreditNoteUse(kind=CreditUse(r["kind"]), amount=round_money(r["amount"], self.currency),
                          used_on=r["used_on"], created_at=r["created_at"], row=r)
            for r in rows
        ]

    @strawberry.field(
        description="Signed link to the credit note's PDF, valid for a few minutes (an `<a href>` needs no "
        "token); null until the worker has printed it (moments after issue).",
        extensions=requires(*ANY_USER),
    )
    def pdf_url(self, info: Info) -> str | None:
        if not self.model["pdf_path"]:
            return None
        return links.sign(info.context.settings, info.context.principal, "credit_note_pdf", self.id).url

    @strawberry.field(
        description="Signed link to the credit note as Factur-X (its PDF made PDF/A-3 with an EN 16931 credit "
        "note, type 381, inside); null until printed, or when the credited invoice's revision is not a valid "
        "EN 16931 document.",
        extensions=requires(*ANY_USER),
    )
    async def facturx_url(self, info: Info) -> str | None:
        return await self._einvoice_link(info, "credit_note_facturx")

    @strawberry.field(
        description="Signed link to the credit note as a Peppol BIS Billing 3.0 UBL CreditNote; null as facturxUrl is.",
        extensions=requires(*ANY_USER),
    )
    async def ubl_url(self, info: Info) -> str | None:
        return await self._einvoice_link(info, "credit_note_ubl")

    async def _einvoice_link(self, info: Info, kind: str) -> str | None:
        if not self.model["pdf_path"]:
            return None
        invoice = await info.context.loaders.by_id(InvoiceModel).load(self.model["invoice_id"])
        if invoice is None or not await ready_revisions([invoice.current_revision_id]):
            return None
        return links.sign(info.context.settings, info.context.principal, kind, self.id).url

    @strawberry.field(description="Who issued it (e-mail); null once that user is gone.", extensions=requires(*MSP_USERS))
    async def created_by(self, info: Info) -> str | None:
        user = await info.context.loaders.by_id(UserModel).load(self.model["created_by_id"])
        return user.email if user else None


async def _credit_used(invoice_ids: list[Any]) -> list[Decimal]:
    found = await domain.credit_used(invoice_ids)
    return [found.get(invoice_id, Decimal(0)) for invoice_id in invoice_ids]


def listed_columns(query):
    """A credit note query without the heavy snapshot (it carries the logo): what the type reads."""
    return query.only(*_COLUMNS)


@strawberry.type(description="A page of credit notes.")
class CreditNoteConnection(CountedConnection[CreditNote]):
    pass


@strawberry.enum(description="What credit notes can be sorted by.")
class CreditNoteOrderField(Enum):
    ISSUE_DATE = "issue_date"
    NUMBER = "number"
    TOTAL = "total"
    CREATED_AT = "created_at"


@strawberry.input(description="Sort order of credit notes.")
class CreditNoteOrder:
    field: CreditNoteOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.DESC, description="Direction.")


@strawberry.input(description="Narrow the credit note list; every condition given must hold.")
class CreditNoteFilter:
    account_ids: list[strawberry.ID] | None = strawberry.field(default=None, description="Any of these managed accounts.")
    invoice_ids: list[strawberry.ID] | None = strawberry.field(default=None, description="Crediting any of these invoices.")
    period_from: Month | None = strawberry.field(default=None, description="Credited invoices' billed months from.")
    period_to: Month | None = strawberry.field(default=None, description="Credited invoices' billed months up to.")
    issued_from: date | None = strawberry.field(default=None, description="Issued on or after.")
    issued_to: date | None = strawberry.field(default=None, description="Issued on or before.")
    search: str | None = strawberry.field(
        default=None, description="Part of a credit note number or of the credited invoice's number."
    )

    def to_query(self) -> domain.CreditNoteQuery:
        return domain.CreditNoteQuery(
            account_ids=filter_uuids(self.account_ids, "ManagedAccount"),
            invoice_ids=filter_uuids(self.invoice_ids, "Invoice"), period_from=self.period_from,
            period_to=self.period_to, issued_from=self.issued_from, issued_to=self.issued_to, search=self.search,
        )


@strawberry.input(description="A line of the invoice's current revision to credit.")
class CreditLineInput:
    position: int = strawberry.field(description="The line's position on the invoice (`InvoiceLineItem.position`).")
    amount: Decimal | None = strawberry.field(
        default=None, description="Part of the line to credit (net of tax); omitted: all that is left of it."
    )


@strawberry.input(description="A credit note to issue against an approved invoice.")
class CreateCreditNoteInput:
    invoice_id: strawberry.ID = strawberry.field(description="The approved invoice to credit.")
    reason: str = strawberry.field(description="Why (1 to 1024 characters): printed, e-mailed and on the timeline.")
    mode: CreditMode = strawberry.field(description="Credit the whole invoice, chosen lines, or an amount.")
    lines: list[CreditLineInput] | None = strawberry.field(
        default=None, description="With LINES: the usage or markup lines to credit; their taxes and charges follow."
    )
    amount: Decimal | None = strawberry.field(
        default=None, description="With AMOUNT: the amount to credit, taxes included, at most what is left to credit."
    )
    notify_customer: bool = strawberry.field(
        default=True, description="E-mail the credit note (PDF attached) to the account's billing e-mails."
    )


@strawberry.input(description="Account credit of a credit note to apply to another approved invoice of the account.")
class ApplyCreditInput:
    credit_note_id: strawberry.ID = strawberry.field(description="The credit note whose remaining credit is used.")
    invoice_id: strawberry.ID = strawberry.field(description="The invoice it pays (same account and currency).")
    amount: Decimal | None = strawberry.field(
        default=None, description="How much; omitted: as much as the credit and the invoice's amount due allow."
    )
    applied_on: date | None = strawberry.field(default=None, description="The day it applies (default today).")


@strawberry.input(description="Account credit of a credit note paid back to the customer.")
class RefundCreditInput:
    credit_note_id: strawberry.ID = strawberry.field(description="The credit note whose remaining credit is refunded.")
    amount: Decimal = strawberry.field(description="How much, at most the remaining credit.")
    refunded_on: date = strawberry.field(description="The day the money was paid back (not in the future).")
    reference: str = strawberry.field(default="", description="Bank reference (internal, up to 255 characters).")
    notify_customer: bool = strawberry.field(
        default=True, description="E-mail the account's billing e-mails about the refund."
    )


@strawberry.type(description="The credit note was issued; its PDF and e-mail follow in the background.")
class CreditNoteCreated:
    credit_note: CreditNote = strawberry.field(description="The new credit note.")
    invoice: Invoice = strawberry.field(description="The invoice with its new amount due and payment status.")


@strawberry.type(description="The credit was applied.")
class CreditApplied:
    credit_note: CreditNote = strawberry.field(description="The credit note, with its remaining credit.")
    invoice: Invoice = strawberry.field(description="The invoice paid, with its new amount due and payment status.")


@strawberry.type(description="The refund of account credit was recorded.")
class CreditRefunded:
    credit_note: CreditNote = strawberry.field(description="The credit note, with its remaining credit.")


CreateCreditNotePayload = Annotated[
    CreditNoteCreated | CreditExceededError | ValidationError | NotFoundError | InvalidTransitionError
    | ConflictError,
    strawberry.union("CreateCreditNotePayload", description="The result of `createCreditNote`."),
]
ApplyCreditPayload = Annotated[
    CreditApplied | CreditExceededError | AmountExceededError | ValidationError | NotFoundError
    | InvalidTransitionError | ConflictError,
    strawberry.union("ApplyCreditPayload", description="The result of `applyCredit`."),
]
RefundCreditPayload = Annotated[
    CreditRefunded | CreditExceededError | ValidationError | NotFoundError | ConflictError,
    strawberry.union("RefundCreditPayload", description="The result of `refundCredit`."),
]
