"""What generation's steps hand each other: the invoice's context and inputs, and the computed
revision (its lines and sums) that the view prints and the store freezes. E-invoicing reads the
same types (`models.einvoicing.document`), so they stand apart from the steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from models.billing_periods import BillingPeriod
from models.billing_profiles import BillingBasis, BillingProfile, BillingProfileCharge
from models.billing_rules import BillingRule
from models.invoices.checks import Finding, History
from models.invoices.tables import Invoice, InvoiceExtraLine, LineKind
from models.managed_accounts import ManagedAccount
from models.organizations import Organization


@dataclass
class Line:
    kind: LineKind
    description: str
    amount: Decimal
    provider: str = ""
    service: str = ""
    category: str = ""
    quantity: Decimal | None = None
    unit: str | None = None
    unit_price: Decimal | None = None
    # The amount before conversion, when the line was billed in another currency.
    cost_currency: str = ""
    cost_amount: Decimal | None = None
    # A percentage charge's rate (its description prints it; a translated document formats it).
    percent: Decimal | None = None


@dataclass
class ComputedRevision:
    """A computed invoice, ready to render and store as its next revision."""

    currency: str
    cost_currency: str
    rate: Decimal
    # Every cost currency's rate into `currency`.
    rates: dict[str, Decimal] = field(default_factory=dict)
    lines: list[Line] = field(default_factory=list)
    # The late costs the lines bill, claimed when the revision is stored.
    late_cost_ids: list[Any] = field(default_factory=list)
    # Hours after which the invoice is approved and sent by itself (auto-invoice SEND).
    auto_send_after_hours: int | None = None
    billing_basis: BillingBasis = BillingBasis.BILLED
    # The checks before approval (`models.invoices.checks`).
    checks: list[Finding] = field(default_factory=list)
    subtotal: Decimal = Decimal(0)
    adjustments: Decimal = Decimal(0)
    charges: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    issue_date: date | None = None
    due_date: date | None = None

    @property
    def taxes(self) -> Decimal:
        return sum((line.amount for line in self.lines if line.kind == LineKind.TAX), Decimal(0))

    @property
    def usage(self) -> list[Line]:
        return [line for line in self.lines if line.kind == LineKind.USAGE]

    @property
    def printed_items(self) -> list[Line]:
        """Usage, then one-off items: the invoice's item table."""
        return [line for line in self.lines if line.kind in (LineKind.USAGE, LineKind.ONE_OFF)]

    @property
    def late_lines(self) -> list[Line]:
        return [line for line in self.lines if line.kind == LineKind.LATE_COST]

    @property
    def rule_lines(self) -> list[Line]:
        return [line for line in self.lines if line.kind == LineKind.RULE]

    @property
    def charge_lines(self) -> list[Line]:
        return [line for line in self.lines if line.kind in (LineKind.TAX, LineKind.CHARGE)]


@dataclass
class Inputs:
    """What computing an invoice reads besides its context (`fetch_inputs`, for many at once)."""

    usage: list[dict[str, Any]]
    late: list[dict[str, Any]]
    rules: list[BillingRule]
    extras: list[InvoiceExtraLine]
    # The organization's rates into the invoice currency by (month, cost currency), of those needed.
    rates: dict[tuple[date, str], Decimal]
    history: History


@dataclass
class Context:
    invoice: Invoice
    organization: Organization
    account: ManagedAccount
    profile: BillingProfile
    charges: list[BillingProfileCharge]
    period: BillingPeriod
    inputs: Inputs | None = None

    @property
    def locale(self) -> str:
        """The language the revision is printed in (its view keeps it): the account's, else its
        organization's; the generator writes its own line labels in it."""
        return self.account.locale or self.organization.locale

    @property
    def basis(self) -> BillingBasis:
        """The cost column billed: the account's choice, else its billing profile's."""
        return self.account.billing_basis or self.profile.billing_basis
