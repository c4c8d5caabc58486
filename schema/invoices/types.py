"""The invoice, its lines, revisions and timeline, and the loading of their relations for a
whole page of invoices at once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, cast
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
from models import ReminderStop as ReminderStopModel
from models import User as UserModel
from models import XeroSync as XeroSyncModel
from models import invoices as domain
from models.costs.queries import CostQuery, filter_costs, line_costs
from models.currencies import round_money
from models.invoices import checks, diff
from models.xero import DocumentKind
from schema.context import Info
from schema.costs import CostRecord, CostRecordConnection, CostRecordOrder, CostRecordOrderField
from schema.execution import PREFETCHED
from schema.managed_accounts import ManagedAccount
from schema.nodes import scoped_nodes
from schema.pagination import Direction, paginate, selected_node_fields
from schema.payments import Payment, Refund
from schema.permissions import ANY_USER, MSP_USERS, requires
from schema.scalars import Month, plain
from schema.xero_sync import XeroSync

if TYPE_CHECKING:
    from schema.credit_notes import CreditNote

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
    description="USAGE (cloud costs), ONE_OFF (an item added by hand), RULE (credit, discount or "
    "markup), CHARGE (additional charge), TAX, or LATE_COST (costs of an earlier, already invoiced month that a delivery "
    "restated afterwards; negative when it lowered them).",
)
InvoiceKind = domain.InvoiceKind
strawberry.enum(
    InvoiceKind,
    description="REGULAR (the month's invoice) or SUPPLEMENTARY (bills what was delivered for "
    "the month after its invoice was approved, when the organization bills late costs so).",
)
InvoiceDisplayStatus = domain.DisplayStatus
strawberry.enum(
    InvoiceDisplayStatus,
    name="InvoiceDisplayStatus",
    description="The one status a list shows, from status, paymentStatus and deliveryStatus: "
    "VOIDED when voided; DRAFT until generated (READY_TO_INVOICE, GENERATING, ERROR); PENDING "
    "while awaiting approval, or approved with its e-mail not delivered yet; then REFUNDED "
    "after any refund, PAID, OVERDUE, or SENT (delivered, unpaid or partly paid).",
)
InvoiceCheckCode = checks.CheckCode
strawberry.enum(
    InvoiceCheckCode,
    name="InvoiceCheckCode",
    description="What a check before approval found: TOTAL_CHANGED and SERVICE_CHANGED (moved month over "
    "month by the organization's thresholds), NEW_SERVICE, SERVICE_GONE, NO_DATA (a provider or "
    "sub-account with costs last month and none now), ZERO_TOTAL, NEGATIVE_TOTAL, RATE_CHANGED (an "
    "exchange rate changed since generation), STALE_REVISION (costs delivered again since generation), "
    "INCOMPLETE_DATA (the month closed before a cost source's data feeding the invoice was complete).",
)
CheckSeverity = checks.Severity
strawberry.enum(
    CheckSeverity,
    name="CheckSeverity",
    description="WARNING: `approveInvoices` refuses the invoice unless it acknowledges the code; INFO: for reading.",
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
    # The invoice the line is of, for its costs.
    invoice: strawberry.Private[InvoiceModel | None] = None

    @classmethod
    def from_row(cls, line: Any, currency: str, invoice: InvoiceModel | None = None) -> InvoiceLineItem:
        """From a row of `_lines` (a record: the kind comes as its text). A page of a list
        holds thousands of lines of which few fields are asked: each field is converted when
        first read (`__getattr__`), not all of them for every line."""
        item = object.__new__(cls)
        # The amount, which nearly every list asks for, at once; the rest when read.
        item.__dict__.update(
            _row=line, _currency=currency, invoice=invoice, amount=round_money(Decimal(line["amount"]), currency)
        )
        return item

    def __getattr__(self, name: str) -> Any:
        # Reached only for a field not read yet (the instance's dict has no such key).
        convert = _LINE_FIELDS.get(name)
        if convert is None:
            raise AttributeError(name)
        state = self.__dict__
        value = state[name] = convert(state["_row"], state["_currency"])
        return value

    @strawberry.field(
        description="The imported cost records behind a usage line (its account, month, provider, service "
        "and category, as the invoice counted them), with their totals; empty for other lines.",
        extensions=requires(*MSP_USERS),
    )
    async def costs(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
    ) -> CostRecordConnection:
        query = line_costs(info.context.authenticated(), self.invoice, self.kind, self.provider, self.service, self.service_category)
        month = None
        if self.invoice is not None:
            period = await info.context.loaders.by_id(BillingPeriodModel).load(self.invoice.billing_period_id)
            month = period.start_date if period else None
        query = query.filter(billing_month=month) if month else query.filter(id__in=[])
        query = filter_costs(query, CostQuery(invoiced=True))
        order = CostRecordOrder(field=CostRecordOrderField.CHARGE_PERIOD_START, direction=Direction.DESC)
        page = await paginate(info, CostRecordConnection, query, CostRecord.from_model, order,
                              first=first, after=after, last=last, before=before)
        page.query = query
        return page


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



@strawberry.type(description="A one-off item added by hand to an invoice before approval (a setup fee, hardware).")
class InvoiceItem:
    id: strawberry.ID = strawberry.field(description="The item's id, for `updateInvoiceItem` and `removeInvoiceItem`.")
    position: int = strawberry.field(description="Order among the invoice's one-off items, from 1.")
    description: str = strawberry.field(description="The text printed on the line.")
    quantity: Decimal = strawberry.field(description="How many.")
    unit_price: Decimal = strawberry.field(description="Price of one, in the invoice currency.")
    amount: Decimal = strawberry.field(description="Quantity times unit price, rounded to the currency's minor unit.")

    @classmethod
    def from_model(cls, line: Any, currency: str) -> InvoiceItem:
        return cls(
            id=strawberry.ID(relay.to_base64("InvoiceItem", str(line.id))), position=line.position,
            description=line.description, quantity=plain(line.quantity), unit_price=plain(line.unit_price),
            amount=round_money(line.quantity * line.unit_price, currency),
        )


@strawberry.type(description="A finding of the checks before approval.")
class InvoiceCheck:
    code: InvoiceCheckCode = strawberry.field(description="What was found.")
    severity: CheckSeverity = strawberry.field(description="Whether approval must acknowledge it.")
    message: str = strawberry.field(description="What was found, for a person.")
    figures: JSON = strawberry.field(description="The numbers behind it, as text (previous, current, change, percent, names).")


RevisionDiffCause = diff.DiffCause
strawberry.enum(
    RevisionDiffCause,
    name="RevisionDiffCause",
    description="Why two revisions differ, where the revisions tell: COSTS (usage moved), RULES (billing "
    "rule lines), RATES (exchange rates applied), PROFILE (the billing profile's charges, taxes or printed "
    "details), ACCOUNT (the customer's printed details or currency), ITEMS (one-off items), LATE_COSTS, "
    "BASIS (the cost column billed).",
)


@strawberry.type(description="A line added, removed or changed between two revisions.")
class RevisionLineChange:
    kind: LineKind = strawberry.field(description="What the line is.")
    description: str = strawberry.field(description="The line's text.")
    before: Decimal | None = strawberry.field(description="Its amount in the earlier revision; null when added.")
    after: Decimal | None = strawberry.field(description="Its amount in this revision; null when removed.")
    difference: Decimal = strawberry.field(description="After less before.")

    @classmethod
    def of(cls, change: diff.LineChange, currency: str) -> RevisionLineChange:
        def money(value: Decimal | None) -> Decimal | None:
            return None if value is None else round_money(value, currency)

        return cls(kind=change.kind, description=change.description, before=money(change.before),
                   after=money(change.after), difference=round_money(change.difference, currency))


@strawberry.type(description="What changed between two revisions of an invoice.")
class RevisionDiff:
    against: int | None = strawberry.field(description="The revision compared with; null for none (all lines added).")
    added: list[RevisionLineChange] = strawberry.field(description="Lines only this revision has.")
    removed: list[RevisionLineChange] = strawberry.field(description="Lines only the other revision has.")
    changed: list[RevisionLineChange] = strawberry.field(description="Lines both have, with another amount.")
    subtotal_change: Decimal = strawberry.field(description="This revision's subtotal less the other's.")
    charges_change: Decimal = strawberry.field(description="This revision's charges less the other's.")
    total_change: Decimal = strawberry.field(description="This revision's total less the other's.")
    causes: list[RevisionDiffCause] = strawberry.field(description="Why, where the revisions tell.")


@strawberry.type(description="An exchange rate a revision applied, into the invoice currency.")
class AppliedExchangeRate:
    from_currency: str = strawberry.field(description="The cost currency converted (ISO 4217).")
    rate: Decimal = strawberry.field(description="1 unit of it in the invoice currency.")


@strawberry.type(description="One generation of an invoice, frozen: what was computed and printed.")
class InvoiceRevision:
    revision: int = strawberry.field(description="1 for the first generation, then 2, 3, ...")
    created_at: datetime = strawberry.field(description="When it was generated.")
    template_version: str = strawberry.field(description="Version of the invoice template used.")
    currency: str = strawberry.field(description="Invoice currency.")
    cost_currency: str = strawberry.field(
        description="Currency the costs were billed in; the invoice currency when they came in "
        "several (see exchangeRates)."
    )
    exchange_rate: Decimal = strawberry.field(
        description="Rate applied to the cost currency (1 when none was needed); see exchangeRates "
        "for every rate."
    )
    exchange_rates: list[AppliedExchangeRate] = strawberry.field(
        description="Every rate applied, one per cost currency other than the invoice currency "
        "(each also printed on the PDF)."
    )
    subtotal: Decimal = strawberry.field(description="Usage after billing rules.")
    adjustments: Decimal = strawberry.field(description="Credits, discounts and markups.")
    charges: Decimal = strawberry.field(description="Taxes and additional charges.")
    total: Decimal = strawberry.field(description="What the revision totals to.")
    pdf_sha256: str | None = strawberry.field(description="SHA-256 of the revision's PDF.")
    revision_id: strawberry.Private[object]
    invoice_id: strawberry.Private[object]

    @classmethod
    def from_row(cls, row: dict) -> InvoiceRevision:
        return cls(
            revision=row["revision"], created_at=row["created_at"],
            template_version=row["template_version"], currency=row["currency"],
            cost_currency=row["cost_currency"], exchange_rate=plain(row["exchange_rate"]),
            exchange_rates=[
                AppliedExchangeRate(from_currency=cost, rate=Decimal(rate))
                for cost, rate in sorted((row["exchange_rates"] or {}).items())
            ],
            subtotal=round_money(row["subtotal"], row["currency"]),
            adjustments=round_money(row["adjustments"], row["currency"]),
            charges=round_money(row["charges"], row["currency"]),
            total=round_money(row["total"], row["currency"]),
            pdf_sha256=row["pdf_sha256"], revision_id=row["id"], invoice_id=row["invoice_id"],
        )

    @strawberry.field(description="The revision's lines, in order.")
    async def line_items(self, info: Info) -> list[InvoiceLineItem]:
        invoice = await info.context.loaders.by_id(InvoiceModel).load(self.invoice_id)
        return [InvoiceLineItem.from_row(r, self.currency, invoice) for r in await _lines(info).load(self.revision_id)]

    @strawberry.field(
        description="What changed against another revision of the invoice (default: the one before): "
        "lines added, removed and changed, the totals' difference, and the causes; null when the "
        "invoice has no revision `against`."
    )
    async def diff(self, against: int | None = None) -> RevisionDiff | None:
        found = await diff.revision_diff(self.invoice_id, self.revision, against)
        if found is None:
            return None
        lines = [
            [RevisionLineChange.of(change, self.currency) for change in changes]
            for changes in (found.added, found.removed, found.changed)
        ]
        return RevisionDiff(
            against=found.against, added=lines[0], removed=lines[1], changed=lines[2],
            subtotal_change=round_money(found.subtotal_change, self.currency),
            charges_change=round_money(found.charges_change, self.currency),
            total_change=round_money(found.total_change, self.currency), causes=found.causes,
        )


@strawberry.type(description="A timeline entry: who did what to the invoice, and when.")
class InvoiceEvent:
    at: datetime = strawberry.field(description="When it happened.")
    actor: str = strawberry.field(description="Who did it: a user's e-mail, or the system part.")
    kind: str = strawberry.field(
        description="What happened: CREATED, a transition (GENERATE, REGENERATE, GENERATED, FAILED, "
        "APPROVE (with the warnings acknowledged, if any), VOID), REPLACED (a voided invoice got its "
        "replacement), MEMO_SET, ITEM_ADDED, ITEM_CHANGED, ITEM_REMOVED (one-off items), AUTO_SEND_CANCELLED, "
        "AUTO_SEND_HELD (warnings kept the automatic send back), REMINDER_SENT or REMINDER_FAILED (a payment "
        "reminder, per recipient), REMINDERS_STOPPED, REMINDERS_RESUMED, RESEND_REQUESTED, SENT or "
        "DELIVERY_FAILED (the invoice e-mail, per recipient), "
        "PAYMENT_RECORDED, PAYMENT_REFUNDED, OVERDUE, NOTIFICATION_SENT or NOTIFICATION_FAILED "
        "(a notice to the customer, per recipient), CREDIT_NOTE_ISSUED, CREDIT_NOTE_SENT or "
        "CREDIT_NOTE_DELIVERY_FAILED (its e-mail, per recipient), CREDIT_REFUNDED, CREDIT_CARRIED (this "
        "invoice's credit applied to another), CREDIT_APPLIED (another's credit applied to this one), "
        "XERO_PUSH_REQUESTED, XERO_PUSHED, XERO_PUSH_FAILED (each failed attempt, with Xero's message), "
        "XERO_CREDIT_NOTE_ALLOCATED (a credit note allocated to this invoice in Xero, with the amount) or "
        "XERO_PAYMENT_SKIPPED (a Xero payment our rules refused)."
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
    charges: Decimal = strawberry.field(description="Taxes and additional charges (taxTotal included).")
    tax_total: Decimal = strawberry.field(description="The taxes' part of charges; the rest are additional charges.")
    total: Decimal = strawberry.field(description="Invoice total.")
    amount_paid: Decimal = strawberry.field(description="Sum of payments (refunds do not lower it).")
    amount_refunded: Decimal = strawberry.field(description="Sum of refunds; at most the amount paid.")
    amount_credited: Decimal = strawberry.field(description="Sum of the invoice's credit notes.")
    credit_applied: Decimal = strawberry.field(
        description="Account credit of other credit notes applied to this invoice (counts as paid)."
    )
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
        description="The cloud provider this invoice bills alone (accounts invoiced per provider); "
        "null when it bills every provider."
    )
    issue_date: date | None = strawberry.field(
        description="Date of issue: the day of the first generation, kept by regenerations (the "
        "number is taken then too, so numbers and dates rise together); a replacement has its own."
    )
    due_date: date | None = strawberry.field(
        description="Issue date plus the account's payment terms as they were at the last generation."
    )
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
    # loaded it and they have no permission of their own (schema/execution.py: `answer_prefetched`).
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

    @strawberry.field(description="Credit notes issued against the invoice, oldest first.")
    async def credit_notes(self, info: Info) -> list[Annotated[CreditNote, strawberry.lazy("schema.credit_notes")]]:
        from schema.credit_notes import invoice_credit_notes

        return await invoice_credit_notes(info, self.model.id)

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
        description="The day the invoice was settled: the last payment's, once payments reached the total; "
        "null while anything is due."
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
    async def checks(self) -> list[InvoiceCheck]:
        return [
            InvoiceCheck(code=f.code, severity=f.severity, message=f.message, figures=cast(Any, f.figures))
            for f in await checks.current_findings(self.model)
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
            row.id: row for row in await domain.visible_invoices(info.context.principal).filter(
                id__in=[i for r in rows for i in r["billed_by"]]
            )
        }
        return [
            InvoiceLateCost(
                currency=r["currency"], invoiced_cost=plain(r["invoiced_cost"]),
                delivered_cost=plain(r["delivered_cost"]), difference=plain(r["difference"]),
                pending=plain(r["pending"]), invoiced_rows=r["invoiced_rows"], delivered_rows=r["delivered_rows"],
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
    **{name: attrgetter(name) for name in (
        "number", "status", "payment_status", "delivery_status", "currency", "issue_date", "due_date",
        "approved_at", "voided_at", "created_at", "updated_at", "kind", "memo",
    )},
    **{name: _money(name) for name in (
        "subtotal", "adjustments", "charges", "tax_total", "total", "amount_paid", "amount_refunded",
        "amount_credited", "credit_applied",
    )},
    "amount_due": lambda row: round_money(domain.amount_due(row), row.currency),
    "display_status": domain.display_status,
    "provider": lambda row: row.provider_name or None,
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
        [InvoiceLineItem.from_row(r, i.currency, i.model) for r in lines.get(i.model.current_revision_id, ())]
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
