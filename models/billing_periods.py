"""Billing periods: calendar months only, per organization."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.base import enum_check
from models.errors import ValidationFailed
from models.invoices.lifecycle import Actor
from models.invoices.tables import InvoiceEvent, InvoiceStatus
from models.organizations import Organization
from models.outbox import Entity, Transition, record


class PeriodState(str, Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class BillingPeriod(Model):
    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="billing_periods", on_delete=fields.CASCADE
    )
    start_date = fields.DateField()
    # Exclusive: the first day of the next month.
    end_date = fields.DateField()
    state = fields.CharEnumField(PeriodState, max_length=8, default=PeriodState.OPEN)
    closed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "billing_periods"
        constraints = (
            UniqueConstraint(fields=("organization_id", "start_date"), name="billing_periods_month_unique"),
            CheckConstraint(
                check="EXTRACT(DAY FROM start_date) = 1 AND end_date = (start_date + INTERVAL '1 month')::date",
                name="billing_periods_whole_month",
            ),
            enum_check("billing_periods", "state", PeriodState),
            CheckConstraint(
                check="(state = 'CLOSED') = (closed_at IS NOT NULL)", name="billing_periods_closed_at"
            ),
        )

    @property
    def label(self) -> str:
        return self.start_date.strftime("%Y-%m")


def visible_periods(principal):
    """Billing periods are the MSP's bookkeeping: its users see their organization's. A
    customer sees none; it knows a month only as the period of its approved invoices."""
    if not principal.is_msp_user:
        return BillingPeriod.filter(id__in=[])  # matches nothing (WHERE 1=0); Tortoise has no none()
    return BillingPeriod.filter(organization_id=principal.organization_id)


@dataclass(frozen=True)
class PeriodQuery:
    """The conditions a list of billing periods can be narrowed by (None: any)."""

    state: str | None = None
    month_from: date | None = None
    month_to: date | None = None


def filter_periods(query, where: PeriodQuery):
    if where.state is not None:
        query = query.filter(state=where.state)
    if where.month_from is not None:
        query = query.filter(start_date__gte=where.month_from)
    if where.month_to is not None:
        query = query.filter(start_date__lte=where.month_to)
    return query


def month_bounds(month: date) -> tuple[date, date]:
    """First day of the month and first day of the next (the period's exclusive end)."""
    start = month.replace(day=1)
    return start, (start + timedelta(days=32)).replace(day=1)


async def close_period(organization_id: Any, month: date, actor: Actor, *, must_be_past: bool = False) -> list[Any]:
    """Close the month and give every managed account its READY_TO_INVOICE invoice.
    Closing again changes nothing but adds invoices for accounts created since. Returns the
    ids of the invoices this call created. With `must_be_past`, a month that has not ended yet in
    the organization's time zone is refused."""
    start, end = month_bounds(month)
    if must_be_past:
        org = await Organization.get(id=organization_id)
        if end > datetime.now(ZoneInfo(org.timezone)).date():
            raise ValidationFailed(f"{start:%Y-%m} has not ended yet.", field="month")
    async with in_transaction() as conn:
        await conn.execute_query(
            "INSERT INTO billing_periods (id, organization_id, start_date, end_date, state, closed_at, created_at)"
            " VALUES (gen_random_uuid(), $1, $2, $3, 'CLOSED', now(), now())"
            " ON CONFLICT (organization_id, start_date) DO UPDATE SET state = 'CLOSED',"
            " closed_at = COALESCE(billing_periods.closed_at, now())",
            [str(organization_id), start, end],
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
            " LEFT JOIN LATERAL (SELECT DISTINCT c.provider_name FROM cost_records c"
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
                InvoiceEvent(invoice_id=r["id"], actor_id=actor.user_id, actor_label=actor.label,
                             kind="CREATED", to_status=r.get("status") or InvoiceStatus.READY_TO_INVOICE.value,
                             detail={"period": r.get("period") or start.strftime("%Y-%m"),
                                     **({"supplementary": True} if r.get("period") else {})})
                for r in rows
            ],
            using_db=conn,
        )
    created = [r["id"] for r in rows]
    record(Entity.PERIOD, Transition.CLOSED, created)
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
    ingestion delay says (late cloud data: 3 days closes on the 4th)."""
    due = []
    for org in await Organization.all():
        today = now.astimezone(ZoneInfo(org.timezone)).date()
        if today.day < 1 + org.data_ingestion_delay_days:
            continue
        previous = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        if not await BillingPeriod.filter(
            organization_id=org.id, start_date=previous, state=PeriodState.CLOSED
        ).exists():
            due.append((org.id, previous))
    return due
