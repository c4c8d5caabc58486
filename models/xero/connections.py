"""Connecting an organization to Xero (OAuth 2.0 authorization code with PKCE), keeping its
tokens fresh, and disconnecting it. The calls to Xero themselves are made by the caller
(`infra.xero`), which hands them in: this module decides and records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from tortoise.transactions import in_transaction

from infra.settings import Settings
from models.audit import AuditEntity, record_change, snapshot
from models.base import Scope
from models.errors import ErrorCode, InvalidTransition, NotFound, ValidationFailed
from models.outbox import Entity, Transition, record
from models.xero.tables import ConnectionStatus, XeroAuthorization, XeroConnection
from models.xero.tokens import (
    TokenSet,
    browser_binding,
    code_challenge,
    new_code_verifier,
    new_state,
    seal,
    seal_tokens,
    state_hash,
    unseal,
    unseal_tokens,
)

# Refreshed this long before it expires (Xero's access tokens last 30 minutes), so that a
# push never starts with a token that lapses on the way.
REFRESH_MARGIN = timedelta(minutes=5)


# The cookie that binds an authorization to the browser that started it (OAuth's login CSRF):
# the callback takes no state without it.
BROWSER_COOKIE = "xero_authorization"


@dataclass(frozen=True)
class BrowserCookie:
    """Set on the answer that starts an authorization: HttpOnly, SameSite=Lax (Xero's
    redirect back is a top-level GET, which carries it), Secure over https, sent to the
    callback's path alone, and gone when the authorization expires."""

    name: str
    value: str
    path: str
    max_age: int
    secure: bool


@dataclass(frozen=True)
class AuthorizationStarted:
    url: str
    expires_at: datetime
    cookie: BrowserCookie


@dataclass(frozen=True)
class PendingAuthorization:
    """A state Xero handed back, matched: who started it, and the PKCE verifier."""

    organization_id: Any
    user_id: Any
    code_verifier: str


@dataclass(frozen=True)
class Tenant:
    """The Xero organisation chosen, as the connections endpoint describes it."""

    tenant_id: str
    name: str
    connection_ref: str
    short_code: str = ""


def configured(settings: Settings) -> None:
    if not settings.xero_client_id:
        raise InvalidTransition(
            "Xero is not set up on this server (XERO_CLIENT_ID).", code=ErrorCode.XERO_NOT_CONNECTED
        )


async def start_authorization(principal, settings: Settings) -> AuthorizationStarted:
    """A new authorization for the principal's organization: the URL to send the owner to
    (with a fresh state and the S256 challenge of a fresh code verifier), valid a few minutes."""
    configured(settings)
    state, verifier = new_state(), new_code_verifier()
    now = datetime.now(UTC)
    expires_at = now + timedelta(minutes=settings.xero_authorization_minutes)
    async with in_transaction() as conn:
        await XeroAuthorization.filter(expires_at__lt=now).using_db(conn).delete()
        await XeroAuthorization.create(
            organization_id=principal.organization_id, user_id=principal.user.id, state_hash=state_hash(state),
            code_verifier=seal(settings, {"verifier": verifier}), expires_at=expires_at, using_db=conn,
        )
    query = urlencode({
        "response_type": "code", "client_id": settings.xero_client_id, "redirect_uri": settings.xero_callback_url,
        "scope": settings.xero_scopes, "state": state, "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256",
    })
    callback = urlsplit(settings.xero_callback_url)
    cookie = BrowserCookie(
        name=BROWSER_COOKIE, value=browser_binding(settings, state), path=callback.path or "/",
        max_age=settings.xero_authorization_minutes * 60, secure=urlsplit(settings.public_url).scheme == "https",
    )
    return AuthorizationStarted(url=f"{settings.xero_authorize_url}?{query}", expires_at=expires_at, cookie=cookie)


async def take_authorization(settings: Settings, state: str, user_id: Any = None) -> PendingAuthorization:
    """The authorization `state` names, deleted so that it serves once. An unknown, used or
    expired state, one whose owner is no longer an active owner, or (given `user_id`) one
    another user started, is refused alike."""
    async with in_transaction() as conn:
        found = await XeroAuthorization.filter(state_hash=state_hash(state or "")).using_db(conn).select_for_update().first()
        if found is not None:
            await XeroAuthorization.filter(id=found.id).using_db(conn).delete()
    verifier = unseal(settings, found.code_verifier) if found else None
    user = await found.user if found is not None and verifier is not None and found.expires_at > datetime.now(UTC) else None
    if (found is None or verifier is None or user is None or not user.is_active or user.scope != Scope.OWNER
            or user.organization_id != found.organization_id or (user_id is not None and user.id != user_id)):
        raise NotFound("This Xero authorization is unknown or has expired: connect again.", field="state")
    return PendingAuthorization(found.organization_id, found.user_id, verifier["verifier"])


