"""The credit note's printed view: plain JSON values kept on the credit note (its snapshot),
which the template renders, now and years from now, exactly as it was issued."""

from __future__ import annotations

import base64
from datetime import date
from decimal import Decimal
from typing import Any

from models.billing_profiles import BillingProfile
from models.credit_notes.amounts import CreditLine
from models.invoices.tables import Invoice, LineKind
from models.managed_accounts import ManagedAccount
from models.organizations import Organization

TEMPLATE_VERSION = "1"


def _address_lines(row: Any) -> list[str]:
    city_line = " ".join(part for part in (row.city, row.region, row.postal_code) if part)
    parts = (row.address_line1, row.address_line2, row.address_line3, row.address_line4, city_line, row.country)
    return [part for part in parts if part]


def parties(organization: Organization, account: ManagedAccount, profile: BillingProfile | None) -> dict[str, Any]:
    """The MSP and the customer as they stand now, for an invoice whose revision did not keep them."""
    logo = None
    if profile is not None and profile.logo:
        logo = f"data:{profile.logo_content_type};base64,{base64.b64encode(profile.logo).decode()}"
    return {
        "msp": {
            "company_name": (profile.company_name if profile else "") or organization.name,
            "address_lines": _address_lines(profile) if profile else [],
            "business_fields": profile.business_fields if profile else [],
            "banking_fields": profile.banking_fields if profile else [],
            "logo_data_url": logo,
        },
        "customer": {
            "name": account.name,
            "official_company_name": account.official_company_name or account.name,
            "address_lines": _address_lines(account),
            "business_fields": account.business_fields,
            "po_number": account.po_number,
            "billing_emails": account.billing_emails,
        },
    }


def build_view(
    *, number: str, issue_date: date, invoice: Invoice, printed: dict[str, Any], period_label: str,
    reason: str, lines: list[CreditLine], subtotal: Decimal, charges: Decimal, total: Decimal,
) -> dict[str, Any]:
    """Everything the credit note prints. `printed` holds the MSP and customer as the
    invoice printed them (`msp`, `customer`)."""
    return {
        "template_version": TEMPLATE_VERSION,
        "number": number,
        "issue_date": issue_date.isoformat(),
        "invoice": {
            "number": invoice.number,
            "issue_date": invoice.issue_date.isoformat() if invoice.issue_date else None,
            "total": str(invoice.total),
        },
        "period": {"label": period_label},
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
