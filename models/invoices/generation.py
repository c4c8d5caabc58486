"""Computing an invoice from the account's costs of the month.

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

import base64
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tortoise import connections
from tortoise.functions import Count

from models.billing_periods import BillingPeriod
from models.billing_profiles import COST_COLUMNS, BillingBasis, BillingProfile, BillingProfileCharge, ChargeKind
from models.billing_rules import BillingRule, RuleCalculation, RuleKind
from models.costs import CostOrigin
from models.currencies import round_money
from models.einvoicing.document import einvoice_section
from models.errors import DomainError, GenerationFailed, MissingBillingProfile, NotFound
from models.exchange_rates import ExchangeRate
from models.invoices.checks import Finding, History, Thresholds, generation_findings, histories
from models.invoices.queries import organization_today
from models.invoices.tables import Invoice, InvoiceExtraLine, InvoiceKind, InvoiceRevision, LineKind
from models.managed_accounts import AutoInvoice, ManagedAccount
from models.organizations import LateCostBilling, Organization

HUNDRED = Decimal(100)
RULE_ORDER = {RuleKind.CREDIT: 0, RuleKind.DISCOUNT: 1, RuleKind.MARKUP: 2}


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


@dataclass
class Draft:
    """A computed invoice, ready to render and store as a revision."""

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

    @property
    def taxes(self) -> Decimal:
        return sum((line.amount for line in self.lines if line.kind == LineKind.TAX), Decimal(0))
    subtotal: Decimal = Decimal(0)
    adjustments: Decimal = Decimal(0)
    charges: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    issue_date: date | None = None
    due_date: date | None = None

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


# What generation reads besides the costs, fetched with the invoice in one query.
_RELATED = ("organization", "billing_period", "managed_account__billing_profile")


async def load_invoices(ids: list[Any]) -> list[Invoice]:
    """The invoices with their organization, period, account and billing profile (one query)."""
    return await Invoice.filter(id__in=ids).select_related(*_RELATED)


async def revision_counts(ids: list[Any]) -> dict[Any, int]:
    """How many revisions each invoice has (none: left out)."""
    rows = await InvoiceRevision.filter(invoice_id__in=ids).group_by("invoice_id").annotate(n=Count("id")).values_list(
        "invoice_id", "n"
    )
    return dict(rows)


async def load_context(invoice_id: Any) -> Context:
    """One invoice's computation inputs (`load_invoices`, then `load_contexts`)."""
    invoices = await load_invoices([invoice_id])
    if not invoices:
        raise NotFound("No such invoice.", field="id")
    found = (await load_contexts(invoices))[0]
    if isinstance(found, DomainError):
        raise found
    return found


async def load_contexts(invoices: list[Invoice]) -> list[Context | DomainError]:
    """The context of each invoice (loaded as `load_invoices` does), or why it cannot be
    generated; the billing profiles' charges read at once."""
    profiles = {i.managed_account.billing_profile_id for i in invoices} - {None}
    charges: dict[Any, list[BillingProfileCharge]] = defaultdict(list)
    for charge in await BillingProfileCharge.filter(billing_profile_id__in=profiles).order_by("position"):
        charges[charge.billing_profile_id].append(charge)
    found: list[Context | DomainError] = []
    for invoice in invoices:
        account = invoice.managed_account
        if account.billing_profile_id is None:
            found.append(MissingBillingProfile(
                f"{account.name} has no billing profile: choose one on the managed account, then generate.",
                field="ids",
            ))
            continue
        profile = account.billing_profile
        assert profile is not None, "selected with the account, whose reference is set"
        found.append(Context(
            invoice=invoice, organization=invoice.organization, account=account, profile=profile,
            charges=charges[account.billing_profile_id], period=invoice.billing_period,
        ))
    return found


def _basis(ctx: Context) -> BillingBasis:
    return ctx.account.billing_basis or ctx.profile.billing_basis


# The cost column of each billing basis, chosen per invoice inside one statement (fixed names, never input).
_COST = "CASE w.basis " + " ".join(
    f"WHEN '{basis.value}' THEN {column}" for basis, column in COST_COLUMNS.items()
) + " END"