def choose_tenant(connections: list[dict], event_id: str | None) -> dict:
    """The organisation the owner just authorized: the connection made by this authorization
    (`authEventId`, the access token's `authentication_event_id`), never merely the newest of
    those the user may reach (another one may have been made meanwhile)."""
    organisations = [
        c for c in connections
        if c.get("tenantType", "ORGANISATION") == "ORGANISATION" and event_id and c.get("authEventId") == event_id
    ]
    if not organisations:
        raise ValidationFailed("Xero answered no organisation for this authorization: connect again.", field="code")
    return max(organisations, key=lambda c: str(c.get("createdDateUtc") or ""))


async def save_connection(
    settings: Settings, pending: PendingAuthorization, tokens: TokenSet, tenant: Tenant
) -> XeroConnection:
    """Keep the organization's connection (replacing an earlier one)."""
    values = {
        "status": ConnectionStatus.CONNECTED, "status_message": None, "tenant_id": tenant.tenant_id,
        "tenant_name": tenant.name, "short_code": tenant.short_code, "connection_ref": tenant.connection_ref,
        "tokens": seal_tokens(settings, tokens), "access_expires_at": tokens.expires,
        "connected_by_id": pending.user_id, "connected_at": datetime.now(UTC),
    }
    async with in_transaction() as conn:
        existing = await XeroConnection.filter(organization_id=pending.organization_id).using_db(conn).select_for_update().first()
        if existing is None:
            saved = await XeroConnection.create(organization_id=pending.organization_id, using_db=conn, **values)
        else:
            if existing.tenant_id != tenant.tenant_id:
                values["payments_checked_at"] = None
            await XeroConnection.filter(id=existing.id).using_db(conn).update(**values, updated_at=datetime.now(UTC))
            saved = await XeroConnection.filter(id=existing.id).using_db(conn).get()
        await record_change(conn, AuditEntity.XERO_CONNECTION, saved.id, saved.organization_id, snapshot(existing), snapshot(saved))
    return saved


async def usable_connection(organization_id: Any) -> XeroConnection:
    connection = await XeroConnection.get_or_none(organization_id=organization_id)
    if connection is None or connection.status != ConnectionStatus.CONNECTED:
        raise InvalidTransition(
            "Xero is not connected, or its connection must be renewed: connect Xero first.",
            code=ErrorCode.XERO_NOT_CONNECTED,
        )
    return connection


class ConnectionLost(Exception):
    """Xero refused the refresh token: the connection needs an owner to connect again."""


async def fresh_tokens(
    settings: Settings, organization_id: Any, refresh: Callable[[TokenSet], Awaitable[TokenSet]], *, force: bool = False,
) -> tuple[XeroConnection, TokenSet]:
    """The connection and an access token valid for a while, refreshed first when it is about
    to expire (or `force`d, after Xero refused it). The refresh runs under the connection's
    row lock: Xero rotates refresh tokens, so two workers must not spend the same one."""
    async with in_transaction() as conn:
        connection = await XeroConnection.filter(organization_id=organization_id).using_db(conn).select_for_update().first()
        if connection is None or connection.status != ConnectionStatus.CONNECTED:
            raise ConnectionLost("Xero is not connected: connect Xero first.")
        tokens = unseal_tokens(settings, connection.tokens)
        if tokens is None:
            raise ConnectionLost("The stored Xero tokens cannot be read with this server's key: connect Xero again.")
        if force or tokens.expires - REFRESH_MARGIN <= datetime.now(UTC):
            tokens = await refresh(tokens)
            connection.tokens, connection.access_expires_at = seal_tokens(settings, tokens), tokens.expires
            await connection.save(using_db=conn, update_fields=["tokens", "access_expires_at", "updated_at"])
    return connection, tokens


async def connection_lost(organization_id: Any, message: str) -> None:
    await XeroConnection.filter(organization_id=organization_id).update(
        status=ConnectionStatus.NEEDS_RECONNECT, status_message=message, updated_at=datetime.now(UTC)
    )


async def disconnect(principal) -> None:
    """Forget the organization's connection; its tokens (sealed) are revoked at Xero once this committed."""
    async with in_transaction() as conn:
        connection = await XeroConnection.filter(
            organization_id=principal.organization_id).using_db(conn).select_for_update().first()
        if connection is None:
            raise NotFound("Xero is not connected.")
        await XeroConnection.filter(id=connection.id).using_db(conn).delete()
        await record_change(conn, AuditEntity.XERO_CONNECTION, connection.id, connection.organization_id, snapshot(connection), None)
    record(Entity.XERO_CONNECTION, Transition.DISCONNECTED, [connection.tokens] if connection.tokens else [])


async def organizations_of_tenants(tenant_ids: list[str]) -> list[Any]:
    """The organizations connected to these Xero organisations (a webhook names tenants)."""
    return await XeroConnection.filter(
        tenant_id__in=tenant_ids, status=ConnectionStatus.CONNECTED).values_list("organization_id", flat=True)


def visible_connection(principal):
    """The organization's connection (MSP users only: the schema's scopes say who asks)."""
    return XeroConnection.filter(organization_id=principal.organization_id)
