"""What an owner changes on an invoice before approval: its memo and its one-off items.

An invoice that is READY_TO_INVOICE keeps the change for its first generation; one awaiting
approval or in error is generated again at once (same number, a new revision), so that its
taxes, charges and PDF always agree with what it holds. Approved and voided invoices never
change; a GENERATING one belongs to its job until it is done."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tortoise.transactions import in_transaction

from models.actors import Actor
from models.errors import InvalidTransition, NotFound, ValidationFailed
from models.invoices.lifecycle import lock_invoice, transition
from models.invoices.queries import visible_invoices
from models.invoices.tables import Invoice, InvoiceEvent, InvoiceExtraLine, InvoiceStatus
from models.outbox import Entity, Transition, record
from models.text import clean_text

EDITABLE = (InvoiceStatus.READY_TO_INVOICE, InvoiceStatus.AWAITING_APPROVAL, InvoiceStatus.ERROR)
MAX_MEMO = 2000
MAX_EXTRA_LINES = 100
_LIMIT = Decimal("1e12")


@dataclass
class Edited:
    """The invoice after the change, and the line it added or changed."""

    invoice: Invoice
    line: InvoiceExtraLine | None = None


def _amount(value: Any, field: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValidationFailed("Expected a decimal number.", field=field) from None
    if not amount.is_finite() or abs(amount) >= _LIMIT or amount != amount.quantize(Decimal("0.0001")):
        raise ValidationFailed("A number below 1,000,000,000,000 with at most 4 decimals.", field=field)
    return amount


def _line_values(description: Any, quantity: Any, unit_price: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if description is not None:
        values["description"] = clean_text(description, "description", 1024, True)
    if quantity is not None:
        values["quantity"] = _amount(quantity, "quantity")
        if values["quantity"] <= 0:
            raise ValidationFailed("The quantity is more than 0.", field="quantity")
    if unit_price is not None:
        values["unit_price"] = _amount(unit_price, "unitPrice")
    return values


async def _edit(principal, invoice_id: Any, kind: str, detail: dict[str, Any], change) -> Edited:
    """Lock the invoice, check it may change, apply `change(conn, invoice)`, record it, and
    regenerate it when it was generated already."""
    actor = Actor(user_id=principal.user.id)
    async with in_transaction() as conn:
        invoice = await lock_invoice(conn, visible_invoices(principal), invoice_id, field="invoiceId")
        if invoice.status not in EDITABLE:
            raise InvalidTransition(
                "Only an invoice that is not approved, voided or being generated can change.", field="invoiceId"
            )
        line = await change(conn, invoice)
        await InvoiceEvent.create(invoice_id=invoice.id, actor_id=actor.user_id, kind=kind, detail=detail, using_db=conn)
        await Invoice.filter(id=invoice.id).using_db(conn).update(updated_at=datetime.now(UTC))
        regenerating = invoice.status != InvoiceStatus.READY_TO_INVOICE
        if regenerating:
            await transition(invoice.id, "REGENERATE", actor, connection=conn, detail={"because": kind})
    if regenerating:
        record(Entity.INVOICE, Transition.GENERATION_REQUESTED, [invoice.id])
    return Edited(await Invoice.get(id=invoice.id), line)


async def set_memo(principal, invoice_id: Any, memo: Any) -> Edited:
    text = clean_text(memo, "memo", MAX_MEMO, False)

    async def change(conn, invoice):
        await Invoice.filter(id=invoice.id).using_db(conn).update(memo=text)

    return await _edit(principal, invoice_id, "MEMO_SET", {"memo": text}, change)


async def add_line(principal, invoice_id: Any, description: Any, quantity: Any, unit_price: Any) -> Edited:
    values = _line_values(description, quantity, unit_price)

    async def change(conn, invoice):
        count = await InvoiceExtraLine.filter(invoice_id=invoice.id).using_db(conn).count()
        if count >= MAX_EXTRA_LINES:
            raise ValidationFailed(f"At most {MAX_EXTRA_LINES} one-off items on an invoice.", field="invoiceId")
        last = await InvoiceExtraLine.filter(invoice_id=invoice.id).using_db(conn).order_by("-position").first()
        return await InvoiceExtraLine.create(
            invoice_id=invoice.id, position=(last.position + 1) if last else 1, using_db=conn, **values
        )

    detail = {key: str(value) for key, value in values.items()}
    return await _edit(principal, invoice_id, "ITEM_ADDED", detail, change)


async def _line_of(principal, line_id: Any) -> InvoiceExtraLine:
    line = await InvoiceExtraLine.get_or_none(id=line_id) if line_id else None
    if line is None or not await visible_invoices(principal).filter(id=line.invoice_id).exists():
        raise NotFound("No such invoice item.", field="id")
    return line


async def update_line(principal, line_id: Any, description: Any, quantity: Any, unit_price: Any) -> Edited:
    values = _line_values(description, quantity, unit_price)
    line = await _line_of(principal, line_id)

    async def change(conn, invoice):
        if not await InvoiceExtraLine.filter(id=line.id).using_db(conn).update(**values):
            raise NotFound("No such invoice item.", field="id")
        return await InvoiceExtraLine.get(id=line.id, using_db=conn)

    detail = {"position": line.position, **{key: str(value) for key, value in values.items()}}
    return await _edit(principal, line.invoice_id, "ITEM_CHANGED", detail, change)


async def remove_line(principal, line_id: Any) -> Edited:
    line = await _line_of(principal, line_id)

    async def change(conn, invoice):
        if not await InvoiceExtraLine.filter(id=line.id).using_db(conn).delete():
            raise NotFound("No such invoice item.", field="id")

    detail = {"position": line.position, "description": line.description}
    return await _edit(principal, line.invoice_id, "ITEM_REMOVED", detail, change)