async def fetch_inputs(contexts: list[Context]) -> None:
    """Read what computing each of `contexts` needs, a few statements for all of them, into
    each one's `inputs`."""
    conn = connections.get("default")
    n = list(range(len(contexts)))
    months = [ctx.period.start_date for ctx in contexts]
    accounts = [str(ctx.account.id) for ctx in contexts]
    providers = [ctx.invoice.provider_name for ctx in contexts]
    # A supplementary invoice bills no usage (its month's invoice did).
    usage_of = [i for i, ctx in enumerate(contexts) if ctx.invoice.kind != InvoiceKind.SUPPLEMENTARY]
    usage = (await conn.execute_query(
        f"""SELECT w.n, g.* FROM unnest($1::int[], $2::uuid[], $3::date[], $4::text[], $5::boolean[], $6::text[])
               AS w(n, account, month, provider, include, basis)
           CROSS JOIN LATERAL (
               SELECT provider_name, COALESCE(service_name, '') AS service_name,
                      COALESCE(service_category, '') AS service_category, billing_currency,
                      SUM(COALESCE({_COST}, billed_cost)) AS amount,
                      COUNT(DISTINCT COALESCE(consumed_unit, '')) AS units, MIN(consumed_unit) AS unit,
                      SUM(consumed_quantity) AS quantity
               FROM cost_records WHERE managed_account_id = w.account AND billing_month = w.month
                 AND (origin = $7 OR w.include) AND (w.provider = '' OR provider_name = w.provider)
               GROUP BY 1, 2, 3, 4
           ) AS g ORDER BY 1, 2, 3, 4, 5""",
        [usage_of, [accounts[i] for i in usage_of], [months[i] for i in usage_of], [providers[i] for i in usage_of],
         [contexts[i].account.include_account_integrations for i in usage_of],
         [_basis(contexts[i]).value for i in usage_of], CostOrigin.MSP_DELEGATED.value],
    ))[1]
    # The late costs each bills: not billed by another invoice, of its own month, and of
    # earlier months when it is a month's invoice and the organization bills them next. When
    # the organization bills them on supplementary invoices, a month whose late costs lower
    # what was invoiced is credited on the next month's invoice instead (a supplementary
    # invoice never totals below zero).
    regular = [ctx.invoice.kind == InvoiceKind.REGULAR for ctx in contexts]
    next_invoice = [ctx.organization.late_cost_billing == LateCostBilling.NEXT_INVOICE for ctx in contexts]
    late = (await conn.execute_query(
        """SELECT w.n, l.* FROM unnest($1::int[], $2::uuid[], $3::uuid[], $4::date[], $5::boolean[], $6::text[],
                                     $7::boolean[]) AS w(n, account, invoice, month, next_invoice, provider, credit)
           CROSS JOIN LATERAL (
               SELECT id, billing_month, currency, billable, created_at FROM late_costs l
               WHERE managed_account_id = w.account AND (billed_invoice_id IS NULL OR billed_invoice_id = w.invoice)
                 AND (billing_month = w.month OR (billing_month < w.month AND (w.next_invoice OR (w.credit AND (
                     SELECT sum(c.billable) FROM late_costs c WHERE c.managed_account_id = w.account
                       AND c.billing_month = l.billing_month AND (c.billed_invoice_id IS NULL OR c.billed_invoice_id = w.invoice)
                 ) < 0))))
                 AND (w.provider = '' OR provider_name = w.provider)
           ) AS l ORDER BY w.n, l.billing_month, l.currency, l.created_at, l.id""",
        [n, accounts, [str(ctx.invoice.id) for ctx in contexts], months,
         [r and x for r, x in zip(regular, next_invoice, strict=True)], providers,
         [r and not x for r, x in zip(regular, next_invoice, strict=True)]],
    ))[1]
    usage_by: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in usage:
        usage_by[row["n"]].append(row)
    late_by: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in late:
        late_by[row["n"]].append(row)
    organizations = {ctx.organization.id for ctx in contexts}
    rules = await BillingRule.filter(organization_id__in=organizations, is_active=True).order_by("created_at", "id")
    extras: dict[Any, list[InvoiceExtraLine]] = defaultdict(list)
    for extra in await InvoiceExtraLine.filter(invoice_id__in=[ctx.invoice.id for ctx in contexts]).order_by("position"):
        extras[extra.invoice_id].append(extra)
    # The rates each needs: its month's for every cost currency, each late month's for its currency.
    needed = [
        {(months[i], g["billing_currency"]) for g in usage_by[i]} | {(r["billing_month"], r["currency"]) for r in late_by[i]}
        for i in n
    ]
    wanted = {(ctx.organization.id, ctx.account.currency, *key) for ctx, keys in zip(contexts, needed, strict=True)
              for key in keys if key[1] != ctx.account.currency}
    rates = {}
    if wanted:
        rates = {
            (row.organization_id, row.currency, row.month, row.base_currency): row.rate
            for row in await ExchangeRate.filter(
                organization_id__in={w[0] for w in wanted}, currency__in={w[1] for w in wanted},
                month__in={w[2] for w in wanted}, base_currency__in={w[3] for w in wanted},
            )
        }
    histories_found = await histories([(ctx.invoice, months[i]) for i, ctx in enumerate(contexts)])
    for i, ctx in enumerate(contexts):
        month, org, currency = months[i], ctx.organization.id, ctx.account.currency
        ctx.inputs = Inputs(
            usage=usage_by[i], late=late_by[i],
            rules=[
                rule for rule in rules if rule.organization_id == org
                and rule.managed_account_id in (None, ctx.account.id)
                and (rule.starts_on is None or rule.starts_on <= month) and (rule.ends_on is None or rule.ends_on >= month)
            ],
            extras=extras[ctx.invoice.id],
            rates={key: rates[(org, currency, *key)] for key in needed[i] if (org, currency, *key) in rates},
            history=histories_found[i],
        )


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
            (rule.provider_name, line.provider), (rule.service_name, line.service),
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


