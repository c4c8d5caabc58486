"""An organization's own invoice templates: the list, upload, preview on a real invoice, activate."""

from __future__ import annotations

import strawberry

from jobs import invoice_templates as printing
from models import invoice_templates
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid
from schema.core.pagination import Direction, connection_field
from schema.core.permissions import MSP_USERS, OWNERS
from schema.invoice_templates import (
    ActivateInvoiceTemplatePayload,
    InvoiceTemplate,
    InvoiceTemplateActivated,
    InvoiceTemplateConnection,
    InvoiceTemplateOrder,
    InvoiceTemplateOrderField,
    InvoiceTemplatePreview,
    InvoiceTemplateUploaded,
    PreviewInvoiceTemplateInput,
    PreviewInvoiceTemplatePayload,
    UploadInvoiceTemplateInput,
    UploadInvoiceTemplatePayload,
)

TYPE_NAME = "InvoiceTemplate"


@strawberry.type
class Query:
    invoice_templates = connection_field(
        InvoiceTemplateConnection,
        InvoiceTemplateOrder(field=InvoiceTemplateOrderField.VERSION, direction=Direction.DESC),
        invoice_templates.visible_templates,
        InvoiceTemplate.from_model,
        description="The organization's own invoice templates; by default the latest version first.",
        scopes=MSP_USERS,
    )


@strawberry.type
class Mutation:
    @mutation(
        description="Store an invoice template as the organization's next version, not active yet. It is compiled "
        "and a sample invoice printed with it, in English and German, in the sandbox; one that fails is refused "
        "with the line and the reason (`TemplateRejectedError`).",
        scopes=OWNERS,
    )
    async def upload_invoice_template(self, info: Info, input: UploadInvoiceTemplateInput) -> UploadInvoiceTemplatePayload:
        row = await invoice_templates.upload_template(info.context.principal, input.name, input.source, printing.check_template)
        return InvoiceTemplateUploaded(invoice_template=InvoiceTemplate.from_model(row))

    @mutation(
        description="Print a real invoice of the organization (its current revision) with a template, without "
        "storing anything: the HTML the PDF would be printed from.",
        scopes=MSP_USERS,
    )
    async def preview_invoice_template(self, info: Info, input: PreviewInvoiceTemplateInput) -> PreviewInvoiceTemplatePayload:
        template, view = await invoice_templates.preview_subject(
            info.context.principal,
            node_uuid(input.template_id, TYPE_NAME, field="templateId"),
            node_uuid(input.invoice_id, "Invoice", field="invoiceId"),
        )
        (html,) = await printing.render_own(template.source, [view])
        return InvoiceTemplatePreview(html=html)

    @mutation(
        description="Print new invoices with this version from now on (`id` null: with the product's template "
        "again). Invoices already generated keep the template they were printed with until regenerated.",
        scopes=OWNERS,
    )
    async def activate_invoice_template(self, info: Info, id: strawberry.ID | None = None) -> ActivateInvoiceTemplatePayload:
        row = await invoice_templates.activate_template(info.context.principal, node_uuid(id, TYPE_NAME))
        return InvoiceTemplateActivated(invoice_template=InvoiceTemplate.from_model(row) if row else None)
