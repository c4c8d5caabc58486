"""Checks before approval: what a finance team looks at before it lets an invoice go.

Generation stores its findings on the revision, measured against the account's previous
month (its invoice of the same provider split, approved or awaiting approval):
- TOTAL_CHANGED, SERVICE_CHANGED: the total, or one service's amount (provider and service),
  moved by at least the organization's percentage and amount both (`check_change_percent`,
  `check_change_amount`, in the invoice currency);
- NEW_SERVICE, SERVICE_GONE: a service billed this month and not the last, or the reverse (a
  warning when its amount reaches the amount threshold, otherwise for information);
- NO_DATA: a provider or a sub-account with costs last month and none this month (an upstream
  delay, or an integration that stopped);
- ZERO_TOTAL, NEGATIVE_TOTAL.
Reading an invoice that awaits approval adds what has changed since it was generated:
- RATE_CHANGED: an exchange rate of its month differs from the one the revision applied;
- STALE_REVISION: a cost delivery for its month, with rows of its account, arrived after;
- INCOMPLETE_DATA: its month closed before the data of a cost source feeding it was complete
  (forced, or at the latest close day): the MSP's sources feed every account, an account's own
  integration only that account; a source's provider only that provider's invoice.

Every WARNING must be acknowledged by the approval (`approveInvoices(acknowledge:)`); INFO
never stops it. Comparisons need the same invoice currency both months."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from tortoise import connections

from models.currencies import round_money
from models.exchange_rates import ExchangeRate
from models.invoices.tables import Invoice, InvoiceKind, InvoiceLineItem, InvoiceRevision, InvoiceStatus, LineKind

HUNDRED = Decimal(100)


class CheckCode(str, Enum):
    TOTAL_CHANGED = "TOTAL_CHANGED"
    SERVICE_CHANGED = "SERVICE_CHANGED"
    NEW_SERVICE = "NEW_SERVICE"
    SERVICE_GONE = "SERVICE_GONE"
    NO_DATA = "NO_DATA"
    ZERO_TOTAL = "ZERO_TOTAL"
    NEGATIVE_TOTAL = "NEGATIVE_TOTAL"
    RATE_CHANGED = "RATE_CHANGED"
    STALE_REVISION = "STALE_REVISION"
    INCOMPLETE_DATA = "INCOMPLETE_DATA"


class Severity(str, Enum):
    INFO = "INFO"
    WARNING = "WARNING"


@dataclass
class Finding:
    code: CheckCode
    severity: Severity
    message: str
    # The numbers behind it, as text (amounts, percentages, names).
    figures: dict[str, str] = field(default_factory=dict)

    def stored(self) -> dict[str, Any]:
        return {**asdict(self), "code": self.code.value, "severity": self.severity.value}

    @classmethod
    def from_stored(cls, row: dict[str, Any]) -> Finding:
        return cls(CheckCode(row["code"]), Severity(row["severity"]), row["message"], dict(row.get("figures") or {}))


@dataclass(frozen=True)
class Thresholds:
    percent: Decimal
    amount: Decimal

    def exceeded(self, before: Decimal, after: Decimal) -> bool:
        change = abs(after - before)
        if change < self.amount:
            return False
        return before == 0 or change * HUNDRED / abs(before) >= self.percent


def _change(before: Decimal, after: Decimal) -> dict[str, str]:
    figures = {"previous": str(before), "current": str(after), "change": str(after - before)}
    if before:
        figures["percent"] = str((((after - before) * HUNDRED) / abs(before)).quantize(Decimal("0.1")))
    return figures


def _previous_month(month: date) -> date:
    return (month - timedelta(days=1)).replace(day=1)


@dataclass
class History:
    """What an invoice's checks compare it with: the sub-accounts with costs last month and
    this month (provider, sub-account) and the previous month's invoice with its usage lines."""

    sources_before: set[tuple[str, str]] = field(default_factory=set)
    sources_now: set[tuple[str, str]] = field(default_factory=set)
    previous: Invoice | None = None
    # (provider, service, amount) of the previous invoice's usage lines.
    previous_usage: list[tuple[str, str, Decimal]] = field(default_factory=list)


