"""Usage by service category: an account's costs per month, FOCUS service category and
currency (cloud-factory's Usage page: compute, storage, network, GPU...), for the MSP's users
and, once the MSP allows it, for the account's own customer users."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

from tortoise import connections

from models.billing_profiles import COST_COLUMNS, BillingBasis, BillingProfile
from models.costs.records import CostOrigin
from models.errors import ValidationFailed
from models.managed_accounts import ManagedAccount

MAX_USAGE_MONTHS = 36


async def usage_account(principal, account_id: Any) -> ManagedAccount | None:
    """The managed account whose usage the principal may read: any of the organization's for
    its MSP users; for a customer its own, once the MSP allows it."""
    if account_id is None:
        return None
    query = ManagedAccount.filter(id=account_id, organization_id=principal.organization_id)
    if not principal.is_msp_user:
        query = query.filter(id=principal.managed_account_id, usage_visible_to_customer=True)
    return await query.first()


async def usage_by_category(account: ManagedAccount, month_from: date, month_to: date) -> list[dict[str, Any]]:
    """The account's costs per month, FOCUS service category and billing currency, on its
    billing basis (before billing rules), counting what its invoices count (its own
    integrations only when it includes them)."""
    if month_to < month_from:
        raise ValidationFailed("The range ends before it starts.", field="to")
    if (month_to.year - month_from.year) * 12 + month_to.month - month_from.month >= MAX_USAGE_MONTHS:
        raise ValidationFailed(f"At most {MAX_USAGE_MONTHS} months at once.", field="to")
    profile = await BillingProfile.get_or_none(id=account.billing_profile_id) if account.billing_profile_id else None
    basis = account.billing_basis or (profile.billing_basis if profile else BillingBasis.BILLED)
    cost = COST_COLUMNS[basis]  # a fixed column name, never input
    return await connections.get("default").execute_query_dict(
        f"""SELECT billing_month AS month, COALESCE(NULLIF(service_category, ''), 'Other') AS category,
                   billing_currency AS currency, sum(COALESCE({cost}, billed_cost)) AS amount, sum(row_count)::int AS rows
            FROM cost_totals WHERE managed_account_id = $1 AND billing_month BETWEEN $2 AND $3
              AND (origin = $4 OR $5::boolean)
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        [str(account.id), month_from, month_to, CostOrigin.MSP_DELEGATED.value, account.include_account_integrations],
    )


def usage_csv(account: ManagedAccount, rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(("Account", "Month", "ServiceCategory", "Currency", "Amount", "Rows"))
    for row in rows:
        writer.writerow((account.name, row["month"].strftime("%Y-%m"), row["category"], row["currency"],
                         f"{row['amount'].normalize():f}", row["rows"]))
    return out.getvalue().encode()
