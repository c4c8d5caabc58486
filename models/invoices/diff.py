"""What changed between two revisions of an invoice, line by line, and why where it is known.

Lines are matched by what they are (kind, provider, service, category, description): a line of
one revision without a match in the other is added or removed, a matched line whose amount
moved is changed. Causes are read from what each revision froze: COSTS (usage lines moved),
RULES (billing rule lines), RATES (the exchange rates applied), PROFILE (the billing profile's
charges and taxes, or its printed details), ACCOUNT (the customer's printed details, the
currency), ITEMS (one-off items), LATE_COSTS, BASIS (the cost column billed)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

from models.invoices.tables import InvoiceLineItem, InvoiceRevision, LineKind


class DiffCause(str, Enum):
    COSTS = "COSTS"
    RULES = "RULES"
    RATES = "RATES"
    PROFILE = "PROFILE"
    ACCOUNT = "ACCOUNT"
    ITEMS = "ITEMS"
    LATE_COSTS = "LATE_COSTS"
    BASIS = "BASIS"


_CAUSE_OF_KIND = {
    LineKind.USAGE: DiffCause.COSTS, LineKind.RULE: DiffCause.RULES, LineKind.CHARGE: DiffCause.PROFILE,
    LineKind.TAX: DiffCause.PROFILE, LineKind.ONE_OFF: DiffCause.ITEMS, LineKind.LATE_COST: DiffCause.LATE_COSTS,
}


@dataclass
class LineChange:
    kind: LineKind
    description: str
    before: Decimal | None
    after: Decimal | None

    @property
    def difference(self) -> Decimal:
        return (self.after or Decimal(0)) - (self.before or Decimal(0))


@dataclass
class RevisionDiff:
    revision: int
    against: int | None
    added: list[LineChange] = field(default_factory=list)
    removed: list[LineChange] = field(default_factory=list)
    changed: list[LineChange] = field(default_factory=list)
    subtotal_change: Decimal = Decimal(0)
    charges_change: Decimal = Decimal(0)
    total_change: Decimal = Decimal(0)
    causes: list[DiffCause] = field(default_factory=list)


def _key(line: InvoiceLineItem) -> tuple[str, ...]:
    return (line.kind.value, line.provider_name, line.service_name, line.service_category, line.description)


async def _lines(revision_id: Any) -> dict[tuple[str, ...], list[InvoiceLineItem]]:
    lines: dict[tuple[str, ...], list[InvoiceLineItem]] = defaultdict(list)
    for line in await InvoiceLineItem.filter(revision_id=revision_id).order_by("position"):
        lines[_key(line)].append(line)
    return lines


def _in_cost_currency(snapshot: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The printed items as billed, before conversion."""
    return sorted(
        (line["description"], line.get("cost_currency", ""), line.get("cost_amount") or line["amount"])
        for line in snapshot.get("lines", [])
    )


async def revision_diff(invoice_id: Any, revision: int, against: int | None = None) -> RevisionDiff | None:
    """Revision `revision` of the invoice against revision `against` (default: the one before;
    none for the first, whose lines are then all added); None when either is not there."""
    against = revision - 1 if against is None else against
    revisions = {
        row.revision: row for row in await InvoiceRevision.filter(invoice_id=invoice_id, revision__in=[revision, against]).only(
            "id", "revision", "currency", "exchange_rates", "billing_basis", "subtotal", "charges", "total", "snapshot",
        )
    }
    if revision not in revisions or (against >= 1 and against not in revisions):
        return None
    new, old = revisions[revision], revisions.get(against)
    result = RevisionDiff(revision=revision, against=old.revision if old else None)
    after = await _lines(new.id)
    before = await _lines(old.id) if old else {}
    causes: set[DiffCause] = set()
    for key in list(before) + [k for k in after if k not in before]:
        olds, news = before.get(key, []), after.get(key, [])
        kind = LineKind(key[0])
        for i in range(max(len(olds), len(news))):
            was = olds[i].amount if i < len(olds) else None
            now = news[i].amount if i < len(news) else None
            change = LineChange(kind, key[4], was, now)
            if was is None:
                result.added.append(change)
            elif now is None:
                result.removed.append(change)
            elif was != now:
                result.changed.append(change)
            else:
                continue
            causes.add(_CAUSE_OF_KIND[kind])
    if old is not None:
        result.subtotal_change = new.subtotal - old.subtotal
        result.charges_change = new.charges - old.charges
        result.total_change = new.total - old.total
        if (old.exchange_rates or {}) != (new.exchange_rates or {}):
            causes.add(DiffCause.RATES)
        if old.billing_basis != new.billing_basis:
            causes.add(DiffCause.BASIS)
        if old.snapshot.get("msp") != new.snapshot.get("msp"):
            causes.add(DiffCause.PROFILE)
        if old.snapshot.get("customer") != new.snapshot.get("customer") or old.currency != new.currency:
            causes.add(DiffCause.ACCOUNT)
    else:
        result.subtotal_change, result.charges_change, result.total_change = new.subtotal, new.charges, new.total
    # A new rate moves every converted line: the costs changed only if they differ before conversion.
    if old is not None and DiffCause.RATES in causes and _in_cost_currency(old.snapshot) == _in_cost_currency(new.snapshot):
        causes.discard(DiffCause.COSTS)
    result.causes = sorted(causes, key=list(DiffCause).index)
    return result
