"""The credit note's printed view: plain JSON values kept on the credit note (its snapshot),
which the template renders, now and years from now, exactly as it was issued."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from models.credit_notes.amounts import CreditLine
from models.invoices.tables import Invoice, LineKind

TEMPLATE_VERSION = "1"


def build_view(
    *, number: str, issue_date: date, invoice: Invoice, printed: dict[str, Any], period_label: str,
    reason: str, lines: list[CreditLine], subtotal: Decimal, charges: Decimal, total: Decimal,
    locale: str = "en", period_start: str | None = None,
) -> dict[str, Any]:
    """Everything the credit note prints. `printed` holds the MSP and customer as the
    invoice printed them, or as they stand now (`models.parties`) for an invoice whose
    revision did not keep them. It is printed in the language its invoice was (`locale`)."""
    return {
        "template_version": TEMPLATE_VERSION,
        "number": number,
        "issue_date": issue_date.isoformat(),
        "invoice": {
            "number": invoice.number,
            "issue_date": invoice.issue_date.isoformat() if invoice.issue_date else None,
            "total": str(invoice.total),
        },
        "locale": locale,
        "period": {"label": period_label, **({"start": period_start} if period_start else {})},
        "currency": invoice.currency,
        "reason": reason,
        "msp": printed["msp"],
        "customer": printed["customer"],
        "lines": [
            {"description": line.description, "amount": str(line.amount)}
            for line in lines if line.kind not in (LineKind.TAX, LineKind.CHARGE)
        ],
        "subtotal": str(subtotal),
        "charges": [
            {"description": line.description, "amount": str(line.amount), "is_tax": line.kind == LineKind.TAX}
            for line in lines if line.kind in (LineKind.TAX, LineKind.CHARGE)
        ],
        "total": str(total),
    }
