"""Closing a month: the period closed, and each managed account given its invoice."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from models import completeness
from models.actors import Actor
from models.billing_periods.tables import BillingPeriod, PeriodState
from models.errors import ErrorCode, ValidationFailed
from models.invoices.tables import InvoiceEvent, InvoiceStatus
from models.organizations import Organization, latest_close_day
from models.outbox import Entity, Transition, record


def month_bounds(month: date) -> tuple[date, date]:
    """First day of the month and first day of the next (the period's exclusive end)."""
    start = month.replace(day=1)
    return start, (start + timedelta(days=32)).replace(day=1)


async def close_period(
    organization_id: Any, month: date, actor: Actor, *, must_be_past: bool = False, force: bool = False,
) -> list[Any]:
    """Close the month and give every managed account its READY_TO_INVOICE invoice.
    Closing again changes nothing but adds invoices for accounts created since. Returns the
    ids of the invoices this call created. With `must_be_past`, a month that has not ended yet in
    the organization's time zone is refused.

    While a cost source's data for the month is not complete (`models.completeness`), closing
    is refused (DATA_INCOMPLETE) unless `force`: then the period keeps who closed it early, when,
    and what was not complete, which the invoices' checks warn of (INCOMPLETE_DATA)."""
    start, end = month_bounds(month)
    org = await Organization.get(id=organization_id)
    if must_be_past and end > datetime.now(ZoneInfo(org.timezone)).date():
        raise ValidationFailed(f"{start:%Y-%m} has not ended yet.", field="month")
    closed = await BillingPeriod.filter(organization_id=organization_id, start_date=start, state=PeriodState.CLOSED).exists()
    missing = [] if closed else completeness.incomplete(
        await completeness.month_sources(organization_id, start, org.data_settle_hours)
    )
    if missing and not force:
        states = ", ".join(f"{s.source_name}{f' ({s.provider})' if s.provider else ''} {s.state.value}" for s in missing)
        raise ValidationFailed(
            f"The cost data of {start:%Y-%m} is not complete yet ({states}): close it with force to invoice it as it is.",
            field="force", code=ErrorCode.DATA_INCOMPLETE,
        )
    async with in_transaction() as conn:
        await conn.execute_query(
            "INSERT INTO billing_periods (id, organization_id, start_date, end_date, state, closed_at, created_at)"
            " VALUES (gen_random_uuid(), $1, $2, $3, 'CLOSED', now(), now())"
            " ON CONFLICT (organization_id, start_date) DO UPDATE SET state = 'CLOSED',"
            " closed_at = COALESCE(billing_periods.closed_at, now())",
            [str(organization_id), start, end],
        )
        if missing:
            await conn.execute_query(
                "UPDATE billing_periods SET forced_at = $3, forced_by_id = $4, forced_by_label = $5,"
                " incomplete_at_close = $6::jsonb WHERE organization_id = $1 AND start_date = $2",
                [str(organization_id), start, datetime.now(UTC), str(actor.user_id) if actor.user_id else None,
                 actor.label[:64], json.dumps([source.stored() for source in missing])],
            )
        # Accounts not invoiced get none. An account invoiced per provider gets one invoice
        # for each provider with costs in the month (one for every provider while there are
        # none). An account that had its month's invoice, even voided, gets none: a voided
        # invoice is replaced on purpose. An auto-invoiced account's invoice (with a billing
        # profile to generate it under) starts GENERATING at once.
        rows = await conn.execute_query_dict(
            _NEW_INVOICES + " SELECT gen_random_uuid(), a.organization_id, a.id, p.id, a.currency,"
            " CASE WHEN a.auto_invoice <> 'OFF' AND a.billing_profile_id IS NOT NULL"
            " THEN 'GENERATING' ELSE 'READY_TO_INVOICE' END,"
            " 'UNPAID', 'NOT_SENT', 0, 0, 0, 0, 0, 0, now(), now(), 'REGULAR', COALESCE(pr.provider_name, '')"
            " FROM managed_accounts a JOIN billing_periods p"
            " ON p.organization_id = a.organization_id AND p.start_date = $2"
            " LEFT JOIN LATERAL (SELECT DISTINCT c.provider_name FROM cost_totals c"
            "   WHERE a.invoice_per_provider AND c.managed_account_id = a.id AND c.billing_month = $2) pr ON true"
            " WHERE a.organization_id = $1 AND a.is_invoiced AND NOT EXISTS (SELECT 1 FROM invoices v"
            "   WHERE v.managed_account_id = a.id AND v.billing_period_id = p.id AND v.kind = 'REGULAR'"
            "   AND v.provider_name = COALESCE(pr.provider_name, ''))"
            " ON CONFLICT (managed_account_id, billing_period_id, provider_name)"
            " WHERE kind = 'REGULAR' AND status <> 'VOIDED' DO NOTHING RETURNING id, status",
            [str(organization_id), start],
        )
        rows += await _supplementary_invoices(conn, organization_id, start)
        await InvoiceEvent.bulk_create(
            [
                InvoiceEvent(
                    invoice_id=r["id"],
                    actor_id=actor.user_id,
                    actor_label=actor.label,
                    kind="CREATED",
                    to_status=r.get("status") or InvoiceStatus.READY_TO_INVOICE.value,
                    detail={"period": r.get("period") or start.strftime("%Y-%m"), **({"supplementary": True} if r.get("period") else {})},
                )
                for r in rows
            ],
            using_db=conn,
        )
    created = [r["id"] for r in rows]
    record(Entity.PERIOD, Transition.CLOSED, created, organization_id=organization_id, month=start, first=not closed)
    return created


_NEW_INVOICES = (
    "INSERT INTO invoices (id, organization_id, managed_account_id, billing_period_id, currency,"
    " status, payment_status, delivery_status, subtotal, adjustments, charges, total,"
    " amount_paid, amount_refunded, created_at, updated_at, kind, provider_name)"
)


async def _supplementary_invoices(conn: Any, organization_id: Any, until: date) -> list[dict[str, Any]]:
    """When the organization bills late costs on supplementary invoices: one for each account,
    month (up to `until`) and provider split with late costs left to bill that add up to more
    than zero (less is credited on the next month's invoice), unless one is already on its
    way (not approved yet, it bills them when generated)."""
    return await conn.execute_query_dict(
        _NEW_INVOICES + " SELECT gen_random_uuid(), a.organization_id, a.id, p.id, a.currency,"
        " 'READY_TO_INVOICE', 'UNPAID', 'NOT_SENT', 0, 0, 0, 0, 0, 0, now(), now(), 'SUPPLEMENTARY', l.provider"
        " FROM (SELECT DISTINCT lc.managed_account_id, lc.billing_month, i.provider_name AS provider"
        "   FROM late_costs lc JOIN invoices i ON i.id = lc.invoice_id"
        "   WHERE lc.organization_id = $1 AND lc.billing_month <= $2 AND lc.billed_invoice_id IS NULL"
        "   GROUP BY 1, 2, 3 HAVING sum(lc.billable) > 0) l"
        " JOIN managed_accounts a ON a.id = l.managed_account_id"
        " JOIN organizations o ON o.id = a.organization_id AND o.late_cost_billing = 'SUPPLEMENTARY_INVOICE'"
        " JOIN billing_periods p ON p.organization_id = a.organization_id AND p.start_date = l.billing_month"
        " WHERE NOT EXISTS (SELECT 1 FROM invoices s WHERE s.managed_account_id = a.id"
        "   AND s.billing_period_id = p.id AND s.kind = 'SUPPLEMENTARY' AND s.provider_name = l.provider"
        "   AND s.status NOT IN ('APPROVED', 'VOIDED'))"
        " RETURNING id, to_char((SELECT start_date FROM billing_periods WHERE id = billing_period_id), 'YYYY-MM') AS period",
        [str(organization_id), until],
    )


async def periods_to_close(now: datetime) -> list[tuple[Any, date]]:
    """(organization, month) pairs whose previous month should be closed by `now`: from the
    1st of a month in the organization's time zone, or as many days later as its data
    ingestion delay says (late cloud data: 3 days closes on the 4th). With cost sources, a
    month waits until each source's data of it is complete, or until the latest close day,
    when it closes whatever its data."""
    due = []
    for org in await Organization.all():
        today = now.astimezone(ZoneInfo(org.timezone)).date()
        if today.day < 1 + org.data_ingestion_delay_days:
            continue
        previous = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        if await BillingPeriod.filter(organization_id=org.id, start_date=previous, state=PeriodState.CLOSED).exists():
            continue
        if today.day < latest_close_day(org) and completeness.incomplete(
            await completeness.month_sources(org.id, previous, org.data_settle_hours)
        ):
            continue
        due.append((org.id, previous))
    return due
