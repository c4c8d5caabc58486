"""MSP organizations: the tenant boundary that nothing crosses."""

from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model

from models.base import TimestampMixin, enum_check
from models.errors import ValidationFailed


class ExportDateFormat(str, Enum):
    DAY_FIRST = "DD/MM/YYYY"
    MONTH_FIRST = "MM/DD/YYYY"
    ISO = "YYYY-MM-DD"


class EmailAttachment(str, Enum):
    """What the approval e-mail attaches: the plain PDF, or the Factur-X PDF (the same PDF,
    PDF/A-3 with its EN 16931 XML inside)."""

    PDF = "PDF"
    FACTURX = "FACTURX"


class Organization(TimestampMixin, Model):
    id = fields.UUIDField(primary_key=True)
    name = fields.CharField(max_length=255)
    timezone = fields.CharField(max_length=64, default="UTC")
    invoice_prefix = fields.CharField(max_length=16, default="INV")
    # AWS data can arrive up to three days late: close the month on the 4th, not the 1st.
    data_ingestion_delay = fields.BooleanField(default=False)
    export_date_format = fields.CharEnumField(
        ExportDateFormat, max_length=10, default=ExportDateFormat.DAY_FIRST
    )
    # E-invoicing chosen: generation refuses (ERROR, with what is missing) an invoice that
    # lacks what EN 16931 needs, rather than approve one that cannot be sent electronically.
    einvoicing = fields.BooleanField(default=False, db_default=False)
    email_attachment = fields.CharEnumField(
        EmailAttachment, max_length=16, default=EmailAttachment.PDF, db_default=EmailAttachment.PDF
    )

    class Meta:
        table = "organizations"
        constraints = (
            CheckConstraint(check="invoice_prefix ~ '^[A-Z0-9]{1,16}$'", name="organizations_prefix_valid"),
            CheckConstraint(check="btrim(name) <> ''", name="organizations_name_present"),
            enum_check("organizations", "export_date_format", ExportDateFormat),
            enum_check("organizations", "email_attachment", EmailAttachment),
            CheckConstraint(
                check="email_attachment = 'PDF' OR einvoicing", name="organizations_facturx_needs_einvoicing"
            ),
        )


async def set_einvoicing(principal, einvoicing: bool | None, email_attachment: EmailAttachment | None) -> Organization:
    """Choose e-invoicing (generation then refuses an invoice that lacks what EN 16931 needs)
    and what the approval e-mail attaches; a None keeps the setting. The Factur-X attachment
    needs e-invoicing: turning it off goes back to the plain PDF."""
    organization = await Organization.get(id=principal.organization_id)
    wanted = organization.einvoicing if einvoicing is None else einvoicing
    attachment = email_attachment or organization.email_attachment
    if email_attachment is None and not wanted:
        attachment = EmailAttachment.PDF
    if attachment == EmailAttachment.FACTURX and not wanted:
        raise ValidationFailed(
            "The Factur-X attachment needs e-invoicing: set einvoicing to true as well.", field="emailAttachment"
        )
    await Organization.filter(id=organization.id).update(einvoicing=wanted, email_attachment=attachment)
    return await Organization.get(id=organization.id)
