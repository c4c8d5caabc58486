"""Billing periods: calendar months only, per organization, and their closing."""

from models.billing_periods.closing import close_period, periods_to_close
from models.billing_periods.tables import (
    BillingPeriod,
    PeriodQuery,
    PeriodState,
    filter_periods,
    visible_periods,
)

__all__ = [
    "BillingPeriod",
    "PeriodQuery",
    "PeriodState",
    "close_period",
    "filter_periods",
    "periods_to_close",
    "visible_periods",
]
