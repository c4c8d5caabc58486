"""Who sees which credit notes, and the conditions lists filter by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Sum

from models.credit_notes.tables import CreditNote
from models.currencies import round_money
from models.invoices.tables import Invoice


def visible_credit_notes(principal):
    """The one query every credit note read goes through. MSP users see their organization's;
    a customer sees its own account's (every credit note is issued: there are no drafts)."""
    query = CreditNote.filter(organization_id=principal.organization_id)
    if not principal.is_msp_user:
        query = query.filter(managed_account_id=principal.managed_account_id)
    return query


def remaining_credit(note: CreditNote) -> Decimal:
    """Account credit the credit note still holds: what its invoice did not owe any more when
    it was issued, less what was refunded or applied to other invoices."""
    return note.total - note.allocated - note.amount_refunded - note.amount_applied


async def credit_used(invoice_ids: list, conn: Any = None) -> dict[Any, Decimal]:
    """Per invoice, the account credit its credit notes gave back (refunded or applied)."""
    rows = await CreditNote.filter(invoice_id__in=invoice_ids).using_db(conn).group_by("invoice_id").annotate(
        refunded=Sum("amount_refunded"), applied=Sum("amount_applied")).values("invoice_id", "refunded", "applied")
    return {row["invoice_id"]: row["refunded"] + row["applied"] for row in rows}


def usable_credit(remaining: Decimal, currency: str, invoice: Invoice, used: Decimal) -> Decimal:
    """What of a credit note's credit may be used now: what is left of it (`remaining`), never more
    than the customer keeps paid on its invoice beyond what the invoice owes, less the credit
    its credit notes already gave back (a payment refunded with `refundPayment` uses the
    credit up too, so nothing is given back twice)."""
    overpaid = (invoice.amount_paid - invoice.amount_refunded + invoice.credit_applied + invoice.amount_credited
                - invoice.total - used)
    return round_money(max(min(remaining, overpaid), Decimal(0)), currency)


@dataclass
class CreditNoteQuery:
    """Conditions of the credit note list; all combine (AND)."""

    account_ids: list | None = None
    invoice_ids: list | None = None
    period_from: date | None = None
    period_to: date | None = None
    issued_from: date | None = None
    issued_to: date | None = None
    search: str | None = None


def filter_credit_notes(query, where: CreditNoteQuery):
    """Apply the list conditions to a (scoped) credit note query. Periods are the credited
    invoices' billed months."""
    if where.account_ids is not None:
        query = query.filter(managed_account_id__in=where.account_ids)
    if where.invoice_ids is not None:
        query = query.filter(invoice_id__in=where.invoice_ids)
    if where.period_from:
        query = query.filter(invoice__billing_period__start_date__gte=where.period_from)
    if where.period_to:
        query = query.filter(invoice__billing_period__start_date__lte=where.period_to)
    if where.issued_from:
        query = query.filter(issue_date__gte=where.issued_from)
    if where.issued_to:
        query = query.filter(issue_date__lte=where.issued_to)
    if where.search and where.search.strip():
        term = where.search.strip()
        query = query.filter(Q(number__icontains=term) | Q(invoice__number__icontains=term))
    return query
