"""Which event types a committed transition gives, and each event's body: a stable JSON of its
type, when it happened, and the object's ids and fields as the GraphQL API names them
(camelCase; global ids, as `node(id:)` takes them). Every event belongs to the one
organization whose object changed, and reaches that organization's endpoints only."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from models.billing_periods import BillingPeriod
from models.cost_sources import CostSource
from models.costs import CostImport
from models.credit_notes.tables import CreditNote
from models.currencies import round_money
from models.invoices import DeliveryStatus, Invoice, InvoiceStatus, PaymentStatus, amount_due
from models.managed_accounts import ManagedAccount
from models.outbox import Entity, Happened, Transition
from models.payments import Payment, Refund

# Every type an endpoint may subscribe to, with what it tells (the SDL's and the manual's words).
EVENT_TYPES: dict[str, str] = {
    "invoice.generated": "An invoice was generated and awaits approval.",
    "invoice.awaiting_approval_with_warnings": "A generated invoice awaits approval with warnings to acknowledge.",
    "invoice.approved": "An invoice was approved (numbered and frozen).",
    "invoice.sent": "An approved invoice was e-mailed to the customer.",
    "invoice.delivery_failed": "An approved invoice's e-mail reached none of its recipients.",
    "invoice.paid": "A payment settled an invoice in full.",
    "invoice.partially_paid": "A payment settled part of an invoice.",
    "invoice.overdue": "An invoice passed its due date unpaid.",
    "invoice.voided": "An invoice was voided.",
    "invoice.reissued": "A voided invoice got its replacement (generated next).",
    "credit_note.issued": "A credit note was issued against an invoice.",
    "payment.recorded": "A payment was recorded on an invoice.",
    "payment.refunded": "A refund of a payment was recorded.",
    "cost_import.completed": "A cost delivery was imported.",
    "cost_import.failed": "A cost delivery was refused; nothing of it was imported.",
    "billing_period.closed": "A month was closed; its invoices are ready to generate.",
    "cost_source.failing": "A cost source could not be read (it was readable before).",
}
# Sent by `sendTestWebhook` only, whatever the endpoint subscribed to.
TEST_EVENT = "webhook.test"


@dataclass(frozen=True)
class Event:
    organization_id: Any
    type: str
    data: dict[str, Any]


def node_id(type_name: str, row_id: Any) -> str:
    """A row's global id, as the API gives it (Relay's: base64 of `Type:id`)."""
    return base64.b64encode(f"{type_name}:{row_id}".encode()).decode()


def body(event_type: str, at: datetime, data: dict[str, Any]) -> str:
    """The JSON sent, Standard Webhooks' shape: `type`, `timestamp`, `data`."""
    return json.dumps({"type": event_type, "timestamp": _text(at), "data": data}, sort_keys=True, separators=(",", ":"), default=_text)


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, (date, Decimal)):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    raise TypeError(type(value).__name__)


def _money(amount: Decimal, currency: str) -> str:
    return str(round_money(amount, currency))


def invoice_data(invoice: Invoice, account: ManagedAccount, period: BillingPeriod) -> dict[str, Any]:
    return {
        "id": node_id("Invoice", invoice.id),
        "number": invoice.number,
        "status": InvoiceStatus(invoice.status).value,
        "paymentStatus": PaymentStatus(invoice.payment_status).value,
        "deliveryStatus": DeliveryStatus(invoice.delivery_status).value,
        "currency": invoice.currency,
        "subtotal": _money(invoice.subtotal, invoice.currency),
        "taxTotal": _money(invoice.tax_total, invoice.currency),
        "total": _money(invoice.total, invoice.currency),
        "amountPaid": _money(invoice.amount_paid, invoice.currency),
        "amountDue": _money(amount_due(invoice), invoice.currency),
        "issueDate": invoice.issue_date,
        "dueDate": invoice.due_date,
        "period": f"{period.start_date:%Y-%m}",
        "account": {"id": node_id("ManagedAccount", account.id), "name": account.name},
        "replaces": node_id("Invoice", invoice.replaces_id) if invoice.replaces_id else None,
    }


async def _invoices(ids: Sequence[Any]) -> list[dict[str, Any]]:
    """The invoices as committed, with their organization, data and findings' severity."""
    invoices = (
        await Invoice.filter(id__in=[str(i) for i in ids])
        .order_by("created_at", "id")
        .select_related("managed_account", "billing_period", "current_revision")
    )
    return [
        {
            "invoice": invoice,
            "data": invoice_data(invoice, invoice.managed_account, invoice.billing_period),
            "warnings": any(
                check.get("severity") == "WARNING" for check in (invoice.current_revision.checks if invoice.current_revision else [])
            ),
        }
        for invoice in invoices
    ]


def _ids(subjects: Sequence[Any]) -> list[Any]:
    return [getattr(subject, "id", subject) for subject in subjects]


