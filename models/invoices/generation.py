"""Computing an invoice from the account's costs of the month.

The order, written down once:
1. Usage lines: the month's cost records grouped by provider and service (quantity and unit
   shown when every row of the group has the same unit); groups summing to zero are left out.
   Records of the account's own integrations count only when the account includes them
   (`include_account_integrations`); the MSP's delegated ones always do.
2. Billing rules, in the order `models.billing_rules` documents (credits, discounts, markups;
   then tax rules), computed exactly in the cost currency.
3. Conversion to the invoice currency at the month's exchange rate (stamped on the revision).
4. Rounding: every printed line is rounded half-up to the currency's minor unit
   (`models.currencies.round_money`); the subtotal, charges and total are sums of printed
   lines, so the total always equals the sum of what the invoice shows.
5. The billing profile's taxes and additional charges, in their order, on the subtotal after
   rules: a percentage of it, or a fixed amount in the invoice currency.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from tortoise import connections
from tortoise.expressions import Q

from models.billing_periods import BillingPeriod
from models.billing_profiles import BillingProfile, BillingProfileCharge, ChargeKind
from models.billing_rules import BillingRule, RuleCalculation, RuleKind
from models.costs import CostOrigin
from models.currencies import round_money
from models.einvoicing.document import einvoice_section
from models.errors import GenerationFailed, MissingBillingProfile
from models.exchange_rates import ExchangeRate
from models.invoices.queries import organization_today
from models.invoices.tables import Invoice, LineKind
from models.managed_accounts import ManagedAccount
from models.organizations import Organization

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


@dataclass
class Draft:
    """A computed invoice, ready to render and store as a revision."""

    currency: str
    cost_currency: str
    rate: Decimal
    lines: list[Line] = field(default_factory=list)
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
    def rule_lines(self) -> list[Line]:
        return [line for line in self.lines if line.kind == LineKind.RULE]

    @property
    def charge_lines(self) -> list[Line]:
        return [line for line in self.lines if line.kind in (LineKind.TAX, LineKind.CHARGE)]


@dataclass
class Context:
    invoice: Invoice
    organization: Organization
    account: ManagedAccount
    profile: BillingProfile
    charges: list[BillingProfileCharge]
    period: BillingPeriod


# What generation reads besides the costs, fetched with the invoice in one query.
_RELATED = ("organization", "billing_period", "managed_account__billing_profile")


async def load_invoice(invoice_id: Any) -> Invoice | None:
    """The invoice with its organization, period, account and billing profile (one query)."""
    return await Invoice.filter(id=invoice_id).select_related(*_RELATED).first()


async def load_context(invoice_id: Any, invoice: Invoice | None = None) -> Context:
    """The computation's inputs; pass `invoice` as `load_invoice` returned it to save a query."""
    if invoice is None:
        invoice = await Invoice.filter(id=invoice_id).select_related(*_RELATED).get()
    account = invoice.managed_account
    if account.billing_profile_id is None:
        raise MissingBillingProfile(
            f"{account.name} has no billing profile: choose one on the managed account, then generate.",
            field="ids",
        )
    profile = account.billing_profile
    assert profile is not None, "selected with the account, whose reference is set"
    return Context(
        invoice=invoice,
        organization=invoice.organization,
        account=account,
        profile=profile,
        charges=await BillingProfileCharge.filter(billing_profile_id=account.billing_profile_id).order_by("position"),
        period=invoice.billing_period,
    )


async def _usage_groups(account: ManagedAccount, month: date) -> list[dict[str, Any]]:
    return (await connections.get("default").execute_query(
        """SELECT provider_name, COALESCE(service_name, '') AS service_name,
                  COALESCE(service_category, '') AS service_category, billing_currency,
                  SUM(billed_cost) AS amount,
                  COUNT(DISTINCT COALESCE(consumed_unit, '')) AS units, MIN(consumed_unit) AS unit,
                  SUM(consumed_quantity) AS quantity
           FROM cost_records WHERE managed_account_id = $1 AND billing_month = $2
             AND (origin = $3 OR $4::boolean)
           GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3""",
        [str(account.id), month, CostOrigin.MSP_DELEGATED.value, account.include_account_integrations],
    ))[1]


async def _rules(ctx: Context) -> list[BillingRule]:
    month = ctx.period.start_date
    rules = await BillingRule.filter(
        Q(managed_account_id=None) | Q(managed_account_id=ctx.account.id),
        Q(starts_on=None) | Q(starts_on__lte=month),
        Q(ends_on=None) | Q(ends_on__gte=month),
        organization_id=ctx.organization.id, is_active=True,
    ).order_by("created_at", "id")
    return rules


