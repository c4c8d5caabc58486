"""GraphQL types of exports: the formats, the signed link answered, the export settings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from models import exports as domain
from schema.core.errors import InvalidTransitionError, NotFoundError, ValidationError
from schema.organizations import Organization

# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
ExportFormat = domain.ExportFormat
strawberry.enum(
    ExportFormat,
    description="XERO: Xero's sales-invoice import template, one row per invoice line, approved "
    "invoices only, at most 500 invoices per file (more come as a zip of files). DETAILED: "
    "every field of every line, for general ledgers, approved and voided invoices. Credit notes of the "
    "exported invoices come as a second CSV (for XERO, in Xero's credit note import template), the two "
    "files in one zip.",
)

@strawberry.type(description="An export is ready: download it from the signed link before it expires.")
class InvoiceExport:
    url: str = strawberry.field(description="Signed, short-lived download link (GET /files/...).")
    filename: str = strawberry.field(description="File name of the download (.csv, or .zip of CSV files).")
    invoice_count: int = strawberry.field(description="How many invoices the export holds.")
    credit_note_count: int = strawberry.field(
        default=0, description="How many credit notes of those invoices it holds (then it is a zip of two files)."
    )
    expires_at: datetime = strawberry.field(description="When the link stops working.")


ExportInvoicesPayload = Annotated[
    InvoiceExport | ValidationError | NotFoundError | InvalidTransitionError,
    strawberry.union("ExportInvoicesPayload", description="The result of `exportInvoices`."),
]


@strawberry.type(description="The organization's export settings were changed.")
class ExportSettingsUpdated:
    organization: Organization = strawberry.field(description="The organization, as changed.")


UpdateExportSettingsPayload = Annotated[
    ExportSettingsUpdated | ValidationError,
    strawberry.union("UpdateExportSettingsPayload", description="The result of `updateExportSettings`."),
]