def _description(group: dict[str, Any], several: bool) -> str:
    what = f"{group['provider_name']} {group['service_name']}".strip() or "Cloud usage"
    details = [part for part in (group["service_category"], several and group["billing_currency"]) if part]
    return f"{what} ({', '.join(details)})" if details else what


async def compute(ctx: Context) -> Draft:
    """The invoice computed from its inputs (read first when `fetch_inputs` has not)."""
    if ctx.inputs is None:
        await fetch_inputs([ctx])
    return computed(ctx)


def computed(ctx: Context) -> Draft:
    """The invoice computed from the inputs `fetch_inputs` read (no database access)."""
    inputs = ctx.inputs
    assert inputs is not None, "fetch_inputs read them"
    supplementary = ctx.invoice.kind == InvoiceKind.SUPPLEMENTARY
    month = ctx.period.start_date
    basis = _basis(ctx)
    groups = [] if supplementary else [g for g in inputs.usage if g["amount"] != 0]
    late = [row for row in inputs.late if row["billable"] != 0]
    currency = ctx.account.currency
    cost_currencies = sorted({g["billing_currency"] for g in groups})
    rates = _rates(ctx, {(month, c) for c in cost_currencies} | {(r["billing_month"], r["currency"]) for r in late})
    month_rates = {c: rates[(month, c)] for c in cost_currencies}
    # The revision's single cost currency and rate: the costs' own when there is one.
    cost_currency = cost_currencies[0] if len(cost_currencies) == 1 else currency
    draft = Draft(
        currency=currency, cost_currency=cost_currency, rate=month_rates.get(cost_currency, Decimal(1)),
        rates={c: r for (_, c), r in sorted(rates.items()) if c != currency}, billing_basis=basis,
    )
    several = len(cost_currencies) > 1

    def money(amount: Decimal) -> Decimal:
        return round_money(amount, currency)

    usage, converted, line_rates = [], [], []
    for g in groups:
        rate = month_rates[g["billing_currency"]]
        agree = g["units"] == 1 and g["unit"] is not None and g["quantity"]
        foreign = g["billing_currency"] != currency
        usage.append(Line(
            kind=LineKind.USAGE, provider=g["provider_name"], service=g["service_name"],
            category=g["service_category"], amount=g["amount"], description=_description(g, several),
            quantity=g["quantity"] if agree else None, unit=g["unit"] if agree else None,
            unit_price=(g["amount"] * rate / g["quantity"]) if agree else None,
            cost_currency=g["billing_currency"] if foreign else "", cost_amount=g["amount"] if foreign else None,
        ))
        converted.append(g["amount"] * rate)
        line_rates.append(rate)
    running = list(converted)
    adjustments, taxes = [], []
    rules = inputs.rules
    ordered = sorted((r for r in rules if r.kind != RuleKind.TAX), key=lambda r: RULE_ORDER[r.kind])
    for rule in ordered + [r for r in rules if r.kind == RuleKind.TAX]:
        matched = [i for i, line in enumerate(usage) if _matches(rule, line)]
        if not matched:
            continue
        base = sum((running[i] for i in matched), Decimal(0))
        # A fixed value is in the matched lines' cost currency; in the invoice currency
        # when they were billed in several.
        matched_rates = {line_rates[i] for i in matched}
        delta = _rule_delta(rule, base, matched_rates.pop() if len(matched_rates) == 1 else Decimal(1))
        if delta == 0:
            continue
        if rule.kind == RuleKind.TAX:
            taxes.append((rule, delta))
            continue
        if base:
            for i in matched:
                running[i] += delta * running[i] / base
        adjustments.append(Line(kind=LineKind.RULE, description=f"{rule.kind.value.title()}: {rule.name}", amount=delta))

    for line, amount in zip(usage, converted, strict=True):
        line.amount = money(amount)
    for line in adjustments:
        line.amount = money(line.amount)
    late_lines = _late_lines(late, rates, currency)
    draft.late_cost_ids = [row["id"] for row in late]
    extras = [
        Line(kind=LineKind.ONE_OFF, description=extra.description, amount=money(extra.quantity * extra.unit_price),
             quantity=extra.quantity, unit_price=extra.unit_price)
        for extra in inputs.extras
    ]
    draft.lines = usage + extras + adjustments + late_lines
    draft.adjustments = sum((line.amount for line in adjustments), Decimal(0))
    draft.subtotal = sum((line.amount for line in draft.lines), Decimal(0))
    for rule, delta in taxes:
        draft.lines.append(Line(kind=LineKind.TAX, description=rule.name, amount=money(delta)))
    for charge in ctx.charges:
        if supplementary and charge.kind != ChargeKind.PERCENT:
            continue
        amount = draft.subtotal * charge.value / HUNDRED if charge.kind == ChargeKind.PERCENT else charge.value
        label = f"{charge.name} ({charge.value.normalize():f}%)" if charge.kind == ChargeKind.PERCENT else charge.name
        draft.lines.append(Line(kind=LineKind.TAX if charge.is_tax else LineKind.CHARGE, description=label, amount=money(amount)))
    draft.charges = sum((line.amount for line in draft.charge_lines), Decimal(0))
    draft.total = draft.subtotal + draft.charges
    draft.issue_date = ctx.invoice.issue_date or organization_today(ctx.organization.timezone)
    draft.due_date = draft.issue_date + timedelta(days=ctx.account.payment_terms_days)
    if ctx.account.auto_invoice == AutoInvoice.SEND:
        draft.auto_send_after_hours = ctx.account.auto_send_after_hours
    thresholds = Thresholds(ctx.organization.check_change_percent, ctx.organization.check_change_amount)
    draft.checks = generation_findings(
        inputs.history, thresholds, currency, draft.total, [(line.provider, line.service, line.amount) for line in usage]
    )
    return draft


