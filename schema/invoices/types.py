"""The invoice, and the loading of its relations for a whole page of invoices at once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Annotated, Any, NamedTuple, cast
from uuid import UUID

import strawberry
from strawberry import relay

from infra import links
from models import BillingPeriod as BillingPeriodModel
from models import CreditNote as CreditNoteModel
from models import Invoice as InvoiceModel
from models import InvoiceEvent as InvoiceEventModel
from models import InvoiceRevision as InvoiceRevisionModel
from models import ManagedAccount as ManagedAccountModel
from models import Payment as PaymentModel
from models import Refund as RefundModel
from models import ReminderStop as ReminderStopModel
from models import User as UserModel
from models import XeroSync as XeroSyncModel
from models import invoices as domain
from models.currencies import round_money
from models.invoices import checks
from models.xero import DocumentKind
from schema.core.context import Info
from schema.core.execution import PREFETCHED
from schema.core.loaders import load_all
from schema.core.nodes import schema_type, scoped_nodes
from schema.core.pagination import selected_node_fields
from schema.core.permissions import ANY_USER, MSP_USERS, requires
from schema.core.scalars import Month, plain
from schema.invoices.enums import DeliveryStatus, InvoiceDisplayStatus, InvoiceKind, InvoiceStatus, PaymentStatus
from schema.invoices.parts import InvoiceCheck, InvoiceEvent, InvoiceItem, InvoiceLineItem, InvoiceRevision, revision_lines
from schema.managed_accounts import ManagedAccount
from schema.payments import Payment, Refund
from schema.xero import XeroSync

# Named, not imported: schema.credit_notes imports this module (a credit note's invoice).
CreditNoteRef = Annotated["CreditNote", strawberry.lazy("schema.credit_notes")]  # type: ignore[name-defined]  # noqa: F821


@strawberry.type(name="Invoice", description="A managed account's invoice for one month.")
class Invoice(relay.Node):
    id: relay.NodeID[str]
    number: str | None = strawberry.field(description="INV-2026-0042; set on first generation, kept for good.")
    status: InvoiceStatus = strawberry.field(description="Lifecycle status.")
    payment_status: PaymentStatus = strawberry.field(description="Payment status.")
    delivery_status: DeliveryStatus = strawberry.field(description="E-mail delivery status.")
    currency: str = strawberry.field(description="Invoice currency (ISO 4217).")
    subtotal: Decimal = strawberry.field(description="Usage after billing rules.")
    adjustments: Decimal = strawberry.field(description="Credits, discounts and markups.")
    charges: Decimal = strawberry.field(description="Taxes and additional charges (taxTotal included).")
    tax_total: Decimal = strawberry.field(description="The taxes' part of charges; the rest are additional charges.")
    total: Decimal = strawberry.field(description="Invoice total.")
    amount_paid: Decimal = strawberry.field(description="Sum of payments (refunds do not lower it).")
    amount_refunded: Decimal = strawberry.field(description="Sum of refunds; at most the amount paid.")
    amount_credited: Decimal = strawberry.field(description="Sum of the invoice's credit notes.")
    credit_applied: Decimal = strawberry.field(description="Account credit of other credit notes applied to this invoice (counts as paid).")
    amount_due: Decimal = strawberry.field(
        description="Total less credit notes, payments and credit applied, never negative; a refund does not "
        "reopen the invoice; 0 once voided."
    )
    kind: InvoiceKind = strawberry.field(description="The month's invoice, or a supplementary one.")
    display_status: InvoiceDisplayStatus = strawberry.field(
        description="The one status a list shows (see InvoiceDisplayStatus for the mapping)."
    )
    memo: str = strawberry.field(description="A note for the customer printed on the invoice; empty when none.")
    provider: str | None = strawberry.field(
        description="The cloud provider this invoice bills alone (accounts invoiced per provider); null when it bills every provider."
    )
    issue_date: date | None = strawberry.field(
        description="Date of issue: the day of the first generation, kept by regenerations (the "
        "number is taken then too, so numbers and dates rise together); a replacement has its own."
    )
    due_date: date | None = strawberry.field(description="Issue date plus the account's payment terms as they were at the last generation.")
    approved_at: datetime | None = strawberry.field(description="When it was approved.")
    voided_at: datetime | None = strawberry.field(description="When it was voided; voiding is final.")
    created_at: datetime = strawberry.field(description="When the month closed for it.")
    updated_at: datetime = strawberry.field(description="Last change.")
    model: strawberry.Private[InvoiceModel]
    # Relations loaded with the page (`prefetch`), by GraphQL field name.
    related: strawberry.Private[dict[str, Any]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_model(cls, row: InvoiceModel) -> Invoice:
        """The invoice of a row; each field is converted when first read (`__getattr__`):
        a page holds a hundred invoices of which a list asks few fields."""
        invoice = object.__new__(cls)
        invoice.__dict__.update(model=row, related={})
        return invoice

    def __getattr__(self, name: str) -> Any:
        # Reached only for a field not read yet (the instance's dict has no such key).
        convert = _INVOICE_FIELDS.get(name)
        if convert is None or "model" not in self.__dict__:
            raise AttributeError(name)
        value = self.__dict__[name] = convert(self.__dict__["model"])
        return value

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, domain.visible_invoices)

    def _related(self, info: Info, name: str) -> Any:
        """The relation as the page loaded it, as a plain value: GraphQL completes it at once,
        without a coroutine and a future per invoice. Otherwise (one invoice, a `node`) an
        awaitable loading it through the request's dataloaders."""
        if name in self.related:
            return self.related[name]
        return _first(RELATIONS[name].load(info, [self]))

    # The relation resolvers are plain functions that may return an awaitable (see _related).
    # The relation resolvers are answered from `related` without calling them when the page
    # loaded it and they have no permission of their own (schema/core/execution.py: `answer_prefetched`).
    @strawberry.field(description="The customer billed.", metadata=PREFETCHED)
    def account(self, info: Info) -> ManagedAccount:
        return self._related(info, "account")

    @strawberry.field(description="The month billed.", metadata=PREFETCHED)
    def period(self, info: Info) -> Month:
        return self._related(info, "period")

    @strawberry.field(description="The lines of the current revision, in order.", metadata=PREFETCHED)
    def line_items(self, info: Info) -> list[InvoiceLineItem]:
        return self._related(info, "lineItems")

    @strawberry.field(
        description="One line of the current revision by its position (`InvoiceLineItem.position`); null when "
        "there is none. A console pages through one line's `costs` with it, without reading the other lines'."
    )
    async def line_item(self, info: Info, position: int) -> InvoiceLineItem | None:
        (lines,) = await _line_items(info, [self])
        return next((line for line in lines if line.position == position), None)

    @strawberry.field(description="Payments received, in the order they were made.", metadata=PREFETCHED)
    def payments(self, info: Info) -> list[Payment]:
        return self._related(info, "payments")

    @strawberry.field(description="Refunds made, in the order they were made.", metadata=PREFETCHED)
    def refunds(self, info: Info) -> list[Refund]:
        return self._related(info, "refunds")

    @strawberry.field(description="Credit notes issued against the invoice, oldest first.")
    async def credit_notes(self, info: Info) -> list[CreditNoteRef]:
        # Whoever sees the invoice sees its credit notes (all are issued).
        rows = await info.context.loaders.children(CreditNoteModel, "invoice_id", order=("created_at", "id")).load(self.model.id)
        return [schema_type(info, "CreditNote").from_model(row) for row in rows]

    @strawberry.field(
        description="Signed link to the current revision's PDF, valid for a few minutes (an "
        "`<a href>` needs no token); null while there is no PDF.",
        extensions=requires(*ANY_USER),
    )
    async def pdf_url(self, info: Info) -> str | None:
        if self.model.current_revision_id is None:
            return None
        # Not the whole revision: its snapshot carries the logo.
        loader = info.context.loaders.by_id(InvoiceRevisionModel, only=("pdf_path",))
        revision = await loader.load(self.model.current_revision_id)
        if revision is None or not revision.pdf_path:
            return None
        return links.sign(info.context.settings, info.context.principal, "pdf", str(self.model.id)).url

    @strawberry.field(
        description="Signed link to the invoice's lines as a detailed CSV, valid for a few minutes; null until the invoice is generated.",
        extensions=requires(*ANY_USER),
    )
    def csv_url(self, info: Info) -> str | None:
        if self.model.current_revision_id is None:
            return None
        return links.sign(info.context.settings, info.context.principal, "csv", str(self.model.id)).url

    async def _einvoice_url(self, info: Info, kind: str) -> str | None:
        revision_id = self.model.current_revision_id
        if self.model.approved_at is None or revision_id is None:
            return None
        if not await info.context.loaders.einvoice_ready().load(revision_id):
            return None
        return links.sign(info.context.settings, info.context.principal, kind, str(self.model.id)).url

    @strawberry.field(
        description="Signed link, valid for a few minutes, to the approved invoice as Factur-X: its PDF "
        "as PDF/A-3 with the EN 16931 Cross Industry Invoice XML of the same frozen revision inside "
        "(ZUGFeRD 2 readers take it too); null before approval, or when the revision lacks what "
        "EN 16931 needs (identifiers, VAT, IBAN: see `Organization.einvoicing`).",
        extensions=requires(*ANY_USER),
    )
    async def facturx_url(self, info: Info) -> str | None:
        return await self._einvoice_url(info, "facturx")

    @strawberry.field(
        description="Signed link, valid for a few minutes, to the approved invoice as a Peppol BIS "
        "Billing 3.0 UBL 2.1 document of the same frozen revision; null when `facturxUrl` is.",
        extensions=requires(*ANY_USER),
    )
    async def ubl_url(self, info: Info) -> str | None:
        return await self._einvoice_url(info, "ubl")

    @strawberry.field(description="Every generation, oldest first.", extensions=requires(*MSP_USERS))
    async def revisions(self, info: Info) -> list[InvoiceRevision]:
        rows = await info.context.loaders.children(InvoiceRevisionModel, "invoice_id", order=("revision",)).load(self.model.id)
        return [InvoiceRevision.from_row(r) for r in rows]

    @strawberry.field(description="Who did what, when; oldest first.", extensions=requires(*MSP_USERS), metadata=PREFETCHED)
    def timeline(self, info: Info) -> list[InvoiceEvent]:
        return self._related(info, "timeline")

    @strawberry.field(
        description="The day the invoice was settled: the last payment's, once payments reached the total; null while anything is due."
    )
    async def paid_at(self, info: Info) -> date | None:
        if self.model.total <= 0 or self.model.amount_paid < self.model.total:
            return None
        payments = self._related(info, "payments")
        if not isinstance(payments, list):
            payments = await payments
        return max((payment.paid_on for payment in payments), default=None)

    @strawberry.field(
        description="When the invoice is approved and sent by itself (accounts auto-invoicing with "
        "SEND), unless cancelled (`cancelQueuedInvoice`) or approved sooner; null when nothing is queued.",
        extensions=requires(*MSP_USERS),
    )
    def auto_send_at(self) -> datetime | None:
        return self.model.auto_send_at

    @strawberry.field(
        description="Whether an owner stopped this invoice's payment reminders (`stopReminders`).",
        extensions=requires(*MSP_USERS),
    )
    async def reminders_stopped(self, info: Info) -> bool | None:
        return await info.context.loaders.counts(ReminderStopModel, "invoice_id").load(self.model.id) > 0

    @strawberry.field(
        description="One-off items added by hand, in order (each also a ONE_OFF line once generated).",
        extensions=requires(*MSP_USERS),
    )
    async def items(self, info: Info) -> list[InvoiceItem]:
        rows = await domain.InvoiceExtraLine.filter(invoice_id=self.model.id).order_by("position")
        return [InvoiceItem.from_model(row, self.currency) for row in rows]

    @strawberry.field(
        description="What the checks before approval found: the current revision's findings and, while "
        "it awaits approval, what changed since it was generated. Warnings must be acknowledged by "
        "`approveInvoices(acknowledge:)`.",
        extensions=requires(*MSP_USERS),
    )
    async def checks(self, info: Info) -> list[InvoiceCheck]:
        # A page of invoices reads its findings together (a month's list: a few statements).
        found = await info.context.loaders.keyed("checks", checks.current_findings_of).load(self.model)
        return [
            InvoiceCheck(code=f.code, severity=f.severity, message=f.message, figures=cast(Any, f.figures))
            for f in found
        ]

    @strawberry.field(description="The voided invoice this one replaces, if any (and if visible to you).")
    async def replaces(self, info: Info) -> Invoice | None:
        if self.model.replaces_id is None:
            return None
        row = await domain.visible_invoices(info.context.principal).get_or_none(id=self.model.replaces_id)
        return Invoice.from_model(row) if row else None

    @strawberry.field(description="The invoice that replaces this voided one, if any (and if visible to you).")
    async def replaced_by(self, info: Info) -> Invoice | None:
        if self.status != InvoiceStatus.VOIDED:
            return None
        row = await domain.visible_invoices(info.context.principal).get_or_none(replaces_id=self.model.id)
        return Invoice.from_model(row) if row else None

    @strawberry.field(
        description="What cost deliveries received after approval say about this invoice's month, "
        "per cost currency: the difference from what was invoiced, what is left to bill, and the "
        "invoices that bill it (a line on a later invoice, or a supplementary invoice).",
        extensions=requires(*MSP_USERS),
    )
    async def late_costs(self, info: Info) -> list[InvoiceLateCost]:
        rows = await domain.late_costs_of(self.model.id)
        billing = {
            row.id: row
            for row in await domain.visible_invoices(info.context.principal).filter(id__in=[i for r in rows for i in r["billed_by"]])
        }
        return [
            InvoiceLateCost(
                currency=r["currency"],
                invoiced_cost=plain(r["invoiced_cost"]),
                delivered_cost=plain(r["delivered_cost"]),
                difference=plain(r["difference"]),
                pending=plain(r["pending"]),
                invoiced_rows=r["invoiced_rows"],
                delivered_rows=r["delivered_rows"],
                billed_by=[Invoice.from_model(billing[i]) for i in r["billed_by"] if i in billing],
            )
            for r in rows
        ]

    @strawberry.field(
        description="Why generation failed, in words a person can act on.",
        extensions=requires(*MSP_USERS),
    )
    def error_message(self) -> str | None:
        return self.model.error_message

    @strawberry.field(
        description="Where the invoice stands with Xero (state, message, attempts); null until it is pushed.",
        extensions=requires(*MSP_USERS),
    )
    async def xero_sync(self, info: Info) -> XeroSync | None:
        row = await _xero_sync(info, self.model.id)
        return XeroSync.from_row(row) if row else None

    @strawberry.field(
        description="Xero's deep link to the invoice once Xero has it (Xero's documented "
        "`go.xero.com/organisationlogin/...AccountsReceivable/View.aspx?InvoiceID=` form); null before.",
        extensions=requires(*MSP_USERS),
    )
    async def xero_url(self, info: Info) -> str | None:
        row = await _xero_sync(info, self.model.id)
        return row["xero_url"] if row else None


