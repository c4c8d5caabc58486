"""GraphQL types of an organization's own invoice templates."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry import relay

from models.invoice_templates import InvoiceTemplate as InvoiceTemplateModel
from models.invoice_templates import visible_templates
from schema.core.context import Info
from schema.core.errors import ConflictError, NotFoundError, TemplateRejectedError, ValidationError
from schema.core.nodes import scoped_nodes
from schema.core.pagination import CountedConnection, Direction


@strawberry.type(
    name="InvoiceTemplate",
    description="A version of the organization's own invoice template (Jinja, rendered in a sandbox). A version "
    "never changes: uploading new text makes the next version. Invoices print with the active version, or with "
    "the product's template when none is active; a revision keeps the version it was printed with.",
)
class InvoiceTemplate(relay.Node):
    id: relay.NodeID[str]
    version: int = strawberry.field(description="1, 2, ... in upload order; revisions name it as `org-<version>`.")
    name: str = strawberry.field(description="What the organization calls it.")
    source: str = strawberry.field(description="The template's text.")
    sha256: str = strawberry.field(description="SHA-256 of the text (UTF-8), in hex.")
    size: int = strawberry.field(description="Size of the text in bytes (UTF-8).")
    active: bool = strawberry.field(description="Whether new invoices print with it.")
    activated_at: datetime | None = strawberry.field(description="When it was made the active one; null when not active.")
    created_at: datetime = strawberry.field(description="When it was uploaded.")

    @classmethod
    def from_model(cls, row: InvoiceTemplateModel) -> InvoiceTemplate:
        return cls(
            id=str(row.id),
            version=row.version,
            name=row.name,
            source=row.source,
            sha256=row.sha256,
            size=row.size,
            active=row.active,
            activated_at=row.activated_at,
            created_at=row.created_at,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_templates)


@strawberry.type(description="A page of invoice templates.")
class InvoiceTemplateConnection(CountedConnection[InvoiceTemplate]):
    pass


@strawberry.enum(description="What invoice templates can be sorted by.")
class InvoiceTemplateOrderField(Enum):
    VERSION = "version"


@strawberry.input(description="Sort order of invoice templates.")
class InvoiceTemplateOrder:
    field: InvoiceTemplateOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.DESC, description="Direction.")


@strawberry.input(description="An invoice template to store as the organization's next version (not active yet).")
class UploadInvoiceTemplateInput:
    name: str = strawberry.field(description="What to call it (1 to 100 characters).")
    source: str = strawberry.field(
        description="The Jinja text (at most 64 KiB of UTF-8). It may extend `invoice/v1.html` (and change some of "
        "its blocks) or `document/v1.html`, and use `_()` and the product's filters (`money`, `amount`, `date`, ...)."
    )


@strawberry.input(description="A template to try on a real invoice of the organization.")
class PreviewInvoiceTemplateInput:
    template_id: strawberry.ID = strawberry.field(description="The InvoiceTemplate.")
    invoice_id: strawberry.ID = strawberry.field(description="A generated Invoice, printed as its current revision.")


@strawberry.type(description="The template was stored as the next version.")
class InvoiceTemplateUploaded:
    invoice_template: InvoiceTemplate = strawberry.field(description="The stored version.")


@strawberry.type(description="New invoices print with this template from now on.")
class InvoiceTemplateActivated:
    invoice_template: InvoiceTemplate | None = strawberry.field(description="The active version; null: the product's template.")


@strawberry.type(description="The invoice as the template prints it (nothing was stored).")
class InvoiceTemplatePreview:
    html: str = strawberry.field(description="The printed page as HTML, self-contained; it becomes the PDF the same way an invoice's does.")


UploadInvoiceTemplatePayload = Annotated[
    InvoiceTemplateUploaded | TemplateRejectedError | ValidationError | ConflictError,
    strawberry.union("UploadInvoiceTemplatePayload", description="The result of `uploadInvoiceTemplate`."),
]
ActivateInvoiceTemplatePayload = Annotated[
    InvoiceTemplateActivated | NotFoundError | ConflictError,
    strawberry.union("ActivateInvoiceTemplatePayload", description="The result of `activateInvoiceTemplate`."),
]
PreviewInvoiceTemplatePayload = Annotated[
    InvoiceTemplatePreview | TemplateRejectedError | NotFoundError | ValidationError,
    strawberry.union("PreviewInvoiceTemplatePayload", description="The result of `previewInvoiceTemplate`."),
]
