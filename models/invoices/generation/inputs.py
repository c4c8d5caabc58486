"""Generation's first step: read the invoices, their contexts and what computing each needs
(the month's costs, late costs, billing rules, one-off items, rates and history), a few
statements for a whole batch."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from tortoise import connections
from tortoise.functions import Count

from models.billing_profiles import COST_COLUMNS, BillingProfileCharge
from models.billing_rules import BillingRule
from models.costs import CostOrigin
from models.errors import DomainError, MissingBillingProfile, NotFound
from models.exchange_rates import ExchangeRate
from models.invoices.checks import histories
from models.invoices.generation.types import Context, Inputs
from models.invoices.tables import Invoice, InvoiceExtraLine, InvoiceKind, InvoiceRevision
from models.organizations import LateCostBilling

# What generation reads besides the costs, fetched with the invoice in one query.
_RELATED = ("organization", "billing_period", "managed_account__billing_profile")


async def load_invoices(ids: list[Any]) -> list[Invoice]:
    """The invoices with their organization, period, account and billing profile (one query)."""
    return await Invoice.filter(id__in=ids).select_related(*_RELATED)


async def revision_counts(ids: list[Any]) -> dict[Any, int]:
    """How many revisions each invoice has (none: left out)."""
    rows = await InvoiceRevision.filter(invoice_id__in=ids).group_by("invoice_id").annotate(n=Count("id")).values_list("invoice_id", "n")
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
            found.append(
                MissingBillingProfile(
                    f"{account.name} has no billing profile: choose one on the managed account, then generate.",
                    field="ids",
                )
            )
            continue
        profile = account.billing_profile
        assert profile is not None, "selected with the account, whose reference is set"
        found.append(
            Context(
                invoice=invoice,
                organization=invoice.organization,
                account=account,
                profile=profile,
                charges=charges[account.billing_profile_id],
                period=invoice.billing_period,
            )
        )
    return found


# The cost column of each billing basis, chosen per invoice inside one statement (fixed names, never input).
_COST = "CASE w.basis " + " ".join(f"WHEN '{basis.value}' THEN {column}" for basis, column in COST_COLUMNS.items()) + " END"


async def _usage(conn: Any, contexts: list[Context]) -> dict[int, list[dict[str, Any]]]:
    """The month's costs of each context (by its index), grouped into lines to be."""
    # A supplementary invoice bills no usage (its month's invoice did).
    usage_of = [i for i, ctx in enumerate(contexts) if ctx.invoice.kind != InvoiceKind.SUPPLEMENTARY]
    of = [contexts[i] for i in usage_of]
    rows = (
        await conn.execute_query(
            f"""SELECT w.n, g.* FROM unnest($1::int[], $2::uuid[], $3::date[], $4::text[], $5::boolean[], $6::text[])
               AS w(n, account, month, provider, include, basis)
           CROSS JOIN LATERAL (
               SELECT provider_name, COALESCE(service_name, '') AS service_name,
                      COALESCE(service_category, '') AS service_category, billing_currency,
                      SUM(COALESCE({_COST}, billed_cost)) AS amount,
                      COUNT(DISTINCT consumed_unit) AS units, MIN(NULLIF(consumed_unit, '')) AS unit,
                      SUM(consumed_quantity) AS quantity
               FROM cost_totals WHERE managed_account_id = w.account AND billing_month = w.month
                 AND (origin = $7 OR w.include) AND (w.provider = '' OR provider_name = w.provider)
               GROUP BY 1, 2, 3, 4
           ) AS g ORDER BY 1, 2, 3, 4, 5""",
            [
                usage_of,
                [str(ctx.account.id) for ctx in of],
                [ctx.period.start_date for ctx in of],
                [ctx.invoice.provider_name for ctx in of],
                [ctx.account.include_account_integrations for ctx in of],
                [ctx.basis.value for ctx in of],
                CostOrigin.MSP_DELEGATED.value,
            ],
        )
    )[1]
    return _by_index(rows)


