"""The MSP and the customer as every printed document shows them (the invoice's view, a credit
note's), in one shape, so that the templates' shared party blocks print either."""

from __future__ import annotations

import base64
from typing import Any

from models.billing_profiles import BillingProfile
from models.managed_accounts import ManagedAccount
from models.organizations import Organization


def address_lines(row: BillingProfile | ManagedAccount) -> list[str]:
    """The printed address: its lines, then city, region and postal code on one, then the country."""
    city_line = " ".join(part for part in (row.city, row.region, row.postal_code) if part)
    parts = (row.address_line1, row.address_line2, row.address_line3, row.address_line4, city_line, row.country)
    return [part for part in parts if part]


def parties(organization: Organization, account: ManagedAccount, profile: BillingProfile | None) -> dict[str, Any]:
    """`msp` (the billing profile, else only the organization's name) and `customer`, as plain
    JSON values a view keeps."""
    logo = None
    if profile is not None and profile.logo:
        logo = f"data:{profile.logo_content_type};base64,{base64.b64encode(profile.logo).decode()}"
    return {
        "msp": {
            "company_name": (profile.company_name if profile else "") or organization.name,
            "address_lines": address_lines(profile) if profile else [],
            "business_fields": profile.business_fields if profile else [],
            "banking_fields": profile.banking_fields if profile else [],
            "logo_data_url": logo,
        },
        "customer": {
            "name": account.name,
            "official_company_name": account.official_company_name or account.name,
            "address_lines": address_lines(account),
            "business_fields": account.business_fields,
            "po_number": account.po_number,
            "billing_emails": account.billing_emails,
        },
    }
