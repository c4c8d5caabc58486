"""The billing period table and its queries: calendar months only, per organization."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Any
from uuid import UUID

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model

from models.base import enum_check
from models.organizations import Organization


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
    # Closed before every cost source's data for the month was complete: when, by whom (a
    # user, or the scheduler at the latest close day), and what was not complete then
    # (`models.completeness.MonthSource.stored`), which the invoices' checks warn of.
    forced_at = fields.DatetimeField(null=True)
    # A user (the auth module's table, named here so that the periods need not import it).
    forced_by: fields.ForeignKeyNullableRelation[Model] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    forced_by_label = fields.CharField(max_length=64, default="", db_default="")
    incomplete_at_close: fields.JSONField[list[dict[str, Any]]] = fields.JSONField(default=list, db_default=[])
    created_at = fields.DatetimeField(auto_now_add=True)

    organization_id: UUID
    forced_by_id: UUID | None

    class Meta:
        table = "billing_periods"
        constraints = (
            UniqueConstraint(fields=("organization_id", "start_date"), name="billing_periods_month_unique"),
            CheckConstraint(
                check="EXTRACT(DAY FROM start_date) = 1 AND end_date = (start_date + INTERVAL '1 month')::date",
                name="billing_periods_whole_month",
            ),
            enum_check("billing_periods", "state", PeriodState),
            CheckConstraint(check="(state = 'CLOSED') = (closed_at IS NOT NULL)", name="billing_periods_closed_at"),
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