async def _xero_sync(info: Info, invoice_id: UUID) -> dict[str, Any] | None:
    """The invoice's own push state (a credit note of it has its own)."""
    rows = await info.context.loaders.children(XeroSyncModel, "invoice_id").load(invoice_id)
    return next((row for row in rows if row["document_kind"] == DocumentKind.INVOICE), None)


@strawberry.type(description="Costs delivered for an invoice's month after its approval, in one cost currency.")
class InvoiceLateCost:
    currency: str = strawberry.field(description="The cost currency (ISO 4217).")
    invoiced_cost: Decimal = strawberry.field(description="What the invoice was made of, of the restated deliveries.")
    delivered_cost: Decimal = strawberry.field(description="What the latest deliveries say instead.")
    difference: Decimal = strawberry.field(description="Delivered less invoiced; negative when they lowered the costs.")
    pending: Decimal = strawberry.field(description="Part of the difference no invoice bills yet.")
    invoiced_rows: int = strawberry.field(description="Cost rows the invoice was made of, of those deliveries.")
    delivered_rows: int = strawberry.field(description="Cost rows the latest deliveries hold.")
    billed_by: list[Invoice] = strawberry.field(description="Invoices that bill the rest of the difference.")


def _money(attribute: str) -> Callable[[InvoiceModel], Decimal]:
    return lambda row: round_money(getattr(row, attribute), row.currency)


