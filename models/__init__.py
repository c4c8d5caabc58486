"""Tables and the domain. Never imports strawberry or starlette."""

from models.audit import AuditEntry
from models.auth import Token, User
from models.billing_periods import BillingPeriod
from models.billing_profiles import BillingProfile, BillingProfileCharge
from models.billing_rules import BillingRule
from models.cost_sources import CostSource
from models.costs import CostDeliveryScope, CostImport, CostRecord, CostTotal, LateCost
from models.credit_notes.tables import CreditNote, CreditNoteLine, CreditNoteNumberCounter, CreditUseEntry
from models.exchange_rates import ExchangeRate
from models.idempotency import IdempotencyKey
from models.invoice_templates import InvoiceTemplate
from models.invoices.tables import (
    Invoice,
    InvoiceEvent,
    InvoiceExtraLine,
    InvoiceLineItem,
    InvoiceNumberCounter,
    InvoiceRevision,
)
from models.managed_accounts import ManagedAccount, SubAccount
from models.organizations import Organization
from models.payments import Payment, Refund
from models.people import Invitation
from models.reminders import InvoiceReminder, ReminderStop
from models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from models.xero.tables import (
    XeroAccountMapping,
    XeroAuthorization,
    XeroConnection,
    XeroPayment,
    XeroSettings,
    XeroSync,
)

__all__ = [
    "AuditEntry", "IdempotencyKey", "BillingPeriod", "BillingProfile", "BillingProfileCharge", "BillingRule", "CostDeliveryScope",
    "CostImport", "CostSource", "CostRecord", "CostTotal", "CreditNote", "CreditNoteLine", "CreditNoteNumberCounter", "CreditUseEntry",
    "ExchangeRate", "Invitation", "Invoice", "InvoiceEvent", "InvoiceExtraLine", "InvoiceLineItem",
    "InvoiceNumberCounter", "InvoiceReminder", "InvoiceRevision", "InvoiceTemplate", "LateCost", "ManagedAccount", "Organization",
    "Payment", "Refund", "ReminderStop", "SubAccount", "Token", "User", "XeroAccountMapping", "XeroAuthorization",
    "WebhookAttempt", "WebhookDelivery", "WebhookEndpoint", "WebhookEvent", "XeroConnection", "XeroPayment", "XeroSettings",
    "XeroSync",
]
