"""Xero: the integration as MSP users read it; connect, disconnect, settings and pushes, by owners."""

from __future__ import annotations

import strawberry

from jobs.xero import complete_connection
from models.invoices import LineKind
from models.xero import connections, sync
from models.xero import settings as xero_settings
from resolvers.invoices import _bulk
from schema.context import Info
from schema.invoices import BulkInvoicePayload
from schema.mutations import mutation
from schema.permissions import MSP_USERS, OWNERS, requires
from schema.xero import (
    CompleteXeroConnectionPayload,
    ConnectXeroPayload,
    DisconnectXeroPayload,
    UpdateXeroSettingsInput,
    UpdateXeroSettingsPayload,
    XeroAuthorizationStarted,
    XeroConnected,
    XeroConnection,
    XeroDisconnected,
    XeroIntegration,
    XeroSettings,
    XeroSettingsUpdated,
)


async def _integration(info: Info) -> XeroIntegration:
    principal = info.context.authenticated()
    connection = await connections.visible_connection(principal).first()
    return XeroIntegration(
        available=bool(info.context.settings.xero_client_id),
        connection=XeroConnection.from_model(connection) if connection else None,
        settings=XeroSettings.from_models(
            await xero_settings.settings_of(principal.organization_id),
            await xero_settings.mappings_of(principal.organization_id),
        ),
    )


@strawberry.type
class Query:
    @strawberry.field(description="The organization's Xero integration: connection and settings.", extensions=requires(*MSP_USERS))
    async def xero(self, info: Info) -> XeroIntegration:
        return await _integration(info)


@strawberry.type
class Mutation:
    @mutation(
        description="Start connecting the organization to Xero (OAuth 2.0, authorization code with PKCE): "
        "send the browser to the answer's `authorizeUrl`; Xero brings it back to /xero/callback, which "
        "finishes within the answer's `expiresAt`. Ask over HTTP from the browser that goes to Xero: the "
        "answer sets an HttpOnly cookie that /xero/callback requires (a browser without it, one that was "
        "sent the link, changes nothing). Connecting again replaces the connection.",
        scopes=OWNERS,
    )
    async def connect_xero(self, info: Info) -> ConnectXeroPayload:
        started = await connections.start_authorization(info.context.principal, info.context.settings)
        cookie = started.cookie
        if info.context.response is not None:
            info.context.response.set_cookie(
                cookie.name, cookie.value, max_age=cookie.max_age, path=cookie.path, secure=cookie.secure,
                httponly=True, samesite="lax",
            )
        return XeroAuthorizationStarted(authorize_url=started.url, expires_at=started.expires_at)

    @mutation(
        description="Finish connecting Xero with the `code` and `state` Xero sent back (when XERO_RETURN_URL "
        "sends them to the console): only the owner who started the connection may finish it.",
        scopes=OWNERS,
    )
    async def complete_xero_connection(self, info: Info, code: str, state: str) -> CompleteXeroConnectionPayload:
        principal = info.context.authenticated()
        await complete_connection(info.context.settings, code, state, principal.user.id)
        return XeroConnected(integration=await _integration(info))

    @mutation(description="Disconnect Xero: its tokens are forgotten here and revoked at Xero.", scopes=OWNERS)
    async def disconnect_xero(self, info: Info) -> DisconnectXeroPayload:
        await connections.disconnect(info.context.principal)
        return XeroDisconnected(integration=await _integration(info))

    @mutation(
        description="Set how documents land in Xero (account codes and tax types, by default, per line kind "
        "or per charge and tax) and whether months push themselves at rollover.",
        scopes=OWNERS,
    )
    async def update_xero_settings(self, info: Info, input: UpdateXeroSettingsInput) -> UpdateXeroSettingsPayload:
        mappings = None if input.mappings is None else [
            xero_settings.MappingInput(line_kind=LineKind(m.line_kind), line_name=m.line_name,
                                       account_code=m.account_code, tax_type=m.tax_type)
            for m in input.mappings
        ]
        saved = await xero_settings.update_settings(info.context.principal, xero_settings.SettingsInput(
            auto_push_at_rollover=input.auto_push_at_rollover, account_code=input.account_code, tax_type=input.tax_type,
            mappings=mappings,
        ))
        return XeroSettingsUpdated(settings=XeroSettings.from_models(saved, await xero_settings.mappings_of(saved.organization_id)))

    @mutation(
        description="Push approved invoices to Xero now, each in the background (see `Invoice.xeroSync`). "
        "Pushing again changes nothing in Xero: an invoice it has under our number is linked, not created "
        "twice. A voided invoice Xero has is voided there.",
        scopes=OWNERS,
    )
    async def push_invoices_to_xero(self, info: Info, ids: list[strawberry.ID]) -> BulkInvoicePayload:
        async def push(principal, invoice_ids):  # outcomes read as an invoice action's
            return await sync.push_invoices(principal, invoice_ids)

        return await _bulk(info, ids, push)
