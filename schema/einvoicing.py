"""GraphQL types of e-invoicing: the organization's settings and their payload."""

from __future__ import annotations

from typing import Annotated

import strawberry

from schema.core.errors import ValidationError
from schema.organizations import Organization


@strawberry.type(description="The organization's e-invoicing settings were changed.")
class EInvoicingSettingsUpdated:
    organization: Organization = strawberry.field(description="The organization, as changed.")


UpdateEInvoicingSettingsPayload = Annotated[
    EInvoicingSettingsUpdated | ValidationError,
    strawberry.union(
        "UpdateEInvoicingSettingsPayload", description="The result of `updateEInvoicingSettings`."
    ),
]