async def _rate(ctx: Context, cost_currency: str) -> Decimal:
    currency = ctx.account.currency
    if cost_currency == currency:
        return Decimal(1)
    rate = await ExchangeRate.get_or_none(
        organization_id=ctx.organization.id, month=ctx.period.start_date,
        base_currency=cost_currency, currency=currency,
    )
    if rate is None:
        raise GenerationFailed(
            f"No exchange rate from {cost_currency} to {currency} for {ctx.period.label}: "
            "set it (setExchangeRate), then regenerate."
        )
    return rate.rate


def _matches(rule: BillingRule, line: Line) -> bool:
    return all(
        wanted is None or wanted == actual
        for wanted, actual in (
            (rule.provider_name, line.provider), (rule.service_name, line.service),
            (rule.service_category, line.category),
        )
    )


def _rule_delta(rule: BillingRule, base: Decimal) -> Decimal:
    if rule.calculation == RuleCalculation.PERCENT:
        amount = base * rule.value / HUNDRED
    elif rule.kind in (RuleKind.CREDIT, RuleKind.DISCOUNT):
        amount = min(rule.value, max(base, Decimal(0)))
    else:
        amount = rule.value
    return amount if rule.kind in (RuleKind.MARKUP, RuleKind.TAX) else -amount


async def compute(ctx: Context) -> Draft:
    groups = [g for g in await _usage_groups(ctx.account, ctx.period.start_date) if g["amount"] != 0]
    cost_currencies = sorted({g["billing_currency"] for g in groups})
    if len(cost_currencies) > 1:
        raise GenerationFailed(
            f"The month's costs are billed in several currencies ({', '.join(cost_currencies)}); "
            "invoices are computed from one."
        )
    cost_currency = cost_currencies[0] if cost_currencies else ctx.account.currency
    currency = ctx.account.currency
    rate = await _rate(ctx, cost_currency)
    draft = Draft(currency=currency, cost_currency=cost_currency, rate=rate)

    def money(amount: Decimal) -> Decimal:
        return round_money(amount, currency)

    usage = []
    for g in groups:
        agree = g["units"] == 1 and g["unit"] is not None and g["quantity"]
        usage.append(Line(
            kind=LineKind.USAGE, provider=g["provider_name"], service=g["service_name"],
            category=g["service_category"], amount=g["amount"],
            description=f"{g['provider_name']} {g['service_name']}".strip() or "Cloud usage",
            quantity=g["quantity"] if agree else None, unit=g["unit"] if agree else None,
            unit_price=(g["amount"] * rate / g["quantity"]) if agree else None,
        ))
    running = [line.amount for line in usage]
    adjustments, taxes = [], []
    rules = await _rules(ctx)
    ordered = sorted((r for r in rules if r.kind != RuleKind.TAX), key=lambda r: RULE_ORDER[r.kind])
    for rule in ordered + [r for r in rules if r.kind == RuleKind.TAX]:
        matched = [i for i, line in enumerate(usage) if _matches(rule, line)]
        if not matched:
            continue
        base = sum((running[i] for i in matched), Decimal(0))
        delta = _rule_delta(rule, base)
        if delta == 0:
            continue
        if rule.kind == RuleKind.TAX:
            taxes.append((rule, delta))
            continue
        if base:
            for i in matched:
                running[i] += delta * running[i] / base
        adjustments.append(Line(kind=LineKind.RULE, description=f"{rule.kind.value.title()}: {rule.name}", amount=delta))

    for line in usage + adjustments:
        line.amount = money(line.amount * rate)
    draft.lines = usage + adjustments
    draft.adjustments = sum((line.amount for line in adjustments), Decimal(0))
    draft.subtotal = sum((line.amount for line in draft.lines), Decimal(0))
    for rule, delta in taxes:
        draft.lines.append(Line(kind=LineKind.TAX, description=rule.name, amount=money(delta * rate)))
    for charge in ctx.charges:
        amount = draft.subtotal * charge.value / HUNDRED if charge.kind == ChargeKind.PERCENT else charge.value
        label = f"{charge.name} ({charge.value.normalize():f}%)" if charge.kind == ChargeKind.PERCENT else charge.name
        draft.lines.append(Line(kind=LineKind.TAX if charge.is_tax else LineKind.CHARGE, description=label, amount=money(amount)))
    draft.charges = sum((line.amount for line in draft.charge_lines), Decimal(0))
    draft.total = draft.subtotal + draft.charges
    draft.issue_date = organization_today(ctx.organization.timezone)
    draft.due_date = draft.issue_date + timedelta(days=ctx.account.payment_terms_days)
    return draft


