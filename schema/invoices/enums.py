"""The invoice's enums: the domain's own, marked as GraphQL enums."""

from __future__ import annotations

import strawberry

from models import invoices as domain
from models.invoices import checks

# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
InvoiceStatus = domain.InvoiceStatus
strawberry.enum(
    InvoiceStatus,
    description="Where an invoice is in its life: READY_TO_INVOICE after the month closes, "
    "GENERATING while its PDF is made, AWAITING_APPROVAL for review, ERROR when generation "
    "failed, APPROVED once sent (frozen), VOIDED when cancelled.",
)
PaymentStatus = domain.PaymentStatus
strawberry.enum(PaymentStatus, description="What has been paid (or refunded) against the invoice.")
DeliveryStatus = domain.DeliveryStatus
strawberry.enum(DeliveryStatus, description="Whether the approved invoice's e-mail went out.")
InvoiceKind = domain.InvoiceKind
strawberry.enum(
    InvoiceKind,
    description="REGULAR (the month's invoice) or SUPPLEMENTARY (bills what was delivered for "
    "the month after its invoice was approved, when the organization bills late costs so).",
)
InvoiceDisplayStatus = domain.DisplayStatus
strawberry.enum(
    InvoiceDisplayStatus,
    name="InvoiceDisplayStatus",
    description="The one status a list shows, from status, paymentStatus and deliveryStatus: "
    "VOIDED when voided; DRAFT until generated (READY_TO_INVOICE, GENERATING, ERROR); PENDING "
    "while awaiting approval, or approved with its e-mail not delivered yet; then REFUNDED "
    "after any refund, PAID, OVERDUE, or SENT (delivered, unpaid or partly paid).",
)
InvoiceCheckCode = checks.CheckCode
strawberry.enum(
    InvoiceCheckCode,
    name="InvoiceCheckCode",
    description="What a check before approval found: TOTAL_CHANGED and SERVICE_CHANGED (moved month over "
    "month by the organization's thresholds), NEW_SERVICE, SERVICE_GONE, NO_DATA (a provider or "
    "sub-account with costs last month and none now), ZERO_TOTAL, NEGATIVE_TOTAL, RATE_CHANGED (an "
    "exchange rate changed since generation), STALE_REVISION (costs delivered again since generation), "
    "INCOMPLETE_DATA (the month closed before a cost source's data feeding the invoice was complete).",
)
CheckSeverity = checks.Severity
strawberry.enum(
    CheckSeverity,
    name="CheckSeverity",
    description="WARNING: `approveInvoices` refuses the invoice unless it acknowledges the code; INFO: for reading.",
)
InvoiceDatePreset = domain.DatePreset
strawberry.enum(
    InvoiceDatePreset,
    description="A date range relative to today in the organization's time zone, applied to the issue date.",
)
