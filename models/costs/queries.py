"""Who sees which cost records, and the sums the cost list shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from tortoise.expressions import Q
from tortoise.functions import Count, Sum

from models.costs.records import CostImport, CostOrigin, CostRecord


def visible_costs(principal):
    """Raw costs are the MSP's business: its users see their organization's records, a
    customer none (what it is billed reaches it on its approved invoices)."""
    if not principal.is_msp_user:
        return CostRecord.filter(id__in=[])  # matches nothing (WHERE 1=0)
    return CostRecord.filter(organization_id=principal.organization_id)


@dataclass(frozen=True)
class CostQuery:
    """The conditions a list of cost records can be narrowed by (None: any). `account_ids`
    empty matches nothing (an id that named no account)."""

    account_ids: list[UUID] | None = None
    period: date | None = None
    providers: list[str] | None = None
    service_categories: list[str] | None = None
    unassigned: bool | None = None
    # Only the rows the account's invoice counts (True), or only those it leaves out (False).
    invoiced: bool | None = None


def is_invoiced(origin: CostOrigin | str, account: Any) -> bool:
    """Whether the invoice of the row's account counts a row of `origin`: a managed account
    claims it, and it came from the MSP's delegated integration, or from the account's own
    while the account includes its integrations (as `models.invoices.generation` counts)."""
    if account is None:
        return False
    return CostOrigin(origin) == CostOrigin.MSP_DELEGATED or account.include_account_integrations


# `is_invoiced` as a condition on cost records.
INVOICED = Q(managed_account_id__isnull=False) & (
    Q(origin=CostOrigin.MSP_DELEGATED) | Q(managed_account__include_account_integrations=True)
)


def filter_costs(query, where: CostQuery):
    if where.account_ids is not None:
        query = query.filter(managed_account_id__in=where.account_ids)
    if where.period is not None:
        query = query.filter(billing_month=where.period)
    if where.providers is not None:
        query = query.filter(provider_name__in=where.providers)
    if where.service_categories is not None:
        query = query.filter(service_category__in=where.service_categories)
    if where.unassigned is not None:
        query = query.filter(managed_account_id__isnull=where.unassigned)
    if where.invoiced is not None:
        query = query.filter(INVOICED if where.invoiced else ~INVOICED)
    return query


def visible_imports(principal):
    """Cost imports are the MSP's business, as its costs are: its users see their
    organization's, a customer none."""
    if not principal.is_msp_user:
        return CostImport.filter(id__in=[])
    return CostImport.filter(organization_id=principal.organization_id)


async def billed_totals(query) -> list[tuple[str, Decimal, int]]:
    """(currency, BilledCost sum, rows) of a cost record query, one per currency, in
    currency order: one grouped query, since amounts of two currencies never add up."""
    rows = (
        await query.annotate(total=Sum("billed_cost"), rows=Count("id"))
        .group_by("billing_currency")
        .order_by("billing_currency")
        .values("billing_currency", "total", "rows")
    )
    return [(row["billing_currency"], row["total"], row["rows"]) for row in rows]



def line_costs(principal, invoice: Any, kind: Any, provider: str, service: str, category: str):
    """The cost records a usage line of `invoice` groups (its month is the caller's to add):
    the account's, of the line's provider, service and category (empty ones read as absent)."""
    if invoice is None or getattr(kind, "value", kind) != "USAGE":
        return CostRecord.filter(id__in=[])
    query = visible_costs(principal).filter(managed_account_id=invoice.managed_account_id, provider_name=provider)
    if service:
        query = query.filter(service_name=service)
    else:
        query = query.filter(Q(service_name="") | Q(service_name__isnull=True))
    if category:
        query = query.filter(service_category=category)
    else:
        query = query.filter(Q(service_category="") | Q(service_category__isnull=True))
    return query
