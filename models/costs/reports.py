"""What an import reports: the delivery's rows and totals, what it superseded, late costs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from models.costs.records import CostOrigin


@dataclass(frozen=True, slots=True)
class UnmatchedSubAccount:
    """A sub-account of the delivery that no managed account claims: its rows are stored
    without an account (and linked once one claims it), and nobody is invoiced for them yet.
    One per sub-account and currency, so that no sum adds two currencies."""

    sub_account_id: str  # "" for rows FOCUS exported without a sub-account
    sub_account_name: str | None
    provider_name: str
    currency: str
    rows: int
    billed_cost: Decimal

    def as_json(self) -> dict[str, Any]:
        return {
            "subAccountId": self.sub_account_id,
            "subAccountName": self.sub_account_name,
            "providerName": self.provider_name,
            "currency": self.currency,
            "rows": self.rows,
            # Fixed-point text, never 8E-7: JSON readers take it for what it says.
            "billedCost": f"{self.billed_cost:f}",
        }


@dataclass(frozen=True, slots=True)
class AccountMonthTotal:
    """The BilledCost of the delivery's rows for one managed account (None: no account), one
    billing month and one currency: what the delivery says, written or not."""

    managed_account_id: uuid.UUID | None
    billing_month: date
    currency: str
    rows: int
    billed_cost: Decimal

    def as_json(self) -> dict[str, Any]:
        return {
            "accountId": None if self.managed_account_id is None else str(self.managed_account_id),
            "billingMonth": self.billing_month.isoformat(), "currency": self.currency,
            "rows": self.rows, "billedCost": f"{self.billed_cost:f}",
        }


@dataclass(frozen=True, slots=True)
class ScopeOutcome:
    """What the delivery did to one scope (provider, billing account, month).

    `outcome`: NEW (no delivery had named it), REPLACED (it superseded `superseded_import_id`
    and removed `rows_removed` rows), UNCHANGED (the current delivery is byte-identical)."""

    provider_name: str
    billing_account_id: str
    billing_month: date
    outcome: str
    rows: int
    totals: tuple[tuple[str, Decimal], ...]  # (currency, BilledCost), in currency order
    superseded_import_id: uuid.UUID | None
    rows_removed: int

    def as_json(self) -> dict[str, Any]:
        return {
            "providerName": self.provider_name, "billingAccountId": self.billing_account_id,
            "billingMonth": self.billing_month.isoformat(), "outcome": self.outcome, "rows": self.rows,
            "totals": {currency: f"{total:f}" for currency, total in self.totals},
            "supersededImportId": None if self.superseded_import_id is None else str(self.superseded_import_id),
            "rowsRemoved": self.rows_removed,
        }


@dataclass(frozen=True, slots=True)
class LateCostEntry:
    """For one account, approved month and currency: what its invoice was made of, what the
    delivery says now, and the difference (stored as a late cost when not zero)."""

    managed_account_id: uuid.UUID
    invoice_id: uuid.UUID
    billing_month: date
    currency: str
    invoiced_cost: Decimal
    delivered_cost: Decimal
    difference: Decimal
    invoiced_rows: int
    delivered_rows: int

    def as_json(self) -> dict[str, Any]:
        return {
            "accountId": str(self.managed_account_id), "invoiceId": str(self.invoice_id),
            "billingMonth": self.billing_month.isoformat(), "currency": self.currency,
            "invoicedCost": f"{self.invoiced_cost:f}", "deliveredCost": f"{self.delivered_cost:f}",
            "difference": f"{self.difference:f}", "invoicedRows": self.invoiced_rows,
            "deliveredRows": self.delivered_rows,
        }


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What one import found and did. `rows` = `inserted` + `duplicates` + `late`."""

    cost_import_id: uuid.UUID
    origin: CostOrigin
    managed_account_id: uuid.UUID | None  # the account whose own integration it was
    rows: int
    inserted: int  # written as current costs
    duplicates: int  # of scopes whose current delivery is byte-identical: left as they were
    unmatched: tuple[UnmatchedSubAccount, ...]
    totals: tuple[AccountMonthTotal, ...]
    late: int = 0  # of approved months: kept out, their difference is in `late_costs`
    replaced: int = 0  # rows of earlier deliveries removed
    scopes: tuple[ScopeOutcome, ...] = ()
    late_costs: tuple[LateCostEntry, ...] = ()
    parts: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        """The report as stored on the import (`CostImport.report`)."""
        return {
            "rows": self.rows, "inserted": self.inserted, "duplicates": self.duplicates,
            "late": self.late, "replaced": self.replaced, "parts": list(self.parts),
            "unmatched": [entry.as_json() for entry in self.unmatched],
            "totals": [entry.as_json() for entry in self.totals],
            "scopes": [entry.as_json() for entry in self.scopes],
            "lateCosts": [entry.as_json() for entry in self.late_costs],
        }
