"""GraphQL types of invoices: `types` (the invoice, its lines, revisions and timeline) and
`lists` (the list's page, order and filter; bulk results; the live status event)."""

from schema.invoices.lists import (
    BulkInvoicePayload,
    InvoiceActionResult,
    InvoiceActionResults,
    InvoiceChanged,
    InvoiceChangePayload,
    InvoiceConnection,
    InvoiceFilter,
    InvoiceOrder,
    InvoiceOrderField,
    InvoiceReissued,
    InvoiceResendQueued,
    InvoiceStatusEvent,
    ReissueInvoicePayload,
    ResendInvoicePayload,
    account_invoices,
    invoice_query,
    listed_invoices,
    period_invoices,
)
from schema.invoices.types import (
    DeliveryStatus,
    Invoice,
    InvoiceCheckCode,
    InvoiceDatePreset,
    InvoiceEvent,
    InvoiceItem,
    InvoiceLineItem,
    InvoiceRevision,
    InvoiceStatus,
    LineKind,
    PaymentStatus,
    prefetch,
)

__all__ = [
    "BulkInvoicePayload", "DeliveryStatus", "Invoice", "InvoiceActionResult", "InvoiceActionResults",
    "InvoiceChangePayload", "InvoiceChanged", "InvoiceCheckCode", "InvoiceConnection", "InvoiceDatePreset", "InvoiceEvent",
    "InvoiceFilter", "InvoiceItem", "InvoiceLineItem", "InvoiceOrder", "InvoiceOrderField", "InvoiceReissued",
    "InvoiceResendQueued", "InvoiceRevision", "InvoiceStatus", "InvoiceStatusEvent", "LineKind", "PaymentStatus",
    "ReissueInvoicePayload", "ResendInvoicePayload", "account_invoices", "invoice_query", "listed_invoices", "period_invoices", "prefetch",
]
