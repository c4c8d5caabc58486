"""The invoice, its lines, revisions and timeline, and the loading of their relations for a
whole page of invoices at once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, NamedTuple
from uuid import UUID

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from infra import links
from models import BillingPeriod as BillingPeriodModel
from models import Invoice as InvoiceModel
from models import InvoiceEvent as InvoiceEventModel
from models import InvoiceLineItem as InvoiceLineItemModel
from models import InvoiceRevision as InvoiceRevisionModel
from models import ManagedAccount as ManagedAccountModel
from models import Payment as PaymentModel
from models import Refund as RefundModel
from models import User as UserModel
from models import invoices as domain
from models.currencies import round_money
from schema.context import Info
from schema.execution import PREFETCHED
from schema.managed_accounts import ManagedAccount
from schema.nodes import scoped_nodes
from schema.pagination import selected_node_fields
from schema.payments import Payment, Refund
from schema.permissions import ANY_USER, MSP_USERS, requires
from schema.scalars import Month, plain

# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
InvoiceStatus = domain.InvoiceStatus
strawberry.enum(
    InvoiceStatus,
    description="Where an invoice is in its life: READY_TO_INVOICE after the month closes, "
    "GENERATING while its PDF is made, AWAITING_APPROVAL for review, ERROR when generation "
    "failed, APPROVED once sent (frozen), VOIDED when cancelled.",
)
PaymentStatus = domain.PaymentStatus
strawberry.enum(
    PaymentStatus, description="What has been paid (or refunded) against the invoice."
)
DeliveryStatus = domain.DeliveryStatus
strawberry.enum(
    DeliveryStatus, description="Whether the approved invoice's e-mail went out."
)
LineKind = domain.LineKind
strawberry.enum(
    LineKind,
    description="USAGE (cloud costs), RULE (credit, discount or markup), CHARGE (additional "
    "charge) or TAX.",
)
InvoiceDatePreset = domain.DatePreset
strawberry.enum(
    InvoiceDatePreset,
    description="A date range relative to today in the organization's time zone, applied "
    "to the issue date.",
)


@strawberry.type(description="One printed line of an invoice.")
class InvoiceLineItem:
    position: int = strawberry.field(description="Order on the invoice, from 1.")
    kind: LineKind = strawberry.field(description="What the line is.")
    description: str = strawberry.field(description="The text printed on the line.")
    provider: str = strawberry.field(description="Cloud provider (AWS, Microsoft, ...), if any.")
    service: str = strawberry.field(description="Cloud service, if any.")
    service_category: str = strawberry.field(description="FOCUS service category, if any.")
    quantity: Decimal | None = strawberry.field(description="Usage quantity, when units agree.")
    unit: str | None = strawberry.field(description="Unit of the quantity.")
    unit_price: Decimal | None = strawberry.field(description="Price per unit, when meaningful.")
    amount: Decimal = strawberry.field(description="Line total in the invoice currency.")

    @classmethod
    def from_row(cls, line: Any, currency: str) -> InvoiceLineItem:
        """From a row of `_lines` (a record: the kind and the numbers come as their text). A page of a list
        holds thousands of lines of which few fields are asked: each field is converted when
        first read (`__getattr__`), not all of them for every line."""
        item = object.__new__(cls)
        # The amount, which nearly every list asks for, at once; the rest when read.
        item.__dict__.update(_row=line, _currency=currency, amount=round_money(Decimal(line["amount"]), currency))
        return item

    def __getattr__(self, name: str) -> Any:
        # Reached only for a field not read yet (the instance's dict has no such key).
        convert = _LINE_FIELDS.get(name)
        if convert is None:
            raise AttributeError(name)
        state = self.__dict__
        value = state[name] = convert(state["_row"], state["_currency"])
        return value


def _optional_plain(value: str | None) -> Decimal | None:
    return plain(Decimal(value)) if value is not None else None


# How each field of an InvoiceLineItem is read from its row (and the invoice's currency).
_LINE_FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "position": lambda row, _: row["position"],
    "kind": lambda row, _: LineKind(row["kind"]),
    "description": lambda row, _: row["description"],
    "provider": lambda row, _: row["provider_name"],
    "service": lambda row, _: row["service_name"],
    "service_category": lambda row, _: row["service_category"],
    "quantity": lambda row, _: _optional_plain(row["quantity"]),
    "unit": lambda row, _: row["unit"],
    "unit_price": lambda row, _: _optional_plain(row["unit_price"]),
    "amount": lambda row, currency: round_money(Decimal(row["amount"]), currency),
}


@strawberry.type(description="One generation of an invoice, frozen: what was computed and printed.")
class InvoiceRevision:
    revision: int = strawberry.field(description="1 for the first generation, then 2, 3, ...")
    created_at: datetime = strawberry.field(description="When it was generated.")
    template_version: str = strawberry.field(description="Version of the invoice template used.")
    currency: str = strawberry.field(description="Invoice currency.")
    cost_currency: str = strawberry.field(description="Currency the costs were billed in.")
    exchange_rate: Decimal = strawberry.field(description="Rate applied (1 when none was needed).")
    subtotal: Decimal = strawberry.field(description="Usage after billing rules.")
    adjustments: Decimal = strawberry.field(description="Credits, discounts and markups.")
    charges: Decimal = strawberry.field(description="Taxes and additional charges.")
    total: Decimal = strawberry.field(description="What the revision totals to.")
    pdf_sha256: str | None = strawberry.field(description="SHA-256 of the revision's PDF.")
    revision_id: strawberry.Private[object]

    @classmethod
    def from_row(cls, row: dict) -> InvoiceRevision:
        return cls(
            revision=row["revision"], created_at=row["created_at"],
            template_version=row["template_version"], currency=row["currency"],
            cost_currency=row["cost_currency"], exchange_rate=plain(row["exchange_rate"]),
            subtotal=round_money(row["subtotal"], row["currency"]),
            adjustments=round_money(row["adjustments"], row["currency"]),
            charges=round_money(row["charges"], row["currency"]),
            total=round_money(row["total"], row["currency"]),
            pdf_sha256=row["pdf_sha256"], revision_id=row["id"],
        )

    @strawberry.field(description="The revision's lines, in order.")
    async def line_items(self, info: Info) -> list[InvoiceLineItem]:
        return [InvoiceLineItem.from_row(r, self.currency) for r in await _lines(info).load(self.revision_id)]


@strawberry.type(description="A timeline entry: who did what to the invoice, and when.")
class InvoiceEvent:
    at: datetime = strawberry.field(description="When it happened.")
    actor: str = strawberry.field(description="Who did it: a user's e-mail, or the system part.")
    kind: str = strawberry.field(
        description="What happened: a transition (GENERATE, REGENERATE, GENERATED, FAILED, APPROVE, "
        "VOID), RESEND_REQUESTED, SENT or DELIVERY_FAILED (the invoice e-mail, per recipient), "
        "PAYMENT_RECORDED, PAYMENT_REFUNDED, OVERDUE, NOTIFICATION_SENT or NOTIFICATION_FAILED "
        "(a notice to the customer, per recipient)."
    )
    from_status: str | None = strawberry.field(description="Status before, for transitions.")
    to_status: str | None = strawberry.field(description="Status after, for transitions.")
    detail: JSON = strawberry.field(description="Particulars (amounts, recipients, errors).")

    @classmethod
    def from_row(cls, row: dict, actor_email: str | None) -> InvoiceEvent:
        return cls(
            at=row["at"], actor=actor_email or row["actor_label"], kind=row["kind"],
            from_status=row["from_status"], to_status=row["to_status"], detail=row["detail"],
        )


def _lines(info: Info):
    return info.context.loaders.children(InvoiceLineItemModel, "revision_id", order=("position",), raw=True)


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
    charges: Decimal = strawberry.field(description="Taxes and additional charges.")
    total: Decimal = strawberry.field(description="Invoice total.")
    amount_paid: Decimal = strawberry.field(description="Sum of payments (refunds do not lower it).")
    amount_refunded: Decimal = strawberry.field(description="Sum of refunds; at most the amount paid.")
    amount_due: Decimal = strawberry.field(
        description="Total less payments, never negative; a refund does not reopen the invoice; 0 once voided."
    )
    issue_date: date | None = strawberry.field(description="Date of issue (first generation).")
    due_date: date | None = strawberry.field(description="Issue date plus the payment terms.")
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

    # The relation resolvers are plain functions that may return an awaitable (see _related);
    # those without a permission of their own are answered from `related` without calling them
    # when the page loaded it (schema/execution.py: `answer_prefetched`).
    @strawberry.field(description="The customer billed.", metadata=PREFETCHED)
    def account(self, info: Info) -> ManagedAccount:
        return self._related(info, "account")

    @strawberry.field(description="The month billed.", metadata=PREFETCHED)
    def period(self, info: Info) -> Month:
        return self._related(info, "period")

    @strawberry.field(description="The lines of the current revision, in order.", metadata=PREFETCHED)
    def line_items(self, info: Info) -> list[InvoiceLineItem]:
        return self._related(info, "lineItems")

    @strawberry.field(description="Payments received, in the order they were made.", metadata=PREFETCHED)
    def payments(self, info: Info) -> list[Payment]:
        return self._related(info, "payments")

    @strawberry.field(description="Refunds made, in the order they were made.", metadata=PREFETCHED)
    def refunds(self, info: Info) -> list[Refund]:
        return self._related(info, "refunds")

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
        description="Signed link to the invoice's lines as a detailed CSV, valid for a few "
        "minutes; null until the invoice is generated.",
        extensions=requires(*ANY_USER),
    )
    def csv_url(self, info: Info) -> str | None:
        if self.model.current_revision_id is None:
            return None
        return links.sign(info.context.settings, info.context.principal, "csv", str(self.model.id)).url

    @strawberry.field(
        description="Every generation, oldest first.", extensions=requires(*MSP_USERS)
    )
    async def revisions(self, info: Info) -> list[InvoiceRevision]:
        rows = await info.context.loaders.children(
            InvoiceRevisionModel, "invoice_id", order=("revision",)
        ).load(self.model.id)
        return [InvoiceRevision.from_row(r) for r in rows]

    @strawberry.field(
        description="Who did what, when; oldest first.", extensions=requires(*MSP_USERS), metadata=PREFETCHED
    )
    def timeline(self, info: Info) -> list[InvoiceEvent]:
        return self._related(info, "timeline")

    @strawberry.field(
        description="Why generation failed, in words a person can act on.",
        extensions=requires(*MSP_USERS),
    )
    def error_message(self) -> str | None:
        return self.model.error_message


def _money(attribute: str) -> Callable[[InvoiceModel], Decimal]:
    return lambda row: round_money(getattr(row, attribute), row.currency)


# How each field of an Invoice is read from its row.
_INVOICE_FIELDS: dict[str, Callable[[InvoiceModel], Any]] = {
    "id": lambda row: str(row.id),
    **{name: attrgetter(name) for name in (
        "number", "status", "payment_status", "delivery_status", "currency", "issue_date", "due_date",
        "approved_at", "voided_at", "created_at", "updated_at",
    )},
    **{name: _money(name) for name in ("subtotal", "adjustments", "charges", "total", "amount_paid", "amount_refunded")},
    "amount_due": lambda row: round_money(domain.amount_due(row), row.currency),
}


async def _first(values: Awaitable[list[Any]]) -> Any:
    return (await values)[0]


# Loaders of a relation for many invoices at once, one value per invoice, in order. They go
# through the request's dataloaders, so pages loaded side by side still share each query.

async def _accounts(info: Info, invoices: list[Invoice]) -> list[ManagedAccount]:
    rows = await info.context.loaders.by_id(ManagedAccountModel).load_many(
        [i.model.managed_account_id for i in invoices]
    )
    # An account's invoices share one value: it is read-only.
    accounts = {row.id: ManagedAccount.from_model(row) for row in rows}
    return [accounts[row.id] for row in rows]


async def _periods(info: Info, invoices: list[Invoice]) -> list[date]:
    rows = await info.context.loaders.by_id(BillingPeriodModel).load_many(
        [i.model.billing_period_id for i in invoices]
    )
    return [row.start_date for row in rows]


async def _line_items(info: Info, invoices: list[Invoice]) -> list[list[InvoiceLineItem]]:
    revision_ids = [i.model.current_revision_id for i in invoices if i.model.current_revision_id is not None]
    # Looked up by every invoice's revision, None (no lines yet) included.
    lines: dict[UUID | None, list[Any]] = dict(zip(revision_ids, await _lines(info).load_many(revision_ids)))
    return [
        [InvoiceLineItem.from_row(r, i.currency) for r in lines.get(i.model.current_revision_id, ())]
        for i in invoices
    ]


def _children(info: Info, model: type, order: tuple[str, ...], invoices: list[Invoice]) -> Awaitable[list[list[dict]]]:
    return info.context.loaders.children(model, "invoice_id", order=order).load_many([i.model.id for i in invoices])


async def _payments(info: Info, invoices: list[Invoice]) -> list[list[Payment]]:
    rows = await _children(info, PaymentModel, ("paid_on", "created_at", "id"), invoices)
    return [[Payment.from_row(r, i.currency) for r in payments] for i, payments in zip(invoices, rows)]


async def _refunds(info: Info, invoices: list[Invoice]) -> list[list[Refund]]:
    rows = await _children(info, RefundModel, ("refunded_on", "created_at", "id"), invoices)
    return [[Refund.from_row(r, i.currency) for r in refunds] for i, refunds in zip(invoices, rows)]


async def _timelines(info: Info, invoices: list[Invoice]) -> list[list[InvoiceEvent]]:
    rows = await _children(info, InvoiceEventModel, ("at", "id"), invoices)
    actor_ids = list({r["actor_id"] for events in rows for r in events if r["actor_id"] is not None})
    users = await info.context.loaders.by_id(UserModel).load_many(actor_ids)
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
