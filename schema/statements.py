"""GraphQL types of what a managed account owes: its balance, the ageing of what it owes and its
statement of account (models/statements.py), each per currency."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from typing import Annotated

import strawberry

from infra import links, storage
from models import statements as domain
from schema.core.context import Info
from schema.core.errors import NotFoundError, ValidationError


@strawberry.type(description="What an account owes in one currency.")
class AccountBalance:
    currency: str = strawberry.field(description="ISO 4217 code; amounts in other currencies are in their own balance.")
    open: Decimal = strawberry.field(description="What its approved invoices still owe (their `amountDue` added up).")
    overdue: Decimal = strawberry.field(description="The part of `open` past its due date, in the organization's time zone.")
    credit: Decimal = strawberry.field(description="Account credit its credit notes still hold (to be refunded or applied to an invoice).")
    net: Decimal = strawberry.field(description="`open` less `credit`: negative when the customer is owed money.")

    @classmethod
    def of(cls, row: domain.Balance) -> AccountBalance:
        return cls(currency=row.currency, open=row.open, overdue=row.overdue, credit=row.credit, net=row.net)


@strawberry.type(description="What an account owes in one currency, by days past the due date.")
class AccountAgeing:
    currency: str = strawberry.field(description="ISO 4217 code.")
    current: Decimal = strawberry.field(description="Not yet due (due today or later).")
    days_1_to_30: Decimal = strawberry.field(name="days1To30", description="1 to 30 days past due.")
    days_31_to_60: Decimal = strawberry.field(name="days31To60", description="31 to 60 days past due.")
    days_61_to_90: Decimal = strawberry.field(name="days61To90", description="61 to 90 days past due.")
    over_90_days: Decimal = strawberry.field(name="over90Days", description="More than 90 days past due.")
    total: Decimal = strawberry.field(description="All that is owed: the buckets added up (the balance's `open`).")

    @classmethod
    def of(cls, row: domain.Ageing) -> AccountAgeing:
        return cls(
            currency=row.currency,
            current=row.current,
            days_1_to_30=row.days_1_30,
            days_31_to_60=row.days_31_60,
            days_61_to_90=row.days_61_90,
            over_90_days=row.over_90,
            total=row.total,
        )


StatementEntryKind = strawberry.enum(
    domain.EntryKind,
    description="What a statement line is: an INVOICE issued, a CREDIT_NOTE, a PAYMENT received, a REFUND "
    "of a payment, a CREDIT_REFUND (account credit paid back) or a VOID (an invoice voided).",
)


@strawberry.type(description="One line of a statement of account.")
class StatementEntry:
    day: date = strawberry.field(name="date", description="The day it happened: issue date, day paid, day refunded or voided.")
    kind: StatementEntryKind = strawberry.field(description="What it is.")  # type: ignore[valid-type]
    reference: str = strawberry.field(description="The invoice's or credit note's number.")
    invoice_number: str = strawberry.field(description="The invoice it concerns.")
    amount: Decimal = strawberry.field(description="Positive: raises what is owed; negative: lowers it.")
    balance: Decimal = strawberry.field(description="The running balance after it.")


@strawberry.type(description="A statement of account in one currency.")
class CurrencyStatement:
    currency: str = strawberry.field(description="ISO 4217 code.")
    opening_balance: Decimal = strawberry.field(description="The balance at the start of the range (all before it).")
    entries: list[StatementEntry] = strawberry.field(description="Each line dated within the range, in order.")
    closing_balance: Decimal = strawberry.field(description="The balance at the end of the range.")


@strawberry.type(
    description="A statement of account over a date range: per currency, the opening balance, each "
    "invoice, credit note, payment and refund, and the closing balance."
)
class AccountStatement:
    from_: date = strawberry.field(name="from", description="The first day (included).")
    to: date = strawberry.field(description="The last day (included).")
    currencies: list[CurrencyStatement] = strawberry.field(
        description="One statement per currency with a balance or a line; empty when there is none."
    )
    found: strawberry.Private[domain.Statement]

    @classmethod
    def of(cls, found: domain.Statement) -> AccountStatement:
        return cls(
            from_=found.start,
            to=found.end,
            found=found,
            currencies=[
                CurrencyStatement(
                    currency=s.currency,
                    opening_balance=s.opening,
                    closing_balance=s.closing,
                    entries=[
                        StatementEntry(
                            day=e.day,
                            kind=e.kind,
                            reference=e.reference,
                            invoice_number=e.invoice_number,
                            amount=e.amount,
                            balance=e.balance,
                        )
                        for e in s.entries
                    ],
                )
                for s in found.currencies
            ],
        )

    @strawberry.field(
        description="Signed link to this statement as PDF, in the account's language, valid for a few minutes; "
        "null until `printStatement` has printed it as it stands now."
    )
    async def pdf_url(self, info: Info) -> str | None:
        path = domain.statement_path(self.found.account, await domain.statement_view(self.found))
        if not await asyncio.to_thread(storage.exists, info.context.settings, path):
            return None
        filename = f"statement-{self.found.start.isoformat()}-{self.found.end.isoformat()}.pdf"
        return links.sign(info.context.settings, info.context.authenticated(), "statement", path, filename).url


@strawberry.type(description="The statement is being printed (or was already): ask its `pdfUrl` until it is there.")
class StatementPrinting:
    statement: AccountStatement = strawberry.field(description="The statement as it stands now.")
    ready: bool = strawberry.field(description="Whether its PDF is printed already (`statement.pdfUrl` is set).")


PrintStatementPayload = Annotated[
    StatementPrinting | ValidationError | NotFoundError,
    strawberry.union("PrintStatementPayload", description="The result of `printStatement`."),
]