def _late_lines(rows: list[dict[str, Any]], rates: dict[tuple[date, str], Decimal], currency: str) -> list[Line]:
    """One line per month and cost currency of late costs, converted at that month's rate."""
    sums: dict[tuple[date, str], Decimal] = {}
    for row in rows:
        key = (row["billing_month"], row["currency"])
        sums[key] = sums.get(key, Decimal(0)) + row["billable"]
    lines = []
    for (month, cost), amount in sorted(sums.items()):
        several = sum(1 for m, _ in sums if m == month) > 1
        label = f"Costs for {month:%B %Y} received after invoicing" + (f" ({cost})" if several else "")
        foreign = cost != currency
        lines.append(Line(
            kind=LineKind.LATE_COST, description=label, amount=round_money(amount * rates[(month, cost)], currency),
            cost_currency=cost if foreign else "", cost_amount=amount if foreign else None,
        ))
    return lines


def _address_lines(row: Any) -> list[str]:
    city_line = " ".join(part for part in (row.city, row.region, row.postal_code) if part)
    parts = (row.address_line1, row.address_line2, row.address_line3, row.address_line4, city_line, row.country)
    return [part for part in parts if part]


def _plain(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.normalize():f}"


def _conversion(line: Line) -> dict[str, str]:
    """What a converted line was in its own currency (printed beside its amount)."""
    if line.cost_amount is None:
        return {}
    return {"cost_currency": line.cost_currency, "cost_amount": _plain(line.cost_amount) or "0"}


