"""Payments and refunds: the tables, recording them, and the overdue rule."""

from models.payments.ledger import (
    PaymentRecorded,
    PaymentRefunded,
    payment_status,
    record_payment,
    refund_payment,
    visible_payments,
    visible_refunds,
)
from models.payments.overdue import mark_overdue
from models.payments.tables import Payment, PaymentMethod, Refund

__all__ = [
    "Payment", "PaymentMethod", "PaymentRecorded", "PaymentRefunded", "Refund", "mark_overdue",
    "payment_status", "record_payment", "refund_payment", "visible_payments", "visible_refunds",
]
