"""Credit notes: tables, their own number series, what they credit, issuing them, and the
account credit they leave (refunded, or applied to the account's next invoice)."""

from models.credit_notes.amounts import LineCredit
from models.credit_notes.operations import (
    CreditNoteIssued,
    CreditUsed,
    apply_credit,
    create_credit_note,
    refund_credit,
)
from models.credit_notes.queries import (
    CreditNoteQuery,
    credit_used,
    filter_credit_notes,
    remaining_credit,
    usable_credit,
    visible_credit_notes,
)
from models.credit_notes.tables import CreditMode, CreditNote, CreditNoteLine, CreditUse, CreditUseEntry

__all__ = [
    "CreditMode", "CreditNote", "CreditNoteIssued", "CreditNoteLine", "CreditNoteQuery", "CreditUse",
    "CreditUseEntry", "CreditUsed", "LineCredit", "apply_credit", "create_credit_note", "filter_credit_notes",
    "credit_used", "refund_credit", "remaining_credit", "usable_credit", "visible_credit_notes",
]