def build_view(ctx: Context, draft: Draft, number: str, template_version: str) -> dict[str, Any]:
    """Everything the invoice template prints, as plain JSON-ready values (kept on the
    revision, so a revision can always be shown as it was)."""
    profile, account, start = ctx.profile, ctx.account, ctx.period.start_date
    issue_date, due_date = draft.issue_date, draft.due_date
    assert issue_date is not None and due_date is not None, "a computed draft has its dates"
    logo = None
    if profile.logo:
        logo = f"data:{profile.logo_content_type};base64,{base64.b64encode(profile.logo).decode()}"
    return {
        "template_version": template_version,
        "number": number,
        "issue_date": issue_date.isoformat(),
        "due_date": due_date.isoformat(),
        "payment_terms_days": account.payment_terms_days,
        "period": {
            "label": start.strftime("%B %Y"),
            "start": start.isoformat(),
            "end": (ctx.period.end_date - timedelta(days=1)).isoformat(),
        },
        "currency": draft.currency,
        "msp": {
            "company_name": profile.company_name or ctx.organization.name,
            "address_lines": _address_lines(profile),
            "business_fields": profile.business_fields,
            "banking_fields": profile.banking_fields,
            "logo_data_url": logo,
        },
        "customer": {
            "name": account.name,
            "official_company_name": account.official_company_name or account.name,
            "address_lines": _address_lines(account),
            "business_fields": account.business_fields,
            "po_number": account.po_number,
            "billing_emails": account.billing_emails,
        },
        "lines": [
            {
                "description": line.description, "provider": line.provider, "service": line.service,
                "quantity": _plain(line.quantity), "unit": line.unit,
                # Cloud unit prices are often fractions of a cent: keep them (to 10 places).
                "unit_price": _plain(line.unit_price.quantize(Decimal("1e-10"))) if line.unit_price is not None else None,
                "amount": str(line.amount), **_conversion(line),
            }
            for line in draft.printed_items
        ],
        "adjustments": [{"description": rule.description, "amount": str(rule.amount)} for rule in draft.rule_lines],
        "late_costs": [
            {"description": line.description, "amount": str(line.amount), **_conversion(line)}
            for line in draft.late_lines
        ],
        "subtotal": str(draft.subtotal),
        "charges": [
            {"description": charge.description, "amount": str(charge.amount), "is_tax": charge.kind == LineKind.TAX}
            for charge in draft.charge_lines
        ],
        "total": str(draft.total),
        "exchange": None if draft.rate == 1 else {
            "from": draft.cost_currency, "to": draft.currency, "rate": _plain(draft.rate),
        },
        # Every rate applied (several when the costs came in several currencies or late
        # costs of other months are billed).
        "exchanges": [
            {"from": cost, "to": draft.currency, "rate": _plain(rate)} for cost, rate in sorted(draft.rates.items())
        ],
        "kind": ctx.invoice.kind.value,
        "provider": ctx.invoice.provider_name or None,
        "memo": ctx.invoice.memo or None,
        "notes": profile.invoice_notes or None,
        "einvoice": einvoice_section(ctx, draft),
    }


