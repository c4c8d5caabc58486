"""Xero: the integration as MSP users read it; connect, disconnect, settings and pushes, by owners;
and the two requests Xero itself sends to the app (the authorization's end, the webhook), which
the app's routes hand to `complete_connection` and `webhook_received`."""

from __future__ import annotations

from typing import Any

import strawberry

from infra import xero
from infra.settings import Settings
from jobs.effects import following
from models.errors import ValidationFailed
from models.invoices import LineKind
from models.outbox import Entity, Transition, record
from models.xero import connections, sync
from models.xero import settings as xero_settings
from models.xero.tables import XeroConnection as XeroConnectionModel
from models.xero.tokens import auth_event_id
from resolvers.invoices import _bulk
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.permissions import MSP_USERS, OWNERS, requires
from schema.invoices import BulkInvoicePayload
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


async def complete_connection(settings: Settings, code: str, state: str, user_id: Any = None) -> XeroConnectionModel:
    """The end of the authorization: the code exchanged (with the PKCE verifier) for tokens,
    the organisation this authorization connected chosen through the connections endpoint
    (by its `authEventId`), and the connection kept. With
    `user_id`, only the owner who started it may finish it."""
    pending = await connections.take_authorization(settings, state, user_id)
    if not code:
        raise ValidationFailed("Xero sent no authorization code.", field="code")
    try:
        tokens = await xero.exchange_code(settings, code, pending.code_verifier)
        event_id = auth_event_id(tokens.access_token)
        tenant = connections.choose_tenant(await xero.connections(settings, tokens.access_token, event_id), event_id)
        short_code = await xero.short_code(settings, tokens.access_token, tenant["tenantId"])
    except xero.XeroError as exc:
        raise ValidationFailed(f"Xero did not complete the connection: {exc.message}", field="code") from exc
    return await connections.save_connection(settings, pending, tokens, connections.Tenant(
        tenant_id=tenant["tenantId"], name=tenant.get("tenantName") or "", connection_ref=tenant.get("id") or "",
        short_code=short_code,
    ))


async def webhook_received(redis: Any, payload: dict) -> list[Any]:
    """A signed webhook's events: the organizations whose Xero invoices changed get their
    payments read. Answers those organizations."""
    events = payload.get("events") if isinstance(payload, dict) else None
    tenants = list({
        str(event.get("tenantId")) for event in events or []
        if isinstance(event, dict) and event.get("eventCategory") == "INVOICE" and event.get("tenantId")
    })
    async with following(redis):
        organization_ids = await connections.organizations_of_tenants(tenants) if tenants else []
        record(Entity.XERO_CONNECTION, Transition.INVOICES_CHANGED, organization_ids)
    return organization_ids


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
