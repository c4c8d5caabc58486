"""Monthly exchange rates, from the currency costs are billed in to the invoice currency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.audit import AuditEntity, record_change, snapshot
from models.base import TimestampMixin
from models.currencies import check_currency
from models.errors import ValidationFailed
from models.text import storable

if TYPE_CHECKING:
    from models.organizations import Organization


class ExchangeRate(TimestampMixin, Model):
    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="exchange_rates", on_delete=fields.CASCADE
    )
    month = fields.DateField()
    base_currency = fields.CharField(max_length=3, default="USD")
    currency = fields.CharField(max_length=3)
    # 1 unit of base_currency = `rate` units of currency.
    rate = fields.DecimalField(max_digits=24, decimal_places=10)

    organization_id: UUID

    class Meta:
        table = "exchange_rates"
        constraints = (
            UniqueConstraint(
                fields=("organization_id", "month", "base_currency", "currency"),
                name="exchange_rates_unique",
            ),
            CheckConstraint(check="EXTRACT(DAY FROM month) = 1", name="exchange_rates_month"),
            CheckConstraint(check="rate > 0", name="exchange_rates_rate_positive"),
            CheckConstraint(
                check="base_currency ~ '^[A-Z]{3}$' AND currency ~ '^[A-Z]{3}$' AND base_currency <> currency",
                name="exchange_rates_currencies",
            ),
        )


def visible_rates(principal):
    """Exchange rates are the MSP's business: its users see them, customers do not."""
    if not principal.is_msp_user:
        return ExchangeRate.filter(id__in=[])
    return ExchangeRate.filter(organization_id=principal.organization_id)


@dataclass(frozen=True)
class RateQuery:
    """The conditions a list of exchange rates can be narrowed by (None or empty: any)."""

    currencies: list[str] | None = None
    month_from: date | None = None
    month_to: date | None = None


def filter_rates(query, where: RateQuery):
    if where.currencies:
        query = query.filter(currency__in=storable(ExchangeRate, "currency", [c.strip().upper() for c in where.currencies]))
    if where.month_from:
        query = query.filter(month__gte=where.month_from)
    if where.month_to:
        query = query.filter(month__lte=where.month_to)
    return query


async def set_rate(
    principal, month: date, currency: str, rate: Decimal, base_currency: str = "USD"
) -> ExchangeRate:
    """Set (or replace) the month's rate from `base_currency` to `currency`. Invoices already
    generated keep the rate stamped on their revision until they are regenerated."""
    currency = check_currency(currency)
    base_currency = check_currency(base_currency, field="baseCurrency")
    if currency == base_currency:
        raise ValidationFailed("A rate converts between two different currencies.", field="currency")
    if month.day != 1:
        raise ValidationFailed("A rate applies to a whole month.", field="month")
    if not rate.is_finite() or rate <= 0 or rate != rate.quantize(Decimal("1e-10")) or rate >= Decimal("1e14"):
        raise ValidationFailed(
            "A rate is a positive number with at most 10 decimals.", field="rate"
        )
    key = dict(
        organization_id=principal.organization_id, month=month,
        base_currency=base_currency, currency=currency,
    )
    async with in_transaction() as connection:
        # Locked, so that the entry's "before" is the rate this change replaces.
        was = await ExchangeRate.filter(**key).select_for_update().using_db(connection).first()
        if was is None:
            try:
                async with in_transaction() as savepoint:
                    row = await ExchangeRate.create(**key, rate=rate, using_db=savepoint)
            except IntegrityError:  # created concurrently: ours is the later word
                was = await ExchangeRate.filter(**key).select_for_update().using_db(connection).get()
        if was is not None:
            await ExchangeRate.filter(id=was.id).using_db(connection).update(rate=rate, updated_at=datetime.now(UTC))
            row = await ExchangeRate.filter(id=was.id).using_db(connection).get()
        await record_change(connection, AuditEntity.EXCHANGE_RATE, row.id, row.organization_id, snapshot(was), snapshot(row))
    return row