_LINE_PLACES = Decimal("1e-16")  # invoice_line_items' NUMERIC(38, 16)


def _line_decimal(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(_LINE_PLACES)


@dataclass
class Generated:
    """A computed invoice, printed, to store as its next revision."""

    invoice_id: Any
    draft: Draft
    view: dict[str, Any]
    # The stored PDF: its path, SHA-256 and size.
    pdf: dict[str, Any]


async def store_revision(
    invoice_id: Any, draft: Draft, view: dict[str, Any], pdf: dict[str, Any], actor: Any
) -> Invoice | None:
    """Freeze the draft as the invoice's next revision and move it to AWAITING_APPROVAL.
    Returns None when the invoice is no longer GENERATING (a stale job: nothing is stored)."""
    stored = (await store_revisions([Generated(invoice_id, draft, view, pdf)], actor))[0]
    if isinstance(stored, DomainError):
        raise stored
    return stored


async def store_revisions(generated: list[Generated], actor: Any) -> list[Invoice | None | DomainError]:
    """`store_revision` for each, in one transaction; when the late costs of one were claimed
    by another invoice meanwhile, each is stored alone, so that only that one fails."""
    try:
        return list(await _store(generated, actor))
    except GenerationFailed as exc:
        if len(generated) == 1:
            return [exc]
    found: list[Invoice | None | DomainError] = []
    for one in generated:
        try:
            found.extend(await _store([one], actor))
        except GenerationFailed as exc:
            found.append(exc)
    return found


async def _store(generated: list[Generated], actor: Any) -> list[Invoice | None]:
    from tortoise.transactions import in_transaction

    from models.invoices.lifecycle import transition_each
    from models.invoices.tables import InvoiceRevision, InvoiceStatus

    ids = [str(one.invoice_id) for one in generated]
    async with in_transaction() as conn:
        # The locks (in id order, as every bulk lock is taken) and the revision counts in one round trip.
        locked = {row["id"]: row for row in await conn.execute_query_dict(
            "SELECT id::text AS id, status, auto_send_at,"
            " (SELECT count(*) FROM invoice_revisions r WHERE r.invoice_id = i.id) AS revisions,"
            " EXISTS (SELECT 1 FROM invoice_events e WHERE e.invoice_id = i.id AND kind = 'AUTO_SEND_CANCELLED') AS cancelled"
            " FROM invoices i WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
            [ids],
        )}
        current = [one for one, invoice_id in zip(generated, ids, strict=True)
                   if invoice_id in locked and locked[invoice_id]["status"] == InvoiceStatus.GENERATING.value]
        revisions = [
            InvoiceRevision(
                invoice_id=one.invoice_id, revision=locked[str(one.invoice_id)]["revisions"] + 1,
                template_version=one.view["template_version"], currency=one.draft.currency,
                cost_currency=one.draft.cost_currency, exchange_rate=one.draft.rate,
                exchange_rates={cost: _plain(rate) for cost, rate in one.draft.rates.items()}, subtotal=one.draft.subtotal,
                checks=[finding.stored() for finding in one.draft.checks], billing_basis=one.draft.billing_basis.value,
                adjustments=one.draft.adjustments, charges=one.draft.charges, total=one.draft.total,
                issue_date=one.draft.issue_date, due_date=one.draft.due_date, snapshot=one.view,
                pdf_path=one.pdf["path"], pdf_sha256=one.pdf["sha256"], pdf_size=one.pdf["size"],
            )
            for one in current
        ]
        if revisions:
            await InvoiceRevision.bulk_create(revisions, using_db=conn)
        # One statement for all the lines: building an ORM object per line cost more than
        # the rest of the transaction. Quantities and prices are rounded as the ORM rounds them.
        lines = [(revision.id, position, line) for one, revision in zip(current, revisions, strict=True)
                 for position, line in enumerate(one.draft.lines, start=1)]
        if lines:
            await conn.execute_query(
                "INSERT INTO invoice_line_items (revision_id, position, kind, description, provider_name,"
                " service_name, service_category, quantity, unit, unit_price, amount)"
                " SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::text[], $4::text[], $5::text[], $6::text[],"
                " $7::text[], $8::numeric[], $9::text[], $10::numeric[], $11::numeric[])",
                [
                    [str(revision_id) for revision_id, _, _ in lines], [position for _, position, _ in lines],
                    [line.kind.value for _, _, line in lines], [line.description[:1024] for _, _, line in lines],
                    [line.provider for _, _, line in lines], [line.service for _, _, line in lines],
                    [line.category for _, _, line in lines], [_line_decimal(line.quantity) for _, _, line in lines],
                    [line.unit for _, _, line in lines], [_line_decimal(line.unit_price) for _, _, line in lines],
                    [line.amount for _, _, line in lines],
                ],
            )
        await _claim_late_costs(conn, current)
        moved = await transition_each(
            [one.invoice_id for one in current], "GENERATED", actor, connection=conn,
            changes={"error_message": None},
            each=[
                (
                    {
                        "current_revision_id": revision.id, "currency": one.draft.currency,
                        "subtotal": one.draft.subtotal, "adjustments": one.draft.adjustments,
                        "charges": one.draft.charges, "total": one.draft.total, "tax_total": one.draft.taxes,
                        "issue_date": one.draft.issue_date, "due_date": one.draft.due_date,
                        "auto_send_at": _auto_send_at(one.draft, locked[str(one.invoice_id)]),
                    },
                    {"revision": revision.revision, "total": str(one.draft.total), "pdfSha256": one.pdf["sha256"]},
                )
                for one, revision in zip(current, revisions, strict=True)
            ],
        )
        stored = {}
        for one, found in zip(current, moved, strict=True):
            if isinstance(found, DomainError):  # locked GENERATING above: cannot happen
                raise found
            stored[str(one.invoice_id)] = found
    return [stored.get(invoice_id) for invoice_id in ids]


async def _claim_late_costs(conn: Any, generated: list[Generated]) -> None:
    """Mark the late costs each revision bills as billed by its invoice, and release those an
    earlier revision billed and this one no longer does. Another invoice claiming one first
    (a race between two generations of the account) fails this one, to be generated again."""
    if not generated:
        return
    claims = [(str(one.invoice_id), str(late_id)) for one in generated for late_id in one.draft.late_cost_ids]
    await conn.execute_query(
        "UPDATE late_costs SET billed_invoice_id = NULL WHERE billed_invoice_id = ANY($1::uuid[])"
        " AND id <> ALL($2::uuid[])",
        [[str(one.invoice_id) for one in generated], [late_id for _, late_id in claims]],
    )
    if not claims:
        return
    claimed, _ = await conn.execute_query(
        "UPDATE late_costs SET billed_invoice_id = v.invoice FROM unnest($1::uuid[], $2::uuid[]) AS v(invoice, id)"
        " WHERE late_costs.id = v.id AND (late_costs.billed_invoice_id IS NULL OR late_costs.billed_invoice_id = v.invoice)",
        [[invoice_id for invoice_id, _ in claims], [late_id for _, late_id in claims]],
    )
    if claimed != len(claims):
        raise GenerationFailed("Late costs of this account were billed by another invoice meanwhile: regenerate.")


def _auto_send_at(draft: Draft, locked: dict[str, Any]) -> datetime | None:
    """When the automatic approval and send is due: the time queued already, or the grace
    period from now; none when the account does not auto-send or someone cancelled it."""
    if draft.auto_send_after_hours is None or locked["cancelled"]:
        return None
    return locked["auto_send_at"] or datetime.now(UTC) + timedelta(hours=draft.auto_send_after_hours)
