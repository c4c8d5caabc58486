"""The languages documents and e-mails are printed in, and the check of a chosen one."""

from __future__ import annotations

from typing import Any

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
