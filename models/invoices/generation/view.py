"""Generation's third step: the computed revision as the invoice template prints it, plain
JSON values kept on the revision (its snapshot), so a revision can always be shown as it was."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from models.einvoicing.document import einvoice_section
from models.invoices.generation.types import ComputedRevision, Context, Line
from models.invoices.tables import LineKind
from models.parties import parties


def plain(value: Decimal | None) -> str | None:
    """A decimal as stored text: no exponent, no trailing zeros."""
    return None if value is None else f"{value.normalize():f}"


def _conversion(line: Line) -> dict[str, str]:
    """What a converted line was in its own currency (printed beside its amount)."""
    if line.cost_amount is None:
        return {}
    return {"cost_currency": line.cost_currency, "cost_amount": plain(line.cost_amount) or "0"}


def _items(revision: ComputedRevision, zero_lines: bool) -> list[dict[str, Any]]:
    """The item table: usage lines whose amount is zero are left out unless `zero_lines`."""
    return [
        {
            "description": line.description,
            "provider": line.provider,
            "service": line.service,
            "quantity": plain(line.quantity),
            "unit": line.unit,
            # Cloud unit prices are often fractions of a cent: keep them (to 10 places).
            "unit_price": plain(line.unit_price.quantize(Decimal("1e-10"))) if line.unit_price is not None else None,
            "amount": str(line.amount),
            **_conversion(line),
        }
        for line in revision.printed_items
        if zero_lines or line.kind != LineKind.USAGE or line.amount != 0
    ]


def _charge(line: Line) -> dict[str, Any]:
    charge = {"description": line.description, "amount": str(line.amount), "is_tax": line.kind == LineKind.TAX}
    return charge if line.percent is None else {**charge, "percent": plain(line.percent)}


def _amounts(revision: ComputedRevision, zero_lines: bool) -> dict[str, Any]:
    """The item table, adjustments, late costs, sums and the rates applied."""
    return {
        "lines": _items(revision, zero_lines),
        "adjustments": [{"description": rule.description, "amount": str(rule.amount)} for rule in revision.rule_lines],
        "late_costs": [{"description": line.description, "amount": str(line.amount), **_conversion(line)} for line in revision.late_lines],
        "subtotal": str(revision.subtotal),
        "charges": [_charge(charge) for charge in revision.charge_lines],
        "total": str(revision.total),
        "exchange": None
        if revision.rate == 1
        else {
            "from": revision.cost_currency,
            "to": revision.currency,
            "rate": plain(revision.rate),
        },
        # Every rate applied (several when the costs came in several currencies or late
        # costs of other months are billed).
        "exchanges": [{"from": cost, "to": revision.currency, "rate": plain(rate)} for cost, rate in sorted(revision.rates.items())],
    }


def build_view(ctx: Context, revision: ComputedRevision, number: str, template_version: str) -> dict[str, Any]:
    """Everything the invoice template prints, as plain JSON-ready values."""
    start = ctx.period.start_date
    issue_date, due_date = revision.issue_date, revision.due_date
    assert issue_date is not None and due_date is not None, "a computed revision has its dates"
    return {
        "template_version": template_version,
        # Printed in the account's language, else its organization's; kept so that it prints so again.
        "locale": ctx.locale,
        "number": number,
        "issue_date": issue_date.isoformat(),
        "due_date": due_date.isoformat(),
        "payment_terms_days": ctx.account.payment_terms_days,
        "period": {
            "label": start.strftime("%B %Y"),
            "start": start.isoformat(),
            "end": (ctx.period.end_date - timedelta(days=1)).isoformat(),
        },
        "currency": revision.currency,
        **parties(ctx.organization, ctx.account, ctx.profile),
        **_amounts(revision, ctx.organization.show_zero_usage_lines),
        "kind": ctx.invoice.kind.value,
        "provider": ctx.invoice.provider_name or None,
        "memo": ctx.invoice.memo or None,
        "notes": ctx.profile.invoice_notes or None,
        "einvoice": einvoice_section(ctx, revision),
    }
