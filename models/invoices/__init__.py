"""Invoices: tables, the scoped list, the lifecycle, numbering and generation."""

from models.invoices.queries import (
    CUSTOMER_VISIBLE,
    DatePreset,
    DisplayStatus,
    InvoiceQuery,
    amount_due,
    display_status,
    filter_invoices,
    is_visible,
    late_costs_of,
    organization_today,
    preset_range,
    printed_lines,
    visible_invoice_by_number,
    visible_invoices,
)
from models.invoices.tables import (
    DeliveryStatus,
    Invoice,
    InvoiceEvent,
    InvoiceExtraLine,
    InvoiceKind,
    InvoiceLineItem,
    InvoiceNumberCounter,
    InvoiceRevision,
    InvoiceStatus,
    LineKind,
    PaymentStatus,
)

__all__ = [
    "CUSTOMER_VISIBLE", "DatePreset", "DeliveryStatus", "DisplayStatus", "Invoice", "InvoiceEvent",
    "InvoiceExtraLine", "InvoiceKind", "InvoiceLineItem", "InvoiceNumberCounter", "InvoiceQuery",
    "InvoiceRevision", "InvoiceStatus", "LineKind", "PaymentStatus", "amount_due", "display_status",
    "filter_invoices", "is_visible", "late_costs_of", "organization_today", "preset_range",
    "printed_lines", "visible_invoice_by_number", "visible_invoices",
]
