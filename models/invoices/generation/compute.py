"""Generation's second step: the invoice computed from the account's costs of the month.

The order, written down once:
1. Usage lines: the month's cost records (their BilledCost, or the EffectiveCost or ListCost
   the account's billing basis names, or its billing profile's; a row without that column
   counts its BilledCost) grouped by provider, service, service category and
   billing currency (quantity and unit shown when every row of the group has the same unit);
   groups summing to zero are left out. A line's description names what it groups:
   "AWS Amazon Elastic Compute Cloud (Storage)", and its currency when the month's costs came
   in several. Records of the account's own integrations count only when the account includes
   them (`include_account_integrations`); the MSP's delegated ones always do. An invoice of one
   provider (`invoice_per_provider`) takes that provider's records only.
2. Conversion of each line, exactly, to the invoice currency at the month's rate for its
   billing currency (every rate applied is stamped on the revision and printed); a missing
   rate fails the generation naming it.
3. Billing rules, in the order `models.billing_rules` documents (credits, discounts, markups;
   then tax rules), on the converted amounts.
3a. One-off items added to the invoice by hand (`InvoiceExtraLine`), in the invoice
   currency, after the usage and outside the billing rules.
3b. Late costs (`models.costs.LateCost`) not billed yet: a line per month and currency,
   "Costs for September 2024 received after invoicing", converted at that month's rate and
   outside the billing rules. A month's invoice bills those of earlier months when the
   organization bills late costs on the next invoice, and those of its own month (a
   replacement of a voided invoice); a supplementary invoice bills its month's.
4. Rounding: every printed line is rounded half-up to the currency's minor unit
   (`models.currencies.round_money`); the subtotal, charges and total are sums of printed
   lines, so the total always equals the sum of what the invoice shows.
5. The billing profile's taxes and additional charges, in their order, on the subtotal after
   rules: a percentage of it, or a fixed amount in the invoice currency (not on a
   supplementary invoice, which adds to a month that already carried them).
6. Dates: the issue date is set by the first generation and kept by every regeneration (the
   number is taken then too, so numbers and issue dates rise together); the due date is the
   issue date plus the account's payment terms at generation.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from models.billing_profiles import ChargeKind
from models.billing_rules import BillingRule, RuleCalculation, RuleKind
from models.currencies import round_money
from models.errors import GenerationFailed
from models.invoices.checks import Thresholds, generation_findings
from models.invoices.generation.inputs import fetch_inputs
from models.invoices.generation.types import ComputedRevision, Context, Inputs, Line
from models.invoices.queries import organization_today
from models.invoices.tables import InvoiceKind, LineKind
from models.locales import format_month, format_percent_value, translate
from models.managed_accounts import AutoInvoice

HUNDRED = Decimal(100)
RULE_ORDER = {RuleKind.CREDIT: 0, RuleKind.DISCOUNT: 1, RuleKind.MARKUP: 2}


def _rates(ctx: Context, needed: set[tuple[date, str]]) -> dict[tuple[date, str], Decimal]:
    """The rate into the invoice currency of each (month, cost currency); a missing one fails
    the generation, naming every rate to set."""
    assert ctx.inputs is not None
    currency = ctx.account.currency
    rates = {(month, cost): Decimal(1) for month, cost in needed if cost == currency}
    rates |= {key: rate for key, rate in ctx.inputs.rates.items() if key in needed and key not in rates}
    missing = sorted(needed - set(rates))
    if missing:
        names = ", ".join(f"{cost} to {currency} for {month:%Y-%m}" for month, cost in missing)
        raise GenerationFailed(
            f"No exchange rate from {names}: set {'it' if len(missing) == 1 else 'them'} (setExchangeRate), then regenerate."
        )
    return rates


def _matches(rule: BillingRule, line: Line) -> bool:
    return all(
        wanted is None or wanted == actual
        for wanted, actual in (
            (rule.provider_name, line.provider),
            (rule.service_name, line.service),
            (rule.service_category, line.category),
        )
    )


def _rule_delta(rule: BillingRule, base: Decimal, rate: Decimal) -> Decimal:
    """The rule's change to `base` (in the invoice currency); a fixed value is in the cost
    currency, converted at `rate`."""
    if rule.calculation == RuleCalculation.PERCENT:
        amount = base * rule.value / HUNDRED
    elif rule.kind in (RuleKind.CREDIT, RuleKind.DISCOUNT):
        amount = min(rule.value * rate, max(base, Decimal(0)))
    else:
        amount = rule.value * rate
    return amount if rule.kind in (RuleKind.MARKUP, RuleKind.TAX) else -amount


def _rule_label(rule: BillingRule, locale: str) -> str:
    """The label of a rule's adjustment line in the revision's language ("Markup: Support")."""
    if rule.kind == RuleKind.CREDIT:
        return translate(locale, "Credit: %(name)s", name=rule.name)
    if rule.kind == RuleKind.DISCOUNT:
        return translate(locale, "Discount: %(name)s", name=rule.name)
    return translate(locale, "Markup: %(name)s", name=rule.name)


def _description(group: dict[str, Any], several: bool, locale: str) -> str:
    what = f"{group['provider_name']} {group['service_name']}".strip() or translate(locale, "Cloud usage")
    details = [part for part in (group["service_category"], several and group["billing_currency"]) if part]
    return f"{what} ({', '.join(details)})" if details else what


def _late_lines(rows: list[dict[str, Any]], rates: dict[tuple[date, str], Decimal], currency: str, locale: str) -> list[Line]:
    """One line per month and cost currency of late costs, converted at that month's rate,
    labelled in the revision's language."""
    sums: dict[tuple[date, str], Decimal] = {}
    for row in rows:
        key = (row["billing_month"], row["currency"])
        sums[key] = sums.get(key, Decimal(0)) + row["billable"]
    lines = []
    for (month, cost), amount in sorted(sums.items()):
        several = sum(1 for m, _ in sums if m == month) > 1
        label = translate(locale, "Costs for %(month)s received after invoicing", month=format_month(month, locale))
        label += f" ({cost})" if several else ""
        foreign = cost != currency
        lines.append(
            Line(
                kind=LineKind.LATE_COST,
                description=label,
                amount=round_money(amount * rates[(month, cost)], currency),
                cost_currency=cost if foreign else "",
                cost_amount=amount if foreign else None,
            )
        )
    return lines


