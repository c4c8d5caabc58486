"""Where a document stands with Xero: the type `Invoice.xeroSync` (and a credit note's) answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from models import xero as domain

XeroSyncState = domain.SyncState
strawberry.enum(
    XeroSyncState,
    description="Where a document stands with Xero: QUEUED (a push is on its way), RETRYING (an attempt "
    "failed for a reason that may pass; another follows), SYNCED (Xero has it), FAILED (Xero refused it, "
    "or retrying gave up: `message` says why; push again once fixed).",
)

@strawberry.type(description="Where one document stands with Xero.")
class XeroSync:
    state: XeroSyncState = strawberry.field(description="Where the push stands.")
    message: str | None = strawberry.field(description="Why the last attempt failed, in Xero's words when it gave them.")
    attempts: int = strawberry.field(description="Attempts of the current push.")
    last_attempt_at: datetime | None = strawberry.field(description="When the last attempt was made.")
    synced_at: datetime | None = strawberry.field(description="When Xero last confirmed it has the document.")
    xero_id: str | None = strawberry.field(description="Xero's id of the document, once it has it.")
    url: str | None = strawberry.field(description="Xero's deep link to the document, once it has it.")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> XeroSync:
        return cls(
            state=row["state"], message=row["message"], attempts=row["attempts"], last_attempt_at=row["last_attempt_at"],
            synced_at=row["synced_at"], xero_id=row["xero_id"], url=row["xero_url"],
        )