async def _invoice_events(happened: Happened) -> list[Event]:
    found: list[Event] = []
    for one in await _invoices(_ids(happened.subjects)):
        invoice, data = one["invoice"], one["data"]
        types: list[str] = []
        if happened.transition == Transition.GENERATED and invoice.status == InvoiceStatus.AWAITING_APPROVAL:
            types = ["invoice.generated"] + (["invoice.awaiting_approval_with_warnings"] if one["warnings"] else [])
        elif happened.transition == Transition.APPROVED:
            types = ["invoice.approved"]
        elif happened.transition == Transition.DELIVERED:
            types = ["invoice.sent" if invoice.delivery_status == DeliveryStatus.SENT else "invoice.delivery_failed"]
        elif happened.transition == Transition.VOIDED:
            types = ["invoice.voided"]
        elif happened.transition == Transition.OVERDUE:
            types = ["invoice.overdue"]
        elif happened.transition == Transition.REISSUED:
            types = ["invoice.reissued"]
        found += [Event(invoice.organization_id, event_type, {"invoice": data}) for event_type in types]
    return found


async def _payment_events(happened: Happened) -> list[Event]:
    (one,) = await _invoices([happened.details["invoice"].id])
    invoice, found = one["invoice"], []
    if happened.transition == Transition.RECORDED:
        for payment in happened.subjects:
            entry = _entry(
                payment, "Payment", invoice.currency, paidOn=payment.paid_on, method=payment.method.value, reference=payment.reference
            )
            found.append(Event(invoice.organization_id, "payment.recorded", {"payment": entry, "invoice": one["data"]}))
        # Settled in full, or in part (an overdue invoice paid in part stays OVERDUE, and is partially paid).
        if invoice.payment_status == PaymentStatus.PAID:
            found.append(Event(invoice.organization_id, "invoice.paid", {"invoice": one["data"]}))
        elif amount_due(invoice) > 0:
            found.append(Event(invoice.organization_id, "invoice.partially_paid", {"invoice": one["data"]}))
    else:
        for refund in happened.subjects:
            entry = _entry(
                refund,
                "Refund",
                invoice.currency,
                refundedOn=refund.refunded_on,
                reason=refund.reason,
                payment=node_id("Payment", refund.payment_id) if refund.payment_id else None,
            )
            found.append(Event(invoice.organization_id, "payment.refunded", {"refund": entry, "invoice": one["data"]}))
    return found


def _entry(row: Payment | Refund, type_name: str, currency: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": node_id(type_name, row.id),
        "amount": _money(row.amount, currency),
        "currency": currency,
        "createdAt": row.created_at,
        **fields,
    }


async def _credit_note_events(happened: Happened) -> list[Event]:
    (one,) = await _invoices([happened.details["invoice"].id])
    found = []
    for note in await CreditNote.filter(id__in=_ids(happened.subjects)):
        data = {
            "id": node_id("CreditNote", note.id),
            "number": note.number,
            "issueDate": note.issue_date,
            "reason": note.reason,
            "mode": note.mode.value,
            "currency": note.currency,
            "total": _money(note.total, note.currency),
            "taxTotal": _money(note.tax_total, note.currency),
        }
        found.append(Event(note.organization_id, "credit_note.issued", {"creditNote": data, "invoice": one["data"]}))
    return found


async def _cost_import_events(happened: Happened) -> list[Event]:
    found = []
    for row in await CostImport.filter(id__in=_ids(happened.subjects)):
        data = {
            "id": node_id("CostImport", row.id),
            "filename": row.filename,
            "state": row.state.value,
            "rowCount": row.row_count,
            "insertedCount": row.inserted_count,
            "finishedAt": row.finished_at,
            "errorMessage": row.error_message,
            "account": node_id("ManagedAccount", row.managed_account_id) if row.managed_account_id else None,
        }
        kind = "cost_import.completed" if happened.transition == Transition.COMPLETED else "cost_import.failed"
        found.append(Event(row.organization_id, kind, {"costImport": data}))
    return found


async def _period_events(happened: Happened) -> list[Event]:
    organization_id, month = happened.details.get("organization_id"), happened.details.get("month")
    if not happened.details.get("first") or organization_id is None:
        return []
    period = await BillingPeriod.get(organization_id=organization_id, start_date=month)
    data = {
        "id": node_id("BillingPeriod", period.id),
        "month": f"{period.start_date:%Y-%m}",
        "state": "CLOSED",
        "closedAt": period.closed_at,
        "invoices": [node_id("Invoice", i) for i in happened.subjects],
    }
    return [Event(organization_id, "billing_period.closed", {"billingPeriod": data})]


async def _cost_source_events(happened: Happened) -> list[Event]:
    return [
        Event(
            source.organization_id,
            "cost_source.failing",
            {
                "costSource": {
                    "id": node_id("CostSource", source.id),
                    "name": source.name,
                    "kind": source.kind.value,
                    "state": source.state.value,
                    "lastError": source.last_error,
                    "lastSyncAt": source.last_sync_at,
                }
            },
        )
        for source in await CostSource.filter(id__in=_ids(happened.subjects))
    ]


_BY_ENTITY = {
    Entity.INVOICE: _invoice_events,
    Entity.PAYMENT: _payment_events,
    Entity.CREDIT_NOTE: _credit_note_events,
    Entity.COST_IMPORT: _cost_import_events,
    Entity.PERIOD: _period_events,
    Entity.COST_SOURCE: _cost_source_events,
}


async def events_of(happened: Happened) -> list[Event]:
    """The events a committed transition gives (none for most transitions)."""
    return await _BY_ENTITY[happened.entity](happened)
