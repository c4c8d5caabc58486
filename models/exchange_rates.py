"""Monthly exchange rates, from the currency costs are billed in to the invoice currency."""

from __future__ import annotations

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model

from models.base import TimestampMixin


class ExchangeRate(TimestampMixin, Model):
    id = fields.UUIDField(primary_key=True)
    organization = fields.ForeignKeyField(
        "models.Organization", related_name="exchange_rates", on_delete=fields.CASCADE
    )
    month = fields.DateField()
    base_currency = fields.CharField(max_length=3, default="USD")
    currency = fields.CharField(max_length=3)
    # 1 unit of base_currency = `rate` units of currency.
    rate = fields.DecimalField(max_digits=24, decimal_places=10)

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
