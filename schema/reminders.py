"""GraphQL payloads of payment reminders."""

from __future__ import annotations

from typing import Annotated

import strawberry

from schema.core.errors import NotFoundError
from schema.invoices import Invoice


@strawberry.type(description="The invoice's payment reminders were stopped or resumed.")
class RemindersChanged:
    invoice: Invoice = strawberry.field(description="The invoice.")
    reminders_stopped: bool = strawberry.field(description="Whether its reminders are stopped now.")


RemindersPayload = Annotated[
    RemindersChanged | NotFoundError,
    strawberry.union("RemindersPayload", description="The result of `stopReminders` and `resumeReminders`."),
]
