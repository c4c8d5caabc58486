"""A month's reconciliation: every unit of billed cost imported for it, accounted for.

Per billing currency, the month's imported cost is its cost records (BilledCost) plus what
deliveries after approval added (late costs: kept apart from the invoiced records). Every
record falls in exactly one part, so the parts add up to the imported total exactly:
- INVOICED: records of an account whose invoice of the month is generated (awaiting approval
  or approved), and that its invoice bills;
- NOT_INVOICED: records of an account without such an invoice (not closed yet, not generated,
  in error, voided and not replaced, or not invoiced at all);
- INTEGRATION_EXCLUDED: records of an account's own integrations it does not bill
  (`include_account_integrations` off);
- UNCLAIMED: records of sub-accounts no managed account claims;
- LATE: late costs (pending or billed by a later invoice).
Each invoiced account also shows what its invoice printed for usage; where nothing was
converted (same currency, billed on BilledCost) the difference is the rounding."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Any

from tortoise import connections

from models.costs import CostOrigin
from models.currencies import round_money
from models.invoices.tables import Invoice, InvoiceLineItem, LineKind

EXACT_ZERO = Decimal(0)


class ReconciliationPart(str, Enum):
    INVOICED = "INVOICED"
    NOT_INVOICED = "NOT_INVOICED"
    INTEGRATION_EXCLUDED = "INTEGRATION_EXCLUDED"
    UNCLAIMED = "UNCLAIMED"
    LATE = "LATE"


@dataclass
class ReconciliationLine:
    part: ReconciliationPart
    currency: str
    cost: Decimal
    rows: int
    account_id: Any = None
    account_name: str = ""
    sub_account_id: str = ""
    invoice_id: Any = None
    invoice_number: str | None = None
    # For INVOICED: what the invoice printed for this usage (in its currency), and the
    # rounding when nothing was converted.
    invoiced_amount: Decimal | None = None
    invoice_currency: str | None = None
    rounding: Decimal | None = None


@dataclass
class Reconciliation:
    month: date
    lines: list[ReconciliationLine] = field(default_factory=list)

    def totals(self) -> dict[str, dict[str, Decimal]]:
        """Per currency: the imported total and each part's sum."""
        result: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for line in self.lines:
            result[line.currency][line.part.value] += line.cost
            result[line.currency]["IMPORTED"] += line.cost
        return {currency: dict(parts) for currency, parts in sorted(result.items())}


# The month's records summed per account, provider, origin, currency (and sub-account, when
# unclaimed) first: the invoice each sum belongs to is then looked up a few thousand times,
# not once per record.
_RECORDS = """
WITH sums AS (
    SELECT managed_account_id, provider_name, origin, billing_currency,
           CASE WHEN managed_account_id IS NULL THEN sub_account_id ELSE '' END AS sub_account_id,
           sum(billed_cost) AS cost, sum(row_count) AS rows
    FROM cost_totals WHERE organization_id = $1 AND billing_month = $2
    GROUP BY 1, 2, 3, 4, 5
)
SELECT CASE
         WHEN s.managed_account_id IS NULL THEN 'UNCLAIMED'
         WHEN s.origin = $3 AND NOT a.include_account_integrations THEN 'INTEGRATION_EXCLUDED'
         WHEN l.id IS NULL THEN 'NOT_INVOICED'
         ELSE 'INVOICED' END AS part,
       s.billing_currency AS currency, sum(s.cost) AS cost, sum(s.rows)::int AS rows,
       s.managed_account_id AS account_id, COALESCE(a.name, '') AS account_name, s.sub_account_id,
       l.id AS invoice_id, l.number AS invoice_number, l.currency AS invoice_currency,
       l.current_revision_id, l.billing_basis
FROM sums s
LEFT JOIN managed_accounts a ON a.id = s.managed_account_id
LEFT JOIN LATERAL (
    SELECT i.id, i.number, i.currency, i.current_revision_id, r.billing_basis
    FROM invoices i JOIN billing_periods p ON p.id = i.billing_period_id
    JOIN invoice_revisions r ON r.id = i.current_revision_id
    WHERE i.managed_account_id = s.managed_account_id AND p.start_date = $2 AND i.kind = 'REGULAR'
      AND i.status IN ('AWAITING_APPROVAL', 'APPROVED') AND i.provider_name IN ('', s.provider_name)
    ORDER BY i.provider_name = s.provider_name DESC, i.status = 'APPROVED' DESC, i.created_at DESC LIMIT 1
) l ON true
GROUP BY 1, 2, 5, 6, 7, 8, 9, 10, 11, 12
ORDER BY 1, 6, 7, 2
"""

_LATE = """
SELECT l.currency, sum(l.billable) AS cost, l.managed_account_id AS account_id, a.name AS account_name,
       i.id AS invoice_id, i.number AS invoice_number
FROM late_costs l JOIN managed_accounts a ON a.id = l.managed_account_id JOIN invoices i ON i.id = l.invoice_id
WHERE l.organization_id = $1 AND l.billing_month = $2
GROUP BY 1, 3, 4, 5, 6 HAVING sum(l.billable) <> 0 ORDER BY 4, 1
"""