def _address_lines(row: Any) -> list[str]:
    city_line = " ".join(part for part in (row.city, row.region, row.postal_code) if part)
    parts = (row.address_line1, row.address_line2, row.address_line3, row.address_line4, city_line, row.country)
    return [part for part in parts if part]


def _plain(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.normalize():f}"


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
                "amount": str(line.amount),
            }
            for line in draft.usage
        ],
        "adjustments": [{"description": rule.description, "amount": str(rule.amount)} for rule in draft.rule_lines],
        "subtotal": str(draft.subtotal),
        "charges": [
            {"description": charge.description, "amount": str(charge.amount), "is_tax": charge.kind == LineKind.TAX}
            for charge in draft.charge_lines
        ],
        "total": str(draft.total),
        "exchange": None if draft.rate == 1 else {
            "from": draft.cost_currency, "to": draft.currency, "rate": _plain(draft.rate),
        },
        "notes": None,
        "einvoice": einvoice_section(ctx, draft),
    }


_LINE_PLACES = Decimal("1e-16")  # invoice_line_items' NUMERIC(38, 16)


def _line_decimal(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(_LINE_PLACES)


async def store_revision(
    invoice_id: Any, draft: Draft, view: dict[str, Any], pdf: dict[str, Any], actor: Any
) -> Invoice | None:
    """Freeze the draft as the invoice's next revision and move it to AWAITING_APPROVAL.
    Returns None when the invoice is no longer GENERATING (a stale job: nothing is stored)."""
    from tortoise.transactions import in_transaction

    from models.invoices.lifecycle import transition
    from models.invoices.tables import InvoiceRevision, InvoiceStatus

    async with in_transaction() as conn:
        # The lock and the revision count in one round trip.
        (locked,) = await conn.execute_query_dict(
            "SELECT status, (SELECT count(*) FROM invoice_revisions WHERE invoice_id = $1) AS revisions"
            " FROM invoices WHERE id = $1 FOR UPDATE",
            [str(invoice_id)],
        )
        if locked["status"] != InvoiceStatus.GENERATING.value:
            return None
        revision = await InvoiceRevision.create(
            invoice_id=invoice_id, revision=locked["revisions"] + 1,
            template_version=view["template_version"], currency=draft.currency,
            cost_currency=draft.cost_currency, exchange_rate=draft.rate, subtotal=draft.subtotal,
            adjustments=draft.adjustments, charges=draft.charges, total=draft.total,
            issue_date=draft.issue_date, due_date=draft.due_date, snapshot=view,
            pdf_path=pdf["path"], pdf_sha256=pdf["sha256"], pdf_size=pdf["size"], using_db=conn,
        )
        # One statement for all the lines: building an ORM object per line cost more than
        # the rest of the transaction. Quantities and prices are rounded as the ORM rounds them.
        lines = draft.lines
        await conn.execute_query(
            "INSERT INTO invoice_line_items (revision_id, position, kind, description, provider_name,"
            " service_name, service_category, quantity, unit, unit_price, amount)"
            " SELECT $1::uuid, * FROM unnest($2::smallint[], $3::text[], $4::text[], $5::text[], $6::text[],"
            " $7::text[], $8::numeric[], $9::text[], $10::numeric[], $11::numeric[])",
            [
                str(revision.id), list(range(1, len(lines) + 1)), [line.kind.value for line in lines],
                [line.description[:1024] for line in lines], [line.provider for line in lines],
                [line.service for line in lines], [line.category for line in lines],
                [_line_decimal(line.quantity) for line in lines], [line.unit for line in lines],
                [_line_decimal(line.unit_price) for line in lines], [line.amount for line in lines],
            ],
        )
        return await transition(
            invoice_id, "GENERATED", actor, connection=conn,
            changes={
                "current_revision_id": revision.id, "currency": draft.currency,
                "subtotal": draft.subtotal, "adjustments": draft.adjustments, "charges": draft.charges,
                "total": draft.total, "issue_date": draft.issue_date, "due_date": draft.due_date,
                "error_message": None,
            },
            detail={"revision": revision.revision, "total": str(draft.total), "pdfSha256": pdf["sha256"]},
        )
