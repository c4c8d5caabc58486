"""GraphQL types of a month at a glance (`monthSummary`)."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from models.invoices import summary as domain
from schema.core.scalars import Month
from schema.invoices.enums import InvoiceDisplayStatus


@strawberry.type(description="The month's invoices of one display status and currency.")
class MonthStatusTotal:
    display_status: InvoiceDisplayStatus = strawberry.field(description="The status a list screen shows.")
    currency: str = strawberry.field(description="The invoice currency (ISO 4217).")
    count: int = strawberry.field(description="How many invoices.")
    total: Decimal = strawberry.field(description="Their totals added up, exactly.")


@strawberry.type(description="What of the month still needs a person.")
class MonthAttention:
    ready: int = strawberry.field(description="Invoices ready to generate.")
    awaiting_approval: int = strawberry.field(description="Invoices awaiting approval.")
    errors: int = strawberry.field(description="Invoices whose generation failed.")
    warnings: int = strawberry.field(description="Warnings the approval must acknowledge, on the invoices awaiting approval or failed.")
    invoices_with_warnings: int = strawberry.field(description="The invoices carrying those warnings.")
    undelivered: int = strawberry.field(description="Approved invoices whose e-mail was not delivered.")
    late_deliveries: int = strawberry.field(description="Approved invoices whose month got cost deliveries after approval not billed yet.")


@strawberry.type(
    description="A month at a glance: its invoices by display status with totals per currency, "
    "and what still needs a person; computed by the server in one request."
)
class MonthSummary:
    month: Month = strawberry.field(description="The month.")
    invoice_count: int = strawberry.field(description="The month's invoices.")
    totals: list[MonthStatusTotal] = strawberry.field(
        description="Per display status (in the order DRAFT, PENDING, SENT, PAID, OVERDUE, VOIDED, REFUNDED) and currency."
    )
    attention: MonthAttention = strawberry.field(description="What still needs a person.")

    @classmethod
    def of(cls, found: domain.MonthSummary) -> MonthSummary:
        return cls(
            month=Month(found.month),
            invoice_count=found.invoices,
            totals=[
                MonthStatusTotal(display_status=t.display_status, currency=t.currency, count=t.count, total=t.total) for t in found.totals
            ],
            attention=MonthAttention(
                ready=found.ready,
                awaiting_approval=found.awaiting_approval,
                errors=found.errors,
                warnings=found.warnings,
                invoices_with_warnings=found.invoices_with_warnings,
                undelivered=found.undelivered,
                late_deliveries=found.late_deliveries,
            ),
        )