async def reconcile(organization_id: Any, month: date) -> Reconciliation:
    db = connections.get("default")
    records = await db.execute_query_dict(_RECORDS, [str(organization_id), month, CostOrigin.ACCOUNT_INTEGRATION.value])
    revisions = [row["current_revision_id"] for row in records if row["current_revision_id"]]
    printed: dict[Any, Decimal] = {}
    if revisions:
        for row in await db.execute_query_dict(
            "SELECT revision_id, sum(amount) AS amount FROM invoice_line_items"
            " WHERE revision_id = ANY($1::uuid[]) AND kind = 'USAGE' GROUP BY 1",
            [revisions],
        ):
            printed[row["revision_id"]] = row["amount"]
    result = Reconciliation(month)
    invoiced_costs: dict[Any, Decimal] = defaultdict(Decimal)
    for row in records:
        if row["part"] == ReconciliationPart.INVOICED.value:
            invoiced_costs[row["invoice_id"]] += row["cost"]
    for row in records:
        line = ReconciliationLine(
            part=ReconciliationPart(row["part"]), currency=row["currency"], cost=row["cost"], rows=row["rows"],
            account_id=row["account_id"], account_name=row["account_name"], sub_account_id=row["sub_account_id"],
        )
        if line.part == ReconciliationPart.INVOICED:
            line.invoice_id, line.invoice_number = row["invoice_id"], row["invoice_number"]
            line.invoice_currency = row["invoice_currency"]
            line.invoiced_amount = printed.get(row["current_revision_id"], EXACT_ZERO)
            single = invoiced_costs[row["invoice_id"]] == row["cost"]
            if single and row["invoice_currency"] == row["currency"] and row["billing_basis"] == "BILLED":
                line.rounding = line.invoiced_amount - row["cost"]
        result.lines.append(line)
    for row in await db.execute_query_dict(_LATE, [str(organization_id), month]):
        result.lines.append(ReconciliationLine(
            part=ReconciliationPart.LATE, currency=row["currency"], cost=row["cost"], rows=0,
            account_id=row["account_id"], account_name=row["account_name"], invoice_id=row["invoice_id"],
            invoice_number=row["invoice_number"],
        ))
    return result


CSV_COLUMNS = (
    "Month", "Part", "Currency", "Cost", "Rows", "Account", "SubAccountId", "InvoiceNumber",
    "InvoiceCurrency", "InvoicedAmount", "Rounding",
)


def _plain(value: Decimal | None) -> str:
    return "" if value is None else f"{value.normalize():f}" if value else "0"


def reconciliation_csv(reconciliation: Reconciliation) -> bytes:
    """The reconciliation as CSV: a row per line, then a TOTAL row per currency and part and
    an IMPORTED row per currency."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    month = reconciliation.month.strftime("%Y-%m")
    for line in reconciliation.lines:
        writer.writerow([
            month, line.part.value, line.currency, _plain(line.cost), line.rows, line.account_name,
            line.sub_account_id, line.invoice_number or "", line.invoice_currency or "",
            _plain(line.invoiced_amount), _plain(line.rounding),
        ])
    for currency, parts in reconciliation.totals().items():
        for part, total in parts.items():
            writer.writerow([month, f"TOTAL {part}", currency, _plain(total), "", "", "", "", "", "", ""])
    return out.getvalue().encode()


@dataclass
class Margin:
    """What an account's invoice of the month bills for cloud usage (usage and billing rule
    lines, in the invoice currency) against what that usage cost the MSP (its BilledCost,
    converted at the rates the revision applied)."""

    account_id: Any
    account_name: str
    invoice_id: Any
    invoice_number: str | None
    currency: str
    billed: Decimal
    cost: Decimal

    @property
    def margin(self) -> Decimal:
        return self.billed - self.cost

    @property
    def percent(self) -> Decimal | None:
        return None if not self.billed else (self.margin * 100 / self.billed).quantize(Decimal("0.01"))


async def margins(organization_id: Any, month: date) -> list[Margin]:
    """A margin per invoiced account of the month, from its reconciliation."""
    found = await reconcile(organization_id, month)
    costs: dict[Any, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    names: dict[Any, tuple[Any, str]] = {}
    for line in found.lines:
        if line.part == ReconciliationPart.INVOICED:
            costs[line.invoice_id][line.currency] += line.cost
            names[line.invoice_id] = (line.account_id, line.account_name)
    invoices = await Invoice.filter(id__in=list(costs)).select_related("current_revision").order_by("number")
    billed: dict[Any, Decimal] = defaultdict(Decimal)
    for revision_id, amount in await InvoiceLineItem.filter(
        revision_id__in=[i.current_revision_id for i in invoices], kind__in=(LineKind.USAGE, LineKind.RULE),
    ).values_list("revision_id", "amount"):
        billed[revision_id] += amount
    result = []
    for invoice in invoices:
        revision = invoice.current_revision
        assert revision is not None, "an invoiced account's invoice is generated"
        rates = {cost: Decimal(rate) for cost, rate in (revision.exchange_rates or {}).items()}
        if revision.cost_currency != invoice.currency:
            rates.setdefault(revision.cost_currency, revision.exchange_rate)
        cost = sum(
            (amount * (Decimal(1) if cost_currency == invoice.currency else rates.get(cost_currency, Decimal(0)))
             for cost_currency, amount in costs[invoice.id].items()),
            Decimal(0),
        )
        account_id, account_name = names[invoice.id]
        result.append(Margin(
            account_id, account_name, invoice.id, invoice.number, invoice.currency,
            round_money(billed[invoice.current_revision_id], invoice.currency), round_money(cost, invoice.currency),
        ))
    return result