# How each field of an Invoice is read from its row.
_INVOICE_FIELDS: dict[str, Callable[[InvoiceModel], Any]] = {
    "id": lambda row: str(row.id),
    **{
        name: attrgetter(name)
        for name in (
            "number",
            "status",
            "payment_status",
            "delivery_status",
            "currency",
            "issue_date",
            "due_date",
            "approved_at",
            "voided_at",
            "created_at",
            "updated_at",
            "kind",
            "memo",
        )
    },
    **{
        name: _money(name)
        for name in (
            "subtotal",
            "adjustments",
            "charges",
            "tax_total",
            "total",
            "amount_paid",
            "amount_refunded",
            "amount_credited",
            "credit_applied",
        )
    },
    "amount_due": lambda row: round_money(domain.amount_due(row), row.currency),
    "display_status": domain.display_status,
    "provider": lambda row: row.provider_name or None,
}


async def _first(values: Awaitable[list[Any]]) -> Any:
    return (await values)[0]


# Loaders of a relation for many invoices at once, one value per invoice, in order. They go
# through the request's dataloaders, so pages loaded side by side still share each query.


async def _accounts(info: Info, invoices: list[Invoice]) -> list[ManagedAccount]:
    ids = [i.model.managed_account_id for i in invoices]
    rows = await load_all(info.context.loaders.by_id(ManagedAccountModel), dict.fromkeys(ids))
    # An account's invoices share one value: it is read-only.
    accounts = {row.id: ManagedAccount.from_model(row) for row in rows}
    return [accounts[account_id] for account_id in ids]