async def histories(invoices: list[tuple[Invoice, date]]) -> list[History]:
    """The history of each (invoice, its month), read for all of them at once. The previous
    invoice is the account's of the previous month with the same provider split: approved
    first, else awaiting approval."""
    found = [History() for _ in invoices]
    if not invoices:
        return found
    rows = (await connections.get("default").execute_query(
        """SELECT w.n, s.* FROM unnest($1::int[], $2::uuid[], $3::date[], $4::date[], $5::text[])
               AS w(n, account, month, before, provider)
           CROSS JOIN LATERAL (
               SELECT DISTINCT billing_month, provider_name, sub_account_id FROM cost_totals
               WHERE managed_account_id = w.account AND billing_month IN (w.before, w.month)
                 AND (w.provider = '' OR provider_name = w.provider)
           ) AS s""",
        [list(range(len(invoices))), [str(i.managed_account_id) for i, _ in invoices],
         [month for _, month in invoices], [_previous_month(month) for _, month in invoices],
         [i.provider_name for i, _ in invoices]],
    ))[1]
    for row in rows:
        history = found[row["n"]]
        month = invoices[row["n"]][1]
        (history.sources_now if row["billing_month"] == month else history.sources_before).add(
            (row["provider_name"], row["sub_account_id"])
        )
    candidates = await Invoice.filter(
        managed_account_id__in={i.managed_account_id for i, _ in invoices},
        billing_period__start_date__in={_previous_month(month) for _, month in invoices},
        kind=InvoiceKind.REGULAR, status__in=(InvoiceStatus.APPROVED, InvoiceStatus.AWAITING_APPROVAL),
        current_revision_id__isnull=False,
    ).select_related("billing_period")
    candidates.sort(key=lambda row: row.status != InvoiceStatus.APPROVED)
    for (invoice, month), history in zip(invoices, found, strict=True):
        history.previous = next((
            row for row in candidates
            if row.managed_account_id == invoice.managed_account_id and row.provider_name == invoice.provider_name
            and row.billing_period.start_date == _previous_month(month)
        ), None)
    lines: dict[Any, list[tuple[str, str, Decimal]]] = defaultdict(list)
    revisions = {h.previous.current_revision_id for h in found if h.previous is not None}
    for revision_id, provider, service, amount in await InvoiceLineItem.filter(
        revision_id__in=revisions, kind=LineKind.USAGE,
    ).order_by("revision_id", "position").values_list("revision_id", "provider_name", "service_name", "amount"):
        lines[revision_id].append((provider, service, amount))
    for history in found:
        if history.previous is not None:
            history.previous_usage = lines[history.previous.current_revision_id]
    return found


def _services(lines: list[tuple[str, str, Decimal]]) -> dict[tuple[str, str], Decimal]:
    services: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for provider, service, amount in lines:
        services[(provider, service)] += amount
    return services


