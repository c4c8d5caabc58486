"""The parts of an invoice: its printed lines, one-off items, checks, revisions with their
differences, and timeline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from models import BillingPeriod as BillingPeriodModel
from models import Invoice as InvoiceModel
from models import InvoiceEvent as InvoiceEventModel
from models.costs.queries import CostQuery, filter_costs, line_costs
from models.currencies import round_money
from models.invoices import diff, printed_lines
from schema.core.context import Info
from schema.core.pagination import Direction, paginate
from schema.core.permissions import MSP_USERS, requires
from schema.core.scalars import plain
from schema.costs import CostRecord, CostRecordConnection, CostRecordOrder, CostRecordOrderField
from schema.invoices.enums import CheckSeverity, InvoiceCheckCode
from schema.line_kinds import LineKind


def revision_lines(info: Info):
    """The loader of the printed lines of a (revision id, currency), as rows
    (`models.invoices.printed_lines`: their amounts rounded to the currency)."""
    return info.context.loaders.keyed("printed_lines", printed_lines)


# How an event's `detail` is decoded from its JSON text.
_EVENT_DETAIL = InvoiceEventModel._meta.fields_map["detail"]


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
    def from_rows(cls, lines: list[Any], currency: str, invoice: InvoiceModel | None = None) -> list[InvoiceLineItem]:
        """The lines of rows of `revision_lines` for `currency` (records: the kind comes as its
        text, the amount as its text already rounded to the currency). A page of a list holds
        thousands of lines of which few fields are asked: each field is converted when first
        read (`__getattr__`), not all of them for every line; the amount, which nearly every
        list asks for, at once."""
        new = object.__new__
        items: list[InvoiceLineItem] = []
        append = items.append
        for line in lines:
            item = new(cls)
            item.__dict__ = {"_row": line, "_currency": currency, "invoice": invoice, "amount": Decimal(line["amount"])}
            append(item)
        return items

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
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> CostRecordConnection:
        query = line_costs(info.context.authenticated(), self.invoice, self.kind, self.provider, self.service, self.service_category)
        month = None
        if self.invoice is not None:
            period = await info.context.loaders.by_id(BillingPeriodModel).load(self.invoice.billing_period_id)
            month = period.start_date if period else None
        query = query.filter(billing_month=month) if month else query.filter(id__in=[])
        query = filter_costs(query, CostQuery(invoiced=True))
        order = CostRecordOrder(field=CostRecordOrderField.CHARGE_PERIOD_START, direction=Direction.DESC)
        page = await paginate(
            info, CostRecordConnection, query, CostRecord.from_model, order, first=first, after=after, last=last, before=before
        )
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
    "amount": lambda row, _: Decimal(row["amount"]),  # rounded by `printed_lines`
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
            id=strawberry.ID(relay.to_base64("InvoiceItem", str(line.id))),
            position=line.position,
            description=line.description,
            quantity=plain(line.quantity),
            unit_price=plain(line.unit_price),
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

        return cls(
            kind=change.kind,
            description=change.description,
            before=money(change.before),
            after=money(change.after),
            difference=round_money(change.difference, currency),
        )


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
        description="Currency the costs were billed in; the invoice currency when they came in several (see exchangeRates)."
    )
    exchange_rate: Decimal = strawberry.field(
        description="Rate applied to the cost currency (1 when none was needed); see exchangeRates for every rate."
    )
    exchange_rates: list[AppliedExchangeRate] = strawberry.field(
        description="Every rate applied, one per cost currency other than the invoice currency (each also printed on the PDF)."
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
            revision=row["revision"],
            created_at=row["created_at"],
            template_version=row["template_version"],
            currency=row["currency"],
            cost_currency=row["cost_currency"],
            exchange_rate=plain(row["exchange_rate"]),
            exchange_rates=[
                AppliedExchangeRate(from_currency=cost, rate=Decimal(rate)) for cost, rate in sorted((row["exchange_rates"] or {}).items())
            ],
            subtotal=round_money(row["subtotal"], row["currency"]),
            adjustments=round_money(row["adjustments"], row["currency"]),
            charges=round_money(row["charges"], row["currency"]),
            total=round_money(row["total"], row["currency"]),
            pdf_sha256=row["pdf_sha256"],
            revision_id=row["id"],
            invoice_id=row["invoice_id"],
        )

    @strawberry.field(description="The revision's lines, in order.")
    async def line_items(self, info: Info) -> list[InvoiceLineItem]:
        invoice = await info.context.loaders.by_id(InvoiceModel).load(self.invoice_id)
        return InvoiceLineItem.from_rows(await revision_lines(info).load((self.revision_id, self.currency)), self.currency, invoice)

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
            [RevisionLineChange.of(change, self.currency) for change in changes] for changes in (found.added, found.removed, found.changed)
        ]
        return RevisionDiff(
            against=found.against,
            added=lines[0],
            removed=lines[1],
            changed=lines[2],
            subtotal_change=round_money(found.subtotal_change, self.currency),
            charges_change=round_money(found.charges_change, self.currency),
            total_change=round_money(found.total_change, self.currency),
            causes=found.causes,
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
    def from_row(cls, row: Any, actor_email: str | None) -> InvoiceEvent:
        """The event of one of the driver's records (`Loaders.children(raw=True)`): `detail`
        comes as its JSON text, decoded as the table's field decodes it."""
        return cls(
            at=row["at"],
            actor=actor_email or row["actor_label"],
            kind=row["kind"],
            from_status=row["from_status"],
            to_status=row["to_status"],
            detail=_EVENT_DETAIL.to_python_value(row["detail"]),
        )
