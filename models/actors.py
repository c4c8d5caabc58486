"""Who causes a change, as every timeline (invoices, periods, payments, Xero pushes) records it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Actor:
    """Who causes a change: a user, or a named part of the system."""

    user_id: Any = None
    label: str = ""

    @classmethod
    def system(cls, label: str) -> Actor:
        return cls(label=label)