def generation_findings(
    history: History, thresholds: Thresholds, currency: str, total: Decimal, usage: list[tuple[str, str, Decimal]],
) -> list[Finding]:
    """What a new revision (its `total` and `usage` lines as provider, service, amount) shows
    against the previous month (`history`)."""
    findings = []
    if total == 0:
        findings.append(Finding(CheckCode.ZERO_TOTAL, Severity.WARNING, "The invoice totals zero.", {"total": str(total)}))
    elif total < 0:
        findings.append(Finding(
            CheckCode.NEGATIVE_TOTAL, Severity.WARNING, f"The invoice totals {total} {currency}: the customer is owed.",
            {"total": str(total)},
        ))
    before, now = history.sources_before, history.sources_now
    providers_now = {provider for provider, _ in now}
    for provider in sorted({provider for provider, _ in before} - providers_now):
        findings.append(Finding(
            CheckCode.NO_DATA, Severity.WARNING,
            f"No {provider} costs this month, though last month had some: is its data late?", {"provider": provider},
        ))
    for provider, sub_account in sorted(before - now):
        if provider in providers_now:
            findings.append(Finding(
                CheckCode.NO_DATA, Severity.WARNING,
                f"No costs this month for {provider} sub-account {sub_account}, though last month had some.",
                {"provider": provider, "subAccount": sub_account},
            ))
    previous = history.previous
    if previous is None or previous.currency != currency:
        return findings
    previous_total = round_money(previous.total, currency)
    if thresholds.exceeded(previous_total, total):
        findings.append(Finding(
            CheckCode.TOTAL_CHANGED, Severity.WARNING,
            f"The total moved from {previous_total} to {total} {currency} since last month.", _change(previous_total, total),
        ))
    last = _services([
        (provider, service, round_money(amount, currency)) for provider, service, amount in history.previous_usage
    ])
    this = _services(usage)
    for key in sorted(set(last) | set(this)):
        name = " ".join(part for part in key if part) or "Cloud usage"
        figures = {"provider": key[0], "service": key[1], **_change(last.get(key, Decimal(0)), this.get(key, Decimal(0)))}
        if key not in last:
            severity = Severity.WARNING if abs(this[key]) >= thresholds.amount else Severity.INFO
            findings.append(Finding(CheckCode.NEW_SERVICE, severity, f"{name} is new this month ({this[key]} {currency}).", figures))
        elif key not in this:
            severity = Severity.WARNING if abs(last[key]) >= thresholds.amount else Severity.INFO
            findings.append(Finding(
                CheckCode.SERVICE_GONE, severity, f"{name} was billed last month ({last[key]} {currency}), not this month.", figures,
            ))
        elif thresholds.exceeded(last[key], this[key]):
            findings.append(Finding(
                CheckCode.SERVICE_CHANGED, Severity.WARNING,
                f"{name} moved from {last[key]} to {this[key]} {currency} since last month.", figures,
            ))
    return findings


async def current_findings(invoice: Invoice) -> list[Finding]:
    """The current revision's findings, and for an invoice awaiting approval what changed
    since it was generated."""
    return (await current_findings_of([invoice]))[0]


async def current_findings_of(invoices: list[Invoice]) -> list[list[Finding]]:
    """`current_findings` of each invoice, a few statements for all of them (a page of the
    list, a month's approval)."""
    revisions = {
        revision.id: revision
        for revision in await InvoiceRevision.filter(
            id__in={i.current_revision_id for i in invoices if i.current_revision_id is not None}
        ).only("id", "checks", "exchange_rates", "created_at", "currency")
    }
    found = [
        [Finding.from_stored(row) for row in revisions[i.current_revision_id].checks]
        if i.current_revision_id in revisions else []
        for i in invoices
    ]
    # What changed since generation, for those that await approval (or failed).
    open_ = [
        (n, invoice, revisions[invoice.current_revision_id])
        for n, invoice in enumerate(invoices)
        if invoice.current_revision_id in revisions
        and invoice.status in (InvoiceStatus.AWAITING_APPROVAL, InvoiceStatus.ERROR)
    ]
    if not open_:
        return found
    of = {
        invoice_id: (month_start, incomplete or [])
        for invoice_id, month_start, incomplete in await Invoice.filter(id__in=[i.id for _, i, _ in open_]).values_list(
            "id", "billing_period__start_date", "billing_period__incomplete_at_close"
        )
    }
    rates = await _rates_now(open_, of)
    stale = await _stale(open_, of)
    for n, invoice, revision in open_:
        month_start, incomplete = of[invoice.id]
        found[n].extend(_incomplete_data(invoice, incomplete))
        found[n].extend(_rate_changes(revision, rates.get((invoice.organization_id, month_start, revision.currency), [])))
        if stale.get(n):
            found[n].append(Finding(
                CheckCode.STALE_REVISION, Severity.WARNING,
                "Costs of the month were delivered again after the invoice was generated: regenerate it.",
                {"deliveries": str(stale[n])},
            ))
    return found