async def _periods(info: Info, invoices: list[Invoice]) -> list[date]:
    ids = [i.model.billing_period_id for i in invoices]
    rows = await load_all(info.context.loaders.by_id(BillingPeriodModel), dict.fromkeys(ids))
    months = {row.id: row.start_date for row in rows}
    return [months[period_id] for period_id in ids]


async def _line_items(info: Info, invoices: list[Invoice]) -> list[list[InvoiceLineItem]]:
    keys = [(i.model.current_revision_id, i.model.currency) for i in invoices if i.model.current_revision_id is not None]
    # Looked up by every invoice's revision and currency, no revision (no lines yet) included.
    lines: dict[tuple[UUID | None, str], list[Any]] = dict(zip(keys, await load_all(revision_lines(info), keys)))
    return [
        InvoiceLineItem.from_rows(lines.get((i.model.current_revision_id, i.model.currency), []), i.model.currency, i.model)
        for i in invoices
    ]


def _children(
    info: Info, model: type, order: tuple[str, ...], invoices: list[Invoice], *, raw: bool = False
) -> Awaitable[list[list[Any]]]:
    loader = info.context.loaders.children(model, "invoice_id", order=order, raw=raw)
    return load_all(loader, [i.model.id for i in invoices])


async def _payments(info: Info, invoices: list[Invoice]) -> list[list[Payment]]:
    rows = await _children(info, PaymentModel, ("paid_on", "created_at", "id"), invoices)
    return [[Payment.from_row(r, i.currency) for r in payments] for i, payments in zip(invoices, rows)]


