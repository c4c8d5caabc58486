"""GraphQL types of the organization and its users."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import strawberry
from strawberry import relay

from models import Organization as OrganizationModel
from models.auth import visible_tokens, visible_users
from models.organizations import EmailAttachment as EmailAttachmentValue
from models.organizations import ExportDateFormat as ExportDateFormatValue
from schema.context import Info
from schema.nodes import scoped_nodes
from schema.permissions import Scope

if TYPE_CHECKING:
    from models import User as UserModel


# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
ExportDateFormat = ExportDateFormatValue
strawberry.enum(
    ExportDateFormat,
    description="How exports write dates: DAY_FIRST (DD/MM/YYYY, Xero's default), MONTH_FIRST "
    "(MM/DD/YYYY) or ISO (YYYY-MM-DD).",
)

EmailAttachment = EmailAttachmentValue
strawberry.enum(
    EmailAttachment,
    description="What the approval e-mail attaches: PDF (the printed invoice) or FACTURX (the same "
    "PDF as PDF/A-3 with its EN 16931 Cross Industry Invoice XML inside; needs e-invoicing).",
)


@strawberry.type(name="Organization", description="An MSP organization: the tenant boundary.")
class Organization(relay.Node):
    id: relay.NodeID[str]
    name: str = strawberry.field(description="Display name.")
    timezone: str = strawberry.field(description="IANA time zone used for dates and due dates.")
    invoice_prefix: str = strawberry.field(description="Prefix of invoice numbers (INV).")
    data_ingestion_delay: bool = strawberry.field(
        description="Close months on the 4th instead of the 1st (late AWS data)."
    )
    export_date_format: ExportDateFormat = strawberry.field(
        description="How exports (Xero, detailed CSV) write dates; see `updateExportSettings`."
    )
    einvoicing: bool = strawberry.field(
        description="Whether the organization issues e-invoices (EN 16931): generation then ends in "
        "ERROR, saying what is missing, for an invoice that could not be one; see `updateEInvoicingSettings`."
    )
    email_attachment: EmailAttachment = strawberry.field(
        description="What the approval e-mail attaches: the plain PDF or the Factur-X PDF."
    )

    @classmethod
    def from_model(cls, org: OrganizationModel) -> Organization:
        return cls(
            id=str(org.id), name=org.name, timezone=org.timezone,
            invoice_prefix=org.invoice_prefix, data_ingestion_delay=org.data_ingestion_delay,
            export_date_format=org.export_date_format, einvoicing=org.einvoicing,
            email_attachment=org.email_attachment,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(
            cls, info, node_ids, required,
            lambda principal: OrganizationModel.filter(id=principal.organization_id),
        )


@strawberry.type(name="User", description="A person who signs in: an MSP user or a customer.")
class User(relay.Node):
    id: relay.NodeID[str]
    email: str = strawberry.field(description="Sign-in e-mail, lower case.")
    name: str = strawberry.field(description="Display name.")
    scope: Scope = strawberry.field(description="What the user may do.")

    @classmethod
    def from_model(cls, user: UserModel) -> User:
        return cls(id=str(user.id), email=user.email, name=user.name, scope=user.scope)

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_users)


@strawberry.type(description="A token for the API: a login session or a script's API token.")
class ApiToken(relay.Node):
    id: relay.NodeID[str]
    name: str = strawberry.field(description="What the token is for.")
    kind: str = strawberry.field(description="SESSION (from login) or API (for scripts).")
    created_at: datetime = strawberry.field(description="When it was issued.")
    expires_at: datetime = strawberry.field(description="When it stops working.")
    revoked_at: datetime | None = strawberry.field(description="When it was revoked, if it was.")
    last_used_at: datetime | None = strawberry.field(
        description="Last use, recorded to within a few minutes."
    )

    @classmethod
    def from_model(cls, token) -> ApiToken:
        return cls(
            id=str(token.id), name=token.name, kind=token.kind.value, created_at=token.created_at,
            expires_at=token.expires_at, revoked_at=token.revoked_at, last_used_at=token.last_used_at,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_tokens)
