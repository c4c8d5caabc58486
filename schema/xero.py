"""GraphQL types of the Xero integration: the connection, the account mapping, and where each
document stands with Xero (the type `Invoice.xeroSync` and a credit note's answer). MSP users
only: customers see nothing of Xero."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry

from models import User as UserModel
from models import xero as domain
from schema.core.context import Info
from schema.core.errors import InvalidTransitionError, NotFoundError, ValidationError
from schema.line_kinds import LineKind

XeroConnectionStatus = domain.ConnectionStatus
strawberry.enum(
    XeroConnectionStatus,
    description="CONNECTED, or NEEDS_RECONNECT once Xero refused to renew the connection (revoked in "
    "Xero, or unused for 60 days): an owner connects again.",
)

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


@strawberry.type(description="The organization's connection to one Xero organisation.")
class XeroConnection:
    status: XeroConnectionStatus = strawberry.field(description="Whether it works.")
    status_message: str | None = strawberry.field(description="Why it needs reconnecting, when it does.")
    tenant_name: str = strawberry.field(description="The Xero organisation's name.")
    connected_at: datetime = strawberry.field(description="When it was (last) connected.")
    payments_checked_at: datetime | None = strawberry.field(description="When Xero's payments were last read.")
    connected_by_id: strawberry.Private[Any]

    @classmethod
    def from_model(cls, row: domain.XeroConnection) -> XeroConnection:
        return cls(
            status=row.status, status_message=row.status_message, tenant_name=row.tenant_name, connected_at=row.connected_at,
            payments_checked_at=row.payments_checked_at, connected_by_id=row.connected_by_id,
        )

    @strawberry.field(description="Who connected it (e-mail); null once that user is gone.")
    async def connected_by(self, info: Info) -> str | None:
        if self.connected_by_id is None:
            return None
        user = await info.context.loaders.by_id(UserModel).load(self.connected_by_id)
        return user.email if user else None


@strawberry.type(description="Where the lines of one kind, or of one charge or tax, go in Xero.")
class XeroAccountMapping:
    line_kind: LineKind = strawberry.field(description="The kind of line.")
    line_name: str = strawberry.field(description="The charge or tax as printed on the line; empty for every line of the kind.")
    account_code: str = strawberry.field(description="Xero account code.")
    tax_type: str = strawberry.field(description="Xero tax type (e.g. NONE, EXEMPTOUTPUT).")


@strawberry.type(description="How the organization's documents land in Xero.")
class XeroSettings:
    auto_push_at_rollover: bool = strawberry.field(
        description="Push every approved invoice not yet in Xero when a month rolls over (at the month's close)."
    )
    account_code: str = strawberry.field(description="Default sales account code of every line.")
    tax_type: str = strawberry.field(
        description="Default tax type of every line. Our taxes are lines of their own: choose one that adds no "
        "tax in Xero (NONE, or EXEMPTOUTPUT...) so that Xero totals what the customer was billed."
    )
    mappings: list[XeroAccountMapping] = strawberry.field(
        description="Exceptions to the defaults, by line kind or by charge or tax name (the name wins)."
    )

    @classmethod
    def from_models(cls, settings: domain.XeroSettings, mappings: list[domain.XeroAccountMapping]) -> XeroSettings:
        return cls(
            auto_push_at_rollover=settings.auto_push_at_rollover, account_code=settings.account_code,
            tax_type=settings.tax_type,
            mappings=[
                XeroAccountMapping(line_kind=m.line_kind, line_name=m.line_name, account_code=m.account_code, tax_type=m.tax_type)
                for m in mappings
            ],
        )


@strawberry.type(description="The organization's Xero integration.")
class XeroIntegration:
    available: bool = strawberry.field(description="Whether this server is set up to connect to Xero (XERO_CLIENT_ID).")
    connection: XeroConnection | None = strawberry.field(description="The connection; null when not connected.")
    settings: XeroSettings = strawberry.field(description="Account mapping and automatic pushes.")


@strawberry.type(description="Send the owner's browser to `authorizeUrl` to choose the Xero organisation.")
class XeroAuthorizationStarted:
    authorize_url: str = strawberry.field(
        description="Xero's authorization page, with this request's state and PKCE challenge; Xero sends the "
        "browser back to /xero/callback, which finishes the connection."
    )
    expires_at: datetime = strawberry.field(description="The authorization must be finished by then.")


@strawberry.type(description="Xero is connected.")
class XeroConnected:
    integration: XeroIntegration = strawberry.field(description="The integration with its new connection.")


@strawberry.type(description="Xero was disconnected; its tokens are revoked at Xero in the background.")
class XeroDisconnected:
    integration: XeroIntegration = strawberry.field(description="The integration, without a connection.")


@strawberry.type(description="The Xero settings were saved.")
class XeroSettingsUpdated:
    settings: XeroSettings = strawberry.field(description="The settings now.")


@strawberry.input(description="Where the lines of one kind, or of one charge or tax, go in Xero.")
class XeroAccountMappingInput:
    line_kind: LineKind = strawberry.field(description="The kind of line.")
    line_name: str = strawberry.field(default="", description="A charge or tax as printed on its lines; empty for the whole kind.")
    account_code: str = strawberry.field(description="Xero account code (1 to 32 characters).")
    tax_type: str = strawberry.field(description="Xero tax type (1 to 64 characters).")


@strawberry.input(description="Xero settings to change; what is left out stays.")
class UpdateXeroSettingsInput:
    auto_push_at_rollover: bool | None = strawberry.field(default=None, description="Push approved invoices at rollover.")
    account_code: str | None = strawberry.field(default=None, description="Default account code (1 to 32 characters).")
    tax_type: str | None = strawberry.field(default=None, description="Default tax type (1 to 64 characters).")
    mappings: list[XeroAccountMappingInput] | None = strawberry.field(
        default=None, description="Replaces every exception to the defaults (at most 100)."
    )


ConnectXeroPayload = Annotated[
    XeroAuthorizationStarted | InvalidTransitionError,
    strawberry.union("ConnectXeroPayload", description="The result of `connectXero`."),
]
CompleteXeroConnectionPayload = Annotated[
    XeroConnected | ValidationError | NotFoundError,
    strawberry.union("CompleteXeroConnectionPayload", description="The result of `completeXeroConnection`."),
]
DisconnectXeroPayload = Annotated[
    XeroDisconnected | NotFoundError,
    strawberry.union("DisconnectXeroPayload", description="The result of `disconnectXero`."),
]
UpdateXeroSettingsPayload = Annotated[
    XeroSettingsUpdated | ValidationError,
    strawberry.union("UpdateXeroSettingsPayload", description="The result of `updateXeroSettings`."),
]