async def _refunds(info: Info, invoices: list[Invoice]) -> list[list[Refund]]:
    rows = await _children(info, RefundModel, ("refunded_on", "created_at", "id"), invoices)
    return [[Refund.from_row(r, i.currency) for r in refunds] for i, refunds in zip(invoices, rows)]


async def _timelines(info: Info, invoices: list[Invoice]) -> list[list[InvoiceEvent]]:
    # The driver's records: a page's timelines are a hundred rows or more, read as they come.
    rows = await _children(info, InvoiceEventModel, ("at", "id"), invoices, raw=True)
    actor_ids = list({r["actor_id"] for events in rows for r in events if r["actor_id"] is not None})
    users = await load_all(info.context.loaders.by_id(UserModel), actor_ids)
    emails = {user.id: user.email for user in users if user is not None}
    return [[InvoiceEvent.from_row(r, emails.get(r["actor_id"])) for r in events] for events in rows]


class _Relation(NamedTuple):
    load: Callable[[Info, list[Invoice]], Awaitable[list[Any]]]
    # Who may ask for it: the field's own scope check still decides; this only spares the
    # page a query whose answer would be refused.
    scopes: tuple = ANY_USER


RELATIONS: dict[str, _Relation] = {
    "account": _Relation(_accounts),
    "period": _Relation(_periods),
    "lineItems": _Relation(_line_items),
    "payments": _Relation(_payments),
    "refunds": _Relation(_refunds),
    "timeline": _Relation(_timelines, MSP_USERS),
}


async def prefetch(info: Info, invoices: list[Invoice]) -> None:
    """Load the relations asked of a page of invoices for the whole page at once (one query
    each, side by side) and keep them on the invoices, which then resolve them synchronously."""
    scope = info.context.authenticated().scope
    names = [n for n in selected_node_fields(info) if n in RELATIONS and scope in RELATIONS[n].scopes]
    if not invoices or not names:
        return
    loaded = await asyncio.gather(*(RELATIONS[name].load(info, invoices) for name in names))
    for name, values in zip(names, loaded):
        for invoice, value in zip(invoices, values):
            invoice.related[name] = value
