"""Who sees which cost records, and the sums the cost list shows."""

from __future__ import annotations

from decimal import Decimal

from tortoise.functions import Count, Sum

from models.costs.records import CostRecord


def visible_costs(principal):
    """Raw costs are the MSP's business: its users see their organization's records, a
    customer none (what it is billed reaches it on its approved invoices)."""
    if not principal.is_msp_user:
        return CostRecord.filter(id__in=[])  # matches nothing (WHERE 1=0)
    return CostRecord.filter(organization_id=principal.organization_id)


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