async def _late(conn: Any, contexts: list[Context]) -> dict[int, list[dict[str, Any]]]:
    """The late costs each context bills (by its index): not billed by another invoice, of its
    own month, and of earlier months when it is a month's invoice and the organization bills them
    next. When the organization bills them on supplementary invoices, a month whose late costs
    lower what was invoiced is credited on the next month's invoice instead (a supplementary
    invoice never totals below zero)."""
    regular = [ctx.invoice.kind == InvoiceKind.REGULAR for ctx in contexts]
    next_invoice = [ctx.organization.late_cost_billing == LateCostBilling.NEXT_INVOICE for ctx in contexts]
    rows = (
        await conn.execute_query(
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
            [
                list(range(len(contexts))),
                [str(ctx.account.id) for ctx in contexts],
                [str(ctx.invoice.id) for ctx in contexts],
                [ctx.period.start_date for ctx in contexts],
                [r and x for r, x in zip(regular, next_invoice, strict=True)],
                [ctx.invoice.provider_name for ctx in contexts],
                [r and not x for r, x in zip(regular, next_invoice, strict=True)],
            ],
        )
    )[1]
    return _by_index(rows)


def _by_index(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        found[row["n"]].append(row)
    return found


async def _rates(contexts: list[Context], needed: list[set[tuple[date, str]]]) -> dict[tuple[Any, str, date, str], Decimal]:
    """The organizations' rates of those `needed` into each invoice's currency, by
    (organization, invoice currency, month, cost currency)."""
    wanted = {
        (ctx.organization.id, ctx.account.currency, *key)
        for ctx, keys in zip(contexts, needed, strict=True)
        for key in keys
        if key[1] != ctx.account.currency
    }
    if not wanted:
        return {}
    return {
        (row.organization_id, row.currency, row.month, row.base_currency): row.rate
        for row in await ExchangeRate.filter(
            organization_id__in={w[0] for w in wanted},
            currency__in={w[1] for w in wanted},
            month__in={w[2] for w in wanted},
            base_currency__in={w[3] for w in wanted},
        )
    }


def _rules_of(ctx: Context, rules: list[BillingRule]) -> list[BillingRule]:
    """The organization's rules that apply to the context's account and month."""
    month = ctx.period.start_date
    return [
        rule
        for rule in rules
        if rule.organization_id == ctx.organization.id
        and rule.managed_account_id in (None, ctx.account.id)
        and (rule.starts_on is None or rule.starts_on <= month)
        and (rule.ends_on is None or rule.ends_on >= month)
    ]


async def fetch_inputs(contexts: list[Context]) -> None:
    """Read what computing each of `contexts` needs, a few statements for all of them, into
    each one's `inputs`."""
    conn = connections.get("default")
    usage_by, late_by = await _usage(conn, contexts), await _late(conn, contexts)
    organizations = {ctx.organization.id for ctx in contexts}
    rules = await BillingRule.filter(organization_id__in=organizations, is_active=True).order_by("created_at", "id")
    extras: dict[Any, list[InvoiceExtraLine]] = defaultdict(list)
    for extra in await InvoiceExtraLine.filter(invoice_id__in=[ctx.invoice.id for ctx in contexts]).order_by("position"):
        extras[extra.invoice_id].append(extra)
    # The rates each needs: its month's for every cost currency, each late month's for its currency.
    needed = [
        {(ctx.period.start_date, g["billing_currency"]) for g in usage_by[i]} | {(r["billing_month"], r["currency"]) for r in late_by[i]}
        for i, ctx in enumerate(contexts)
    ]
    rates = await _rates(contexts, needed)
    histories_found = await histories([(ctx.invoice, ctx.period.start_date) for ctx in contexts])
    for i, ctx in enumerate(contexts):
        key_of = (ctx.organization.id, ctx.account.currency)
        ctx.inputs = Inputs(
            usage=usage_by[i],
            late=late_by[i],
            rules=_rules_of(ctx, rules),
            extras=extras[ctx.invoice.id],
            rates={key: rates[(*key_of, *key)] for key in needed[i] if (*key_of, *key) in rates},
            history=histories_found[i],
        )
