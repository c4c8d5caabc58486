"""What a credit note credits, line by line: the rule an accountant expects, written once.

- FULL credits every line of the invoice's current revision as printed (usage, billing
  rules, taxes and charges), so the credit note mirrors the invoice. Once part of the invoice
  has been credited, FULL credits what is left, as a credit by that amount.
- LINES credits chosen usage or markup lines of the current revision (those with a positive
  amount), each in full or by a partial amount, never beyond what earlier credit notes left of
  the line. What lowered those lines follows them: each credit or discount line of the invoice
  (a negative rule line) is credited in the share the chosen amounts G are of all positive lines
  P (G / P of it, rounded half-up), so the credited net is N = G + those shares. N then carries
  its share of every tax and charge line of the invoice: N / subtotal of each, rounded half-up
  to the currency's minor unit. The invoice's taxes and charges are all computed on the
  subtotal (or billed for the month it covers), so the credit note's tax is the invoice's rate
  applied to what is credited, and crediting every line in full credits the invoice's total.
- AMOUNT credits a gross amount A, taxes included, as customers and accountants state a
  credit ("credit 120.00"): each tax and charge line is credited A / total of its amount, rounded
  half-up, and the net line takes the rest, so the lines add up to A exactly.

Every credit note line is positive where it credits the customer; its total is the sum of its
printed lines, like an invoice's."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from models.currencies import MINOR_UNITS, round_money
from models.errors import CreditExceeded, ErrorCode, ValidationFailed
from models.invoices.tables import LineKind

NET_KINDS = (LineKind.USAGE, LineKind.RULE)
CHARGE_KINDS = (LineKind.TAX, LineKind.CHARGE)


@dataclass(frozen=True)
class LineCredit:
    """A line of the invoice to credit, by its position, in full (amount None) or in part."""

    position: int
    amount: Decimal | None = None


@dataclass
class CreditLine:
    kind: LineKind
    description: str
    amount: Decimal
    invoice_line_position: int | None = None


def exact_amount(value: Any, currency: str, field: str) -> Decimal:
    """A positive amount with at most the currency's minor units, else ValidationFailed."""
    places = MINOR_UNITS[currency]
    try:
        amount = Decimal(value)
        exact = amount.is_finite() and amount == amount.quantize(Decimal(1).scaleb(-places))
    except (ArithmeticError, TypeError, ValueError):
        exact = False
    if not exact or amount <= 0:
        raise ValidationFailed(
            f"An amount is a positive number with at most {places} decimals in {currency}.", field=field
        )
    return amount


def full(lines: list[dict[str, Any]]) -> list[CreditLine]:
    """Every line of the revision as printed."""
    return [
        CreditLine(LineKind(line["kind"]), line["description"], line["amount"], line["position"])
        for line in lines if line["amount"] != 0
    ]


def by_lines(
    lines: list[dict[str, Any]], chosen: list[LineCredit], currency: str, credited: dict[int, Decimal],
) -> list[CreditLine]:
    """The chosen usage or markup lines (in full or in part) and their share of every tax and
    charge line. `credited` is what earlier credit notes credited of each line, by position."""
    if not chosen:
        raise ValidationFailed("Choose at least one line to credit.", field="lines")
    by_position = {line["position"]: line for line in lines}
    if len({c.position for c in chosen}) != len(chosen):
        raise ValidationFailed("A line is chosen twice.", field="lines")
    credit = []
    for choice in sorted(chosen, key=lambda c: c.position):
        line = by_position.get(choice.position)
        if line is None or LineKind(line["kind"]) not in NET_KINDS or line["amount"] <= 0:
            raise ValidationFailed(
                f"Line {choice.position} is not a usage or markup line of the invoice's current revision "
                "(taxes and charges follow the lines credited; credits and discounts cannot be credited).",
                field="lines",
            )
        left = round_money(line["amount"] - credited.get(choice.position, Decimal(0)), currency)
        amount = left if choice.amount is None else exact_amount(choice.amount, currency, "lines")
        if amount > left or left <= 0:
            most = round_money(max(left, Decimal(0)), currency)
            raise CreditExceeded(
                f"At most {most} {currency} is left to credit on line {choice.position}.",
                maximum=most, field="lines", code=ErrorCode.CREDIT_EXCEEDS_INVOICE,
            )
        credit.append(CreditLine(LineKind(line["kind"]), line["description"], amount, choice.position))
    chosen_total = sum((c.amount for c in credit), Decimal(0))
    positive = sum((line["amount"] for line in lines if LineKind(line["kind"]) in NET_KINDS and line["amount"] > 0),
                   Decimal(0))
    credit += _shares(lines, chosen_total / positive, currency, (LineKind.RULE,), negative=True)
    net = sum((c.amount for c in credit), Decimal(0))
    subtotal = sum((line["amount"] for line in lines if LineKind(line["kind"]) in NET_KINDS), Decimal(0))
    if subtotal > 0:
        credit += _shares(lines, net / subtotal, currency, CHARGE_KINDS)
    return credit


def by_amount(lines: list[dict[str, Any]], amount: Decimal, total: Decimal, currency: str,
              description: str) -> list[CreditLine]:
    """`amount` (taxes included) split into the invoice's taxes and charges in proportion,
    and a net line (`description`) with the rest."""
    shares = _shares(lines, amount / total, currency, CHARGE_KINDS) if total > 0 else []
    net = amount - sum((s.amount for s in shares), Decimal(0))
    return ([CreditLine(LineKind.USAGE, description, net)] if net != 0 else []) + shares


def _shares(lines: list[dict[str, Any]], ratio: Decimal, currency: str, kinds: tuple[LineKind, ...],
            negative: bool = False) -> list[CreditLine]:
    """`ratio` of each line of `kinds` (only the negative ones with `negative`), rounded."""
    shares = []
    for line in lines:
        if LineKind(line["kind"]) in kinds and (line["amount"] < 0 or not negative):
            amount = round_money(line["amount"] * ratio, currency)
            if amount != 0:
                shares.append(CreditLine(LineKind(line["kind"]), line["description"], amount, line["position"]))
    return shares
