"""E-invoicing: the organization's settings."""

from __future__ import annotations

import strawberry

from models import organizations
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.permissions import OWNERS
from schema.einvoicing import EInvoicingSettingsUpdated, UpdateEInvoicingSettingsPayload
from schema.organizations import EmailAttachment, Organization


@strawberry.type
class Mutation:
    @mutation(
        description="Choose e-invoicing (EN 16931: generation refuses an invoice that lacks what it "
        "needs, naming what) and what approval e-mails attach (PDF, or FACTURX, which needs "
        "e-invoicing); an omitted argument keeps its setting, and turning e-invoicing off alone "
        "goes back to the plain PDF.",
        scopes=OWNERS,
    )
    async def update_e_invoicing_settings(
        self, info: Info, einvoicing: bool | None = None, email_attachment: EmailAttachment | None = None,
    ) -> UpdateEInvoicingSettingsPayload:
        organization = await organizations.set_einvoicing(info.context.principal, einvoicing, email_attachment)
        return EInvoicingSettingsUpdated(organization=Organization.from_model(organization))
