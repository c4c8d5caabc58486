"""GraphQL types of invoices: `types` (the invoice and the loading of its relations), `parts`
(its lines, items, checks, revisions and timeline), `enums`, `lists` (the list's page, order
and filter; bulk results; the live status event) and `inputs` (edits of one-off items)."""

from schema.invoices.enums import (
    DeliveryStatus,
    InvoiceCheckCode,
    InvoiceDatePreset,
    InvoiceStatus,
    PaymentStatus,
)
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
    invoice_query,
    listed_invoices,
    period_invoices,
)
from schema.invoices.parts import InvoiceEvent, InvoiceItem, InvoiceLineItem, InvoiceRevision
from schema.invoices.types import Invoice, prefetch

__all__ = [
    "BulkInvoicePayload", "DeliveryStatus", "Invoice", "InvoiceActionResult", "InvoiceActionResults",
    "InvoiceChangePayload", "InvoiceChanged", "InvoiceCheckCode", "InvoiceConnection", "InvoiceDatePreset", "InvoiceEvent",
    "InvoiceFilter", "InvoiceItem", "InvoiceLineItem", "InvoiceOrder", "InvoiceOrderField", "InvoiceReissued",
    "InvoiceResendQueued", "InvoiceRevision", "InvoiceStatus", "InvoiceStatusEvent", "PaymentStatus",
    "ReissueInvoicePayload", "ResendInvoicePayload", "invoice_query", "listed_invoices", "period_invoices", "prefetch",
]