class _Rates(NamedTuple):
    # Every rate applied, by (month, cost currency); the invoice month's by cost currency.
    all: dict[tuple[date, str], Decimal]
    of_month: dict[str, Decimal]


class _Usage:
    """The usage lines of a month's cost groups, with each line's amount converted (exactly,
    before rounding) and the rate it was converted at."""

    def __init__(self, groups: list[dict[str, Any]], month_rates: dict[str, Decimal], currency: str, locale: str) -> None:
        several = len(month_rates) > 1
        self.locale = locale
        self.lines: list[Line] = []
        self.converted: list[Decimal] = []
        self.rates: list[Decimal] = []
        for g in groups:
            rate = month_rates[g["billing_currency"]]
            agree = g["units"] == 1 and g["unit"] is not None and g["quantity"]
            foreign = g["billing_currency"] != currency
            self.lines.append(
                Line(
                    kind=LineKind.USAGE,
                    provider=g["provider_name"],
                    service=g["service_name"],
                    category=g["service_category"],
                    amount=g["amount"],
                    description=_description(g, several, locale),
                    quantity=g["quantity"] if agree else None,
                    unit=g["unit"] if agree else None,
                    unit_price=(g["amount"] * rate / g["quantity"]) if agree else None,
                    cost_currency=g["billing_currency"] if foreign else "",
                    cost_amount=g["amount"] if foreign else None,
                )
            )
            self.converted.append(g["amount"] * rate)
            self.rates.append(rate)

    def apply_rules(self, rules: list[BillingRule]) -> tuple[list[Line], list[tuple[BillingRule, Decimal]]]:
        """The adjustment lines of the rules (credits, discounts, markups, in that order) and the
        rule taxes, each on the lines it matches as earlier rules left them; a rule's change is
        spread over its lines' converted amounts in proportion."""
        running = list(self.converted)
        adjustments, taxes = [], []
        ordered = sorted((r for r in rules if r.kind != RuleKind.TAX), key=lambda r: RULE_ORDER[r.kind])
        for rule in ordered + [r for r in rules if r.kind == RuleKind.TAX]:
            matched = [i for i, line in enumerate(self.lines) if _matches(rule, line)]
            if not matched:
                continue
            base = sum((running[i] for i in matched), Decimal(0))
            # A fixed value is in the matched lines' cost currency; in the invoice currency
            # when they were billed in several.
            matched_rates = {self.rates[i] for i in matched}
            delta = _rule_delta(rule, base, matched_rates.pop() if len(matched_rates) == 1 else Decimal(1))
            if delta == 0:
                continue
            if rule.kind == RuleKind.TAX:
                taxes.append((rule, delta))
                continue
            if base:
                for i in matched:
                    running[i] += delta * running[i] / base
            adjustments.append(Line(kind=LineKind.RULE, description=_rule_label(rule, self.locale), amount=delta))
        return adjustments, taxes


