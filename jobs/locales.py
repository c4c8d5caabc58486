"""Documents and e-mails in the customer's language: the translation catalogs and the
locale's way of writing dates, numbers, percentages and money.

Labels are gettext messages whose ids are the English text, so English needs no catalog and
prints exactly as it always has (`1,234.50`, `1 October 2024`, `EUR 1,234.50`). Every other
language has a catalog, `templates/locale/<code>/LC_MESSAGES/messages.po`, compiled by Babel
when it is first used (no compiled file to keep in step), and its values formatted by Babel
from CLDR's data for that locale: `1.234,56 €` in German, `1 234,56 €` in French.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from babel.dates import format_date as babel_date
from babel.numbers import format_currency, format_decimal
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

from models.currencies import MINOR_UNITS, round_money
from models.locales import (
    CATALOGS_DIR,
    DEFAULT_LOCALE,
    MONTHS,
    SUPPORTED_LOCALES,
    format_month,
    format_percent_value,
    known,
    translate,
    translations,
)

__all__ = [
    "CATALOGS_DIR",
    "SUPPORTED_LOCALES",
    "format_month",
    "format_percent_value",
    "known",
    "translate",
    "translations",
]


def _day(value: str | date) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def format_money(value: str | Decimal, currency: str, locale: str | None = None) -> str:
    """The amount alone, to the currency's minor unit: '-1234.5' in EUR -> '-1,234.50'
    ('-1.234,50' in German); '1234' in JPY -> '1,234'."""
    amount = round_money(Decimal(value), currency)
    if amount == 0:
        amount = abs(amount)  # no '-0.00'
    places = MINOR_UNITS[currency]
    if known(locale) == DEFAULT_LOCALE:
        return f"{amount:,.{places}f}"
    return format_decimal(amount, format="#,##0" + ("." + "0" * places if places else ""), locale=locale)


def format_amount(value: str | Decimal, currency: str, locale: str | None = None) -> str:
    """The amount with its currency: 'EUR 1,234.50' in English, as Babel writes it elsewhere
    ('1.234,50 €' in German, '€ 1.234,50' in Dutch)."""
    if known(locale) == DEFAULT_LOCALE:
        return f"{currency} {format_money(value, currency)}"
    amount = round_money(Decimal(value), currency)
    return format_currency(abs(amount) if amount == 0 else amount, currency, locale=locale)


def format_price(value: str | Decimal, currency: str, locale: str | None = None) -> str:
    """A unit price: at least the currency's minor units, more if the value carries them
    (a per-request price of 0.0000004 must not print as 0.00)."""
    price = Decimal(value)
    exponent = price.normalize().as_tuple().exponent
    assert isinstance(exponent, int), "a price is a finite number"
    places = max(MINOR_UNITS[currency], -exponent)
    if known(locale) == DEFAULT_LOCALE:
        return f"{price:,.{places}f}"
    return format_decimal(price, format="#,##0" + ("." + "0" * places if places else ""), locale=locale)


def format_quantity(value: str | Decimal, locale: str | None = None) -> str:
    """'1234.500' -> '1,234.5' ('1.234,5' in German); never in exponent notation."""
    quantity = Decimal(value).normalize()
    if known(locale) != DEFAULT_LOCALE:
        return format_decimal(quantity, locale=locale, decimal_quantization=False)
    return f"{quantity:,f}" if quantity != quantity.to_integral() else f"{quantity:,.0f}"


def format_date(value: str | date, locale: str | None = None) -> str:
    """'2024-10-01' -> '1 October 2024', whatever the process locale; Babel's long date
    elsewhere ('1. Oktober 2024', '1 de octubre de 2024')."""
    day = _day(value)
    if known(locale) == DEFAULT_LOCALE:
        return f"{day.day} {MONTHS[day.month - 1]} {day.year}"
    return babel_date(day, "long", locale=locale)


def page_label(locale: str | None) -> str:
    """What each printed page says of itself, `{page}` and `{pages}` filled in by the printer."""
    return translate(locale, "Page %(page)s of %(pages)s", page="{page}", pages="{pages}")


def context_locale(context: Context) -> str:
    """The locale a template's values name (`locale`); English when they name none."""
    return known(context.get("locale"))


def install_gettext(env: Environment) -> None:
    """Give `env`'s templates `_()` (and the i18n extension's tags) in the locale of the values
    each is rendered with: new-style, so `_("Invoice %(number)s", number=number)` escapes the
    values and trusts the message."""

    @pass_context
    def gettext_(context: Context, message: str) -> str:
        return translations(context_locale(context)).gettext(message)

    @pass_context
    def ngettext_(context: Context, singular: str, plural: str, count: int) -> str:
        return translations(context_locale(context)).ngettext(singular, plural, count)

    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(gettext_, ngettext_, newstyle=True)  # type: ignore[attr-defined]


def money_value(value: str | Decimal, currency: str, locale: str | None) -> str:
    """An amount an e-mail's values carry: written out in English (as it always was), kept
    as a number for the template to write in any other language (`money_text`)."""
    return format_money(value, currency) if known(locale) == DEFAULT_LOCALE else str(value)


@pass_context
def money_text(context: Context, value: str, currency: str) -> str:
    """An e-mail's amount with its currency: '1,234.50 EUR' in English, as Babel writes it elsewhere."""
    locale = context_locale(context)
    return f"{value} {currency}" if locale == DEFAULT_LOCALE else format_amount(value, currency, locale)


@pass_context
def day_text(context: Context, value: str) -> str:
    """An e-mail's date: as given in English (as it always was), the locale's long date elsewhere."""
    locale = context_locale(context)
    return value if locale == DEFAULT_LOCALE else format_date(value, locale)