async def _rates_now(
    open_: list[tuple[int, Invoice, InvoiceRevision]], of: dict[Any, tuple[date, list]],
) -> dict[tuple[Any, date, str], list[ExchangeRate]]:
    """The rates now of the months and currencies the revisions applied, by (organization,
    month, invoice currency)."""
    wanted = [(invoice, revision) for _, invoice, revision in open_ if revision.exchange_rates]
    if not wanted:
        return {}
    found: dict[tuple[Any, date, str], list[ExchangeRate]] = defaultdict(list)
    for rate in await ExchangeRate.filter(
        organization_id__in={invoice.organization_id for invoice, _ in wanted},
        month__in={of[invoice.id][0] for invoice, _ in wanted},
        currency__in={revision.currency for _, revision in wanted},
        base_currency__in={cost for _, revision in wanted for cost in revision.exchange_rates},
    ):
        found[(rate.organization_id, rate.month, rate.currency)].append(rate)
    return found


def _rate_changes(revision: InvoiceRevision, rates: list[ExchangeRate]) -> list[Finding]:
    applied = {cost: Decimal(rate) for cost, rate in (revision.exchange_rates or {}).items()}
    findings = []
    for rate in rates:
        if rate.base_currency in applied and rate.rate != applied[rate.base_currency]:
            was, now = f"{applied[rate.base_currency].normalize():f}", f"{rate.rate.normalize():f}"
            findings.append(Finding(
                CheckCode.RATE_CHANGED, Severity.WARNING,
                f"The {rate.base_currency} rate is {now} now, not the {was} the invoice applied: regenerate it.",
                {"currency": rate.base_currency, "applied": was, "current": now},
            ))
    return findings


async def _stale(open_: list[tuple[int, Invoice, InvoiceRevision]], of: dict[Any, tuple[date, list]]) -> dict[int, int]:
    """How many deliveries of each one's month, with costs of its account, arrived after its
    revision was made (by the invoice's index)."""
    rows = (await connections.get("default").execute_query(
        """SELECT w.n, (SELECT count(*) FROM cost_delivery_scopes s
               WHERE s.organization_id = w.organization AND s.billing_month = w.month AND s.created_at > w.since
                 AND EXISTS (SELECT 1 FROM cost_totals r WHERE r.cost_import_id = s.cost_import_id
                             AND r.billing_month = w.month AND r.managed_account_id = w.account)) AS deliveries
           FROM unnest($1::int[], $2::uuid[], $3::date[], $4::timestamptz[], $5::uuid[])
               AS w(n, organization, month, since, account)""",
        [[n for n, _, _ in open_], [str(invoice.organization_id) for _, invoice, _ in open_],
         [of[invoice.id][0] for _, invoice, _ in open_], [revision.created_at for _, _, revision in open_],
         [str(invoice.managed_account_id) for _, invoice, _ in open_]],
    ))[1]
    return {row["n"]: row["deliveries"] for row in rows if row["deliveries"]}


def _incomplete_data(invoice: Invoice, sources: list[dict[str, Any]]) -> list[Finding]:
    """The sources whose data was not complete when the invoice's month closed, of those that
    feed the invoice."""
    return [
        Finding(
            CheckCode.INCOMPLETE_DATA, Severity.WARNING,
            f"The month closed before the data of {source['source']}{f' ({p})' if (p := source['provider']) else ''} "
            f"was complete ({source['state']}): costs may be missing.",
            {"source": source["source"], "provider": source["provider"] or "", "state": source["state"],
             "writtenAt": source["writtenAt"] or ""},
        )
        for source in sources
        if source["accountId"] in (None, str(invoice.managed_account_id))
        and (not invoice.provider_name or source["provider"] in (None, invoice.provider_name))
    ]


def unacknowledged(findings: list[Finding], acknowledged: set[CheckCode]) -> list[Finding]:
    return [f for f in findings if f.severity == Severity.WARNING and f.code not in acknowledged]
