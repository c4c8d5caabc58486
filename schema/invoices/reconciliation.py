"""GraphQL types of a month's reconciliation."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from models.invoices import reconciliation as domain
from schema.core.scalars import Month

ReconciliationPart = domain.ReconciliationPart
strawberry.enum(
    ReconciliationPart,
    name="ReconciliationPart",
    description="Where a month's imported cost went: INVOICED (an account's generated invoice bills it), "
    "NOT_INVOICED (the account has no generated invoice for the month), INTEGRATION_EXCLUDED (an account's "
    "own integration it does not bill), UNCLAIMED (sub-accounts no managed account claims), LATE (delivered "
    "after approval, billed later).",
)


@strawberry.type(description="One part of a month's imported cost, for one account (or unclaimed sub-account) and currency.")
class ReconciliationLine:
    part: ReconciliationPart = strawberry.field(description="Where this cost went.")
    currency: str = strawberry.field(description="The billing currency of the cost (ISO 4217).")
    cost: Decimal = strawberry.field(description="Billed cost, exactly as imported.")
    rows: int = strawberry.field(description="Cost records it sums (0 for LATE).")
    account_id: strawberry.ID | None = strawberry.field(description="The managed account, if any.")
    account_name: str = strawberry.field(description="Its name; empty for UNCLAIMED.")
    sub_account_id: str = strawberry.field(description="For UNCLAIMED: the sub-account.")
    invoice_id: strawberry.ID | None = strawberry.field(description="The invoice concerned (INVOICED, LATE).")
    invoice_number: str | None = strawberry.field(description="Its number.")
    invoiced_amount: Decimal | None = strawberry.field(
        description="For INVOICED: the usage the invoice printed, in its currency (after conversion, before rules)."
    )
    invoice_currency: str | None = strawberry.field(description="The invoice's currency.")
    rounding: Decimal | None = strawberry.field(
        description="invoicedAmount less cost, when nothing was converted (same currency, billed on BilledCost)."
    )


@strawberry.type(description="A month's imported cost in one currency, and the parts it went to; they add up exactly.")
class ReconciliationTotal:
    currency: str = strawberry.field(description="The billing currency (ISO 4217).")
    imported: Decimal = strawberry.field(description="All billed cost imported for the month, late costs included.")
    invoiced: Decimal = strawberry.field(description="Part INVOICED.")
    not_invoiced: Decimal = strawberry.field(description="Part NOT_INVOICED.")
    integration_excluded: Decimal = strawberry.field(description="Part INTEGRATION_EXCLUDED.")
    unclaimed: Decimal = strawberry.field(description="Part UNCLAIMED.")
    late: Decimal = strawberry.field(description="Part LATE.")


@strawberry.type(description="Every unit of a month's imported billed cost, accounted for.")
class Reconciliation:
    month: Month = strawberry.field(description="The month.")
    totals: list[ReconciliationTotal] = strawberry.field(description="Per currency.")
    lines: list[ReconciliationLine] = strawberry.field(description="Per part, account (or sub-account) and currency.")
    csv_url: str = strawberry.field(description="Signed link to the same as CSV, valid for a few minutes.")

    @classmethod
    def of(cls, found: domain.Reconciliation, csv_url: str) -> Reconciliation:
        def gid(type_name: str, value: object) -> strawberry.ID | None:
            return None if value is None else strawberry.ID(strawberry.relay.to_base64(type_name, str(value)))

        zero = Decimal(0)
        return cls(
            month=Month(found.month), csv_url=csv_url,
            totals=[
                ReconciliationTotal(
                    currency=currency, imported=parts.get("IMPORTED", zero), invoiced=parts.get("INVOICED", zero),
                    not_invoiced=parts.get("NOT_INVOICED", zero), integration_excluded=parts.get("INTEGRATION_EXCLUDED", zero),
                    unclaimed=parts.get("UNCLAIMED", zero), late=parts.get("LATE", zero),
                )
                for currency, parts in found.totals().items()
            ],
            lines=[
                ReconciliationLine(
                    part=line.part, currency=line.currency, cost=line.cost, rows=line.rows,
                    account_id=gid("ManagedAccount", line.account_id), account_name=line.account_name,
                    sub_account_id=line.sub_account_id, invoice_id=gid("Invoice", line.invoice_id),
                    invoice_number=line.invoice_number, invoiced_amount=line.invoiced_amount,
                    invoice_currency=line.invoice_currency, rounding=line.rounding,
                )
                for line in found.lines
            ],
        )


@strawberry.type(description="What an account's invoice of a month bills for cloud usage against what that usage cost the MSP.")
class AccountMargin:
    account_id: strawberry.ID = strawberry.field(description="The managed account.")
    account_name: str = strawberry.field(description="Its name.")
    invoice_id: strawberry.ID = strawberry.field(description="Its invoice of the month (awaiting approval or approved).")
    invoice_number: str | None = strawberry.field(description="The invoice's number.")
    currency: str = strawberry.field(description="The invoice currency.")
    billed: Decimal = strawberry.field(description="Usage and billing rule lines: what the customer is billed for cloud usage.")
    cost: Decimal = strawberry.field(description="That usage's BilledCost, converted at the rates the invoice applied.")
    margin: Decimal = strawberry.field(description="Billed less cost.")
    margin_percent: Decimal | None = strawberry.field(description="Margin as a percentage of billed; null when nothing is billed.")

    @classmethod
    def of(cls, found: domain.Margin) -> AccountMargin:
        return cls(
            account_id=strawberry.ID(strawberry.relay.to_base64("ManagedAccount", str(found.account_id))),
            account_name=found.account_name,
            invoice_id=strawberry.ID(strawberry.relay.to_base64("Invoice", str(found.invoice_id))),
            invoice_number=found.invoice_number, currency=found.currency, billed=found.billed, cost=found.cost,
            margin=found.margin, margin_percent=found.percent,
        )
