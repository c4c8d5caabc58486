"""The languages documents and e-mails are printed in, the check of a chosen one, and the
catalog lookup the invoice generator needs to write its own line labels ("Markup: ...",
"Costs for September 2024 received after invoicing") in the revision's language.

Message ids are the English text, so English needs no catalog and prints exactly as it always
has; every other language's catalog, `templates/locale/<code>/LC_MESSAGES/messages.po`, is
compiled by Babel when it is first used. `jobs.locales` builds the documents' formatting on
these.
"""

from __future__ import annotations

import functools
import gettext
import io
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel.dates import format_skeleton
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_percent
from babel.support import Translations

from models.errors import ValidationFailed

# English first: the organization's default unless it chooses another.
SUPPORTED_LOCALES = ("en", "de", "fr", "nl", "es")
DEFAULT_LOCALE = "en"


def check_locale(value: Any, field: str = "locale") -> str:
    """A supported locale code (`de`, `fr`...), else a ValidationFailed naming `field`."""
    code = value.strip().lower().replace("-", "_") if isinstance(value, str) else ""
    if code not in SUPPORTED_LOCALES:
        raise ValidationFailed(f"Locale must be one of: {', '.join(SUPPORTED_LOCALES)}.", field=field)
    return code


CATALOGS_DIR = Path(__file__).resolve().parent.parent / "templates" / "locale"
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def known(locale: str | None) -> str:
    """The locale a stored view or row names, English when it names none (printed before
    documents had a language) or one no longer supported."""
    return locale if locale in SUPPORTED_LOCALES else DEFAULT_LOCALE


@functools.cache
def translations(locale: str) -> gettext.NullTranslations:
    """The locale's catalog, compiled from its .po file; English's is the message ids."""
    if known(locale) == DEFAULT_LOCALE:
        return gettext.NullTranslations()
    with (CATALOGS_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = read_po(source, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def translate(locale: str | None, message: str, **values: object) -> str:
    """`message` in the locale, with `%(name)s` placeholders filled from `values`."""
    text = translations(known(locale)).gettext(message)
    return text % values if values else text


def format_month(value: str | date, locale: str | None = None) -> str:
    """A month as its name and year: 'September 2024', 'septembre 2024'."""
    day = date.fromisoformat(value) if isinstance(value, str) else value
    if known(locale) == DEFAULT_LOCALE:
        return f"{MONTHS[day.month - 1]} {day.year}"
    return format_skeleton("yMMMM", day, locale=locale)


def format_percent_value(percent: str | Decimal, locale: str | None = None) -> str:
    """A rate given in percent: '19' -> '19%' ('19 %' in German and French)."""
    rate = Decimal(percent)
    if known(locale) == DEFAULT_LOCALE:
        return f"{rate.normalize():f}%"
    return format_percent(rate / 100, locale=locale, decimal_quantization=False)