def _charges(ctx: Context, subtotal: Decimal) -> list[Line]:
    """The billing profile's taxes and charges on the subtotal, unrounded; a supplementary
    invoice carries only the percentages (its month's invoice carried the fixed ones)."""
    supplementary = ctx.invoice.kind == InvoiceKind.SUPPLEMENTARY
    lines = []
    for charge in ctx.charges:
        if supplementary and charge.kind != ChargeKind.PERCENT:
            continue
        amount = subtotal * charge.value / HUNDRED if charge.kind == ChargeKind.PERCENT else charge.value
        percent = charge.value if charge.kind == ChargeKind.PERCENT else None
        label = charge.name if percent is None else f"{charge.name} ({format_percent_value(percent, ctx.locale)})"
        lines.append(Line(kind=LineKind.TAX if charge.is_tax else LineKind.CHARGE, description=label, amount=amount, percent=percent))
    return lines


def _start(ctx: Context, inputs: Inputs) -> tuple[ComputedRevision, list[dict[str, Any]], list[dict[str, Any]], _Rates]:
    """The revision's currencies and rates, and the usage groups and late costs it bills."""
    month, currency = ctx.period.start_date, ctx.account.currency
    supplementary = ctx.invoice.kind == InvoiceKind.SUPPLEMENTARY
    groups = [] if supplementary else [g for g in inputs.usage if g["amount"] != 0]
    late = [row for row in inputs.late if row["billable"] != 0]
    cost_currencies = sorted({g["billing_currency"] for g in groups})
    rates = _rates(ctx, {(month, c) for c in cost_currencies} | {(r["billing_month"], r["currency"]) for r in late})
    month_rates = {c: rates[(month, c)] for c in cost_currencies}
    # The revision's single cost currency and rate: the costs' own when there is one.
    cost_currency = cost_currencies[0] if len(cost_currencies) == 1 else currency
    revision = ComputedRevision(
        currency=currency,
        cost_currency=cost_currency,
        rate=month_rates.get(cost_currency, Decimal(1)),
        rates={c: r for (_, c), r in sorted(rates.items()) if c != currency},
        billing_basis=ctx.basis,
        late_cost_ids=[row["id"] for row in late],
    )
    return revision, groups, late, _Rates(rates, month_rates)


async def compute(ctx: Context) -> ComputedRevision:
    """The invoice computed from its inputs (read first when `fetch_inputs` has not)."""
    if ctx.inputs is None:
        await fetch_inputs([ctx])
    return computed(ctx)


def computed(ctx: Context) -> ComputedRevision:
    """The invoice computed from the inputs `fetch_inputs` read (no database access)."""
    inputs = ctx.inputs
    assert inputs is not None, "fetch_inputs read them"
    revision, groups, late, rates = _start(ctx, inputs)
    currency = revision.currency

    def money(amount: Decimal) -> Decimal:
        return round_money(amount, currency)

    usage = _Usage(groups, rates.of_month, currency, ctx.locale)
    adjustments, taxes = usage.apply_rules(inputs.rules)
    for line, amount in zip(usage.lines, usage.converted, strict=True):
        line.amount = money(amount)
    for line in adjustments:
        line.amount = money(line.amount)
    extras = [
        Line(
            kind=LineKind.ONE_OFF,
            description=extra.description,
            amount=money(extra.quantity * extra.unit_price),
            quantity=extra.quantity,
            unit_price=extra.unit_price,
        )
        for extra in inputs.extras
    ]
    revision.lines = usage.lines + extras + adjustments + _late_lines(late, rates.all, currency, ctx.locale)
    revision.adjustments = sum((line.amount for line in adjustments), Decimal(0))
    revision.subtotal = sum((line.amount for line in revision.lines), Decimal(0))
    revision.lines += [Line(kind=LineKind.TAX, description=rule.name, amount=money(delta)) for rule, delta in taxes]
    for line in _charges(ctx, revision.subtotal):
        line.amount = money(line.amount)
        revision.lines.append(line)
    revision.charges = sum((line.amount for line in revision.charge_lines), Decimal(0))
    revision.total = revision.subtotal + revision.charges
    revision.issue_date = ctx.invoice.issue_date or organization_today(ctx.organization.timezone)
    revision.due_date = revision.issue_date + timedelta(days=ctx.account.payment_terms_days)
    if ctx.account.auto_invoice == AutoInvoice.SEND:
        revision.auto_send_after_hours = ctx.account.auto_send_after_hours
    thresholds = Thresholds(ctx.organization.check_change_percent, ctx.organization.check_change_amount)
    revision.checks = generation_findings(
        inputs.history,
        thresholds,
        currency,
        revision.total,
        [(line.provider, line.service, line.amount) for line in usage.lines],
    )
    return revision
