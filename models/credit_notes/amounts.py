"""What a credit note credits, line by line: the rule an accountant expects, written once.

- FULL credits every line of the invoice's current revision as printed (usage, billing
  rules, taxes and charges), so the credit note mirrors the invoice. Once part of the invoice
  has been credited, FULL credits what is left of each line; when a credit by amount has
  credited a net no line names, the net left is one line and each tax and charge line is
  credited what is left of it.
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

Over any sequence of credit notes, no tax or charge line is credited beyond what the invoice
charged, nor the net beyond its subtotal: a share is capped at what earlier credit notes left
of its line, and a credit by amount whose net would pass the net left moves the difference
onto the taxes and charges that still have some left. A credit note that credits the rest
(FULL, an AMOUNT equal to what is left, LINES that reach the net left) credits exactly what is
left of each tax and charge line, so the credited taxes add up to those charged, to the cent,
as a VAT return and Xero expect.
Every credit note line is positive where it credits the customer; its total is the sum of its
printed lines, like an invoice's."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from models.credit_notes.tables import CreditMode
from models.currencies import MINOR_UNITS, round_money
from models.errors import CreditExceeded, ErrorCode, ValidationFailed
from models.invoices.tables import LineKind
from models.locales import translate

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


def credit(
    mode: CreditMode, lines: list[dict[str, Any]], credited: dict[int, Decimal], left: Decimal, currency: str,
    invoice_number: str, chosen: list[LineCredit] | None = None, amount: Any = None, locale: str | None = None,
) -> list[CreditLine]:
    """The lines of a credit note in `mode` on an invoice printed as `lines` (its current
    revision's, with position, kind, description and amount), of which earlier credit notes
    credited `credited` by line position and left `left` of its total. Refuses what would
    credit nothing or more than is left (nothing is written then). A line the note writes
    itself is labelled in the language the invoice was printed in (`locale`)."""
    description = translate(locale, "Credit on invoice %(number)s", number=invoice_number)
    if mode == CreditMode.LINES:
        note = by_lines(lines, chosen or [], currency, credited, left)
    elif mode == CreditMode.AMOUNT:
        if amount is None:
            raise ValidationFailed("Give the amount to credit.", field="amount")
        total = sum((line["amount"] for line in lines), Decimal(0))
        note = by_amount(lines, exact_amount(amount, currency, "amount"), total, currency, description, credited, left)
    elif not credited and left == sum((line["amount"] for line in lines), Decimal(0)):
        note = full(lines)
    elif left <= 0:
        raise CreditExceeded(
            f"Invoice {invoice_number} is credited in full already.", maximum=round_money(Decimal(0), currency),
            field="invoiceId",
        )
    else:
        note = rest(lines, credited, left, currency, description)
    total = sum((c.amount for c in note), Decimal(0))
    if total <= 0:
        raise ValidationFailed("The credit note would credit nothing.", field="lines")
    if total > left:
        raise CreditExceeded(
            f"At most {max(left, Decimal(0))} {currency} is left to credit on invoice {invoice_number}.",
            maximum=max(left, round_money(Decimal(0), currency)),
            field="amount" if mode == CreditMode.AMOUNT else "invoiceId",
        )
    return note


def full(lines: list[dict[str, Any]]) -> list[CreditLine]:
    """Every line of the revision as printed."""
    return [
        CreditLine(LineKind(line["kind"]), line["description"], line["amount"], line["position"])
        for line in lines if line["amount"] != 0
    ]


def rest(
    lines: list[dict[str, Any]], credited: dict[int, Decimal], left: Decimal, currency: str, description: str,
) -> list[CreditLine]:
    """What earlier credit notes left of the invoice (`left` of its total): each line's rest
    when every credited net named its line, else the net left as one line (`description`)
    and each tax and charge line's rest."""
    net_credited = sum((line["amount"] for line in lines if LineKind(line["kind"]) in NET_KINDS), Decimal(0)) - (
        left - _charges_left(lines, credited))
    named = sum((credited.get(line["position"], Decimal(0)) for line in lines if LineKind(line["kind"]) in NET_KINDS),
                Decimal(0))
    if net_credited == named:
        return [
            CreditLine(LineKind(line["kind"]), line["description"], left_of, line["position"])
            for line in lines if (left_of := _left_of(line, credited)) != 0
        ]
    total = sum((line["amount"] for line in lines), Decimal(0))
    return by_amount(lines, left, total, currency, description, credited, left)


def by_lines(
    lines: list[dict[str, Any]], chosen: list[LineCredit], currency: str, credited: dict[int, Decimal],
    left: Decimal,
) -> list[CreditLine]:
    """The chosen usage or markup lines (in full or in part) and their share of every tax and
    charge line. `credited` is what earlier credit notes credited of each line, by position;
    `left` what they left of the invoice's total."""
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
        line_left = round_money(_left_of(line, credited), currency)
        amount = line_left if choice.amount is None else exact_amount(choice.amount, currency, "lines")
        if amount > line_left or line_left <= 0:
            most = round_money(max(line_left, Decimal(0)), currency)
            raise CreditExceeded(
                f"At most {most} {currency} is left to credit on line {choice.position}.",
                maximum=most, field="lines", code=ErrorCode.CREDIT_EXCEEDS_INVOICE,
            )
        credit.append(CreditLine(LineKind(line["kind"]), line["description"], amount, choice.position))
    chosen_total = sum((c.amount for c in credit), Decimal(0))
    positive = [line for line in lines if LineKind(line["kind"]) in NET_KINDS and line["amount"] > 0]
    # Once this credit note takes the last of every positive line, the discounts' rests follow.
    now = {c.invoice_line_position: c.amount for c in credit}
    last = all(_left_of(line, credited) == now.get(line["position"], Decimal(0)) for line in positive)
    ratio = chosen_total / sum((line["amount"] for line in positive), Decimal(0))
    credit += _shares(lines, ratio, currency, (LineKind.RULE,), credited, negative=True, whole=last)
    net = sum((c.amount for c in credit), Decimal(0))
    subtotal = sum((line["amount"] for line in lines if LineKind(line["kind"]) in NET_KINDS), Decimal(0))
    # The net left of the invoice: credited all (or more, which the caller refuses), the
    # taxes and charges are credited what is left of them.
    whole = net >= left - _charges_left(lines, credited)
    if subtotal > 0 or whole:
        ratio = net / subtotal if subtotal > 0 else Decimal(1)
        credit += _shares(lines, ratio, currency, CHARGE_KINDS, credited, whole=whole)
    return credit


def by_amount(
    lines: list[dict[str, Any]], amount: Decimal, total: Decimal, currency: str, description: str,
    credited: dict[int, Decimal] | None = None, left: Decimal | None = None,
) -> list[CreditLine]:
    """`amount` (taxes included) split into the invoice's taxes and charges in proportion,
    and a net line (`description`) with the rest. `credited` and `left` are what earlier
    credit notes credited of each line and left of the invoice's `total` (none by default)."""
    credited = credited or {}
    left = total if left is None else left
    shares = _shares(lines, amount / total, currency, CHARGE_KINDS, credited, whole=amount >= left) if total > 0 else []
    # The net credited never passes the net left: what it would take beyond goes to the
    # taxes and charges with some left, in their order.
    short = _charges_left(lines, credited) - (left - amount) - sum((s.amount for s in shares), Decimal(0))
    if short > 0:
        taken = {s.invoice_line_position: s for s in shares}
        for line in lines:
            if short <= 0:
                break
            if LineKind(line["kind"]) not in CHARGE_KINDS:
                continue
            share = taken.get(line["position"])
            room = max(_left_of(line, credited), Decimal(0)) - (share.amount if share else Decimal(0))
            step = min(room, short)
            if step <= 0:
                continue
            if share is None:
                share = taken[line["position"]] = CreditLine(
                    LineKind(line["kind"]), line["description"], Decimal(0), line["position"])
            share.amount += step
            short -= step
        shares = sorted((s for s in taken.values() if s.amount != 0), key=lambda s: s.invoice_line_position or 0)
    net = amount - sum((s.amount for s in shares), Decimal(0))
    return ([CreditLine(LineKind.USAGE, description, net)] if net != 0 else []) + shares


def _left_of(line: dict[str, Any], credited: dict[int, Decimal]) -> Decimal:
    return line["amount"] - credited.get(line["position"], Decimal(0))


def _charges_left(lines: list[dict[str, Any]], credited: dict[int, Decimal]) -> Decimal:
    return sum((_left_of(line, credited) for line in lines if LineKind(line["kind"]) in CHARGE_KINDS), Decimal(0))


def _shares(lines: list[dict[str, Any]], ratio: Decimal, currency: str, kinds: tuple[LineKind, ...],
            credited: dict[int, Decimal], negative: bool = False, whole: bool = False) -> list[CreditLine]:
    """`ratio` of each line of `kinds` (only the negative ones with `negative`), rounded and
    capped at what is left of the line; what is left of it exactly with `whole`."""
    shares = []
    for line in lines:
        if LineKind(line["kind"]) in kinds and (line["amount"] < 0 or not negative):
            line_left = _left_of(line, credited)
            share = round_money(line["amount"] * ratio, currency)
            # Between nothing and what is left, on the side of the line's sign.
            amount = line_left if whole else min(max(share, min(line_left, Decimal(0))), max(line_left, Decimal(0)))
            if amount != 0:
                shares.append(CreditLine(LineKind(line["kind"]), line["description"], amount, line["position"]))
    return shares
