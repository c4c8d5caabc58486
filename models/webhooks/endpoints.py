"""An organization's webhook endpoints: created with a secret shown once, changed, disabled
and enabled, deleted, their secret rotated (the previous one keeps signing for a day); and
the secrets, sealed at rest, unsealed only to sign (`jobs.webhooks`)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from tortoise.transactions import in_transaction

from infra.settings import Settings
from models import sealing
from models.audit import AuditEntity, record_change, snapshot
from models.errors import InvalidTransition, NotFound, ValidationFailed
from models.webhooks.events import EVENT_TYPES, TEST_EVENT, Event, node_id
from models.webhooks.tables import DeliveryState, WebhookDelivery, WebhookEndpoint, visible_deliveries, visible_endpoints

_SEAL_LABEL = b"invoicing webhook signing secrets"
# How long the previous secret keeps signing after a rotation.
ROTATION_OVERLAP = timedelta(days=1)
MAX_ENDPOINTS = 20
# `check_url(url)` refuses a URL whose host is, or resolves to, an address not to be reached.
UrlCheck = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class EndpointInput:
    """What a create or update gives (None: unchanged on update)."""

    url: str | None = None
    events: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None


def _sealer(settings: Settings):
    return sealing.fernet(settings, _SEAL_LABEL)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _sealed(settings: Settings, secret: str) -> str:
    return sealing.seal(_sealer(settings), {"secret": secret})


def signing_secrets(settings: Settings, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign its deliveries now: its own, and the previous one within a day of
    a rotation. None when they cannot be unsealed (the server's key changed: rotate it)."""
    sealed = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_until and endpoint.previous_secret_until > now:
        sealed.append(endpoint.previous_secret)
    found = [sealing.unseal(_sealer(settings), value) for value in sealed]
    return [value["secret"] for value in found if value and value.get("secret")]


def check_url(settings: Settings, url: str) -> str:
    """The URL as kept: `https://` (or `http://` where WEBHOOK_ALLOW_HTTP allows it), a host,
    no credentials in it, at most 2048 characters."""
    url = url.strip()
    if not url or len(url) > 2048:
        raise ValidationFailed("Give the endpoint's URL (at most 2048 characters).", field="url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError:
        raise ValidationFailed("This is not a URL.", field="url") from None
    schemes = ("https", "http") if settings.webhook_allow_http else ("https",)
    if parts.scheme not in schemes:
        raise ValidationFailed("The endpoint's URL must start with https://.", field="url")
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        raise ValidationFailed("Give a URL with a host, and no credentials or fragment in it.", field="url")
    return url


def _events(events: list[str]) -> list[str]:
    unknown = [name for name in events if name not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed(f"{unknown[0]} is not an event type.", field="events")
    if not events:
        raise ValidationFailed("Choose at least one event type.", field="events")
    return sorted(set(events))


def _description(text: str) -> str:
    if len(text) > 500:
        raise ValidationFailed("A description holds at most 500 characters.", field="description")
    return text.strip()


async def create_endpoint(principal, settings: Settings, data: EndpointInput, check: UrlCheck) -> tuple[WebhookEndpoint, str]:
    """A new endpoint of the principal's organization, and its secret (shown this once)."""
    if data.url is None or data.events is None:
        raise ValidationFailed("This is required.", field="url" if data.url is None else "events")
    url, events = check_url(settings, data.url), _events(data.events)
    description = _description(data.description or "")
    await check(url)
    if await WebhookEndpoint.filter(organization_id=principal.organization_id).count() >= MAX_ENDPOINTS:
        raise ValidationFailed(f"An organization has at most {MAX_ENDPOINTS} endpoints.", field="url")
    secret = new_secret()
    async with in_transaction() as connection:
        endpoint = await WebhookEndpoint.create(
            organization_id=principal.organization_id,
            url=url,
            events=events,
            description=description,
            secret=_sealed(settings, secret),
            using_db=connection,
        )
        await _audited(connection, endpoint, None, snapshot(endpoint))
    return endpoint, secret


async def update_endpoint(principal, settings: Settings, endpoint_id: Any, data: EndpointInput, check: UrlCheck) -> WebhookEndpoint:
    """Change an endpoint; only what is given changes. Enabling it again ends its failing streak."""
    endpoint = await owned_endpoint(principal, endpoint_id)
    columns: dict[str, Any] = {}
    if data.url is not None:
        columns["url"] = check_url(settings, data.url)
        await check(columns["url"])
    if data.events is not None:
        columns["events"] = _events(data.events)
    if data.description is not None:
        columns["description"] = _description(data.description)
    if data.enabled is not None and data.enabled != endpoint.enabled:
        columns.update(
            enabled=data.enabled, failing_since=None, disabled_reason=None, disabled_at=None if data.enabled else datetime.now(UTC)
        )
    if columns:
        async with in_transaction() as connection:
            await WebhookEndpoint.filter(id=endpoint.id).using_db(connection).update(**columns, updated_at=datetime.now(UTC))
            if data.enabled is False:
                await WebhookDelivery.filter(endpoint_id=endpoint.id, state=DeliveryState.PENDING).using_db(connection).update(
                    state=DeliveryState.FAILED, next_attempt_at=None
                )
            changed = await WebhookEndpoint.get(id=endpoint.id, using_db=connection)
            await _audited(connection, endpoint, snapshot(endpoint), snapshot(changed))
    return await WebhookEndpoint.get(id=endpoint.id)


async def rotate_secret(principal, settings: Settings, endpoint_id: Any, now: datetime) -> tuple[WebhookEndpoint, str]:
    """A new secret (shown this once); the current one keeps signing beside it for a day."""
    async with in_transaction() as connection:
        endpoint = await visible_endpoints(principal).filter(id=endpoint_id).select_for_update().using_db(connection).first()
        if endpoint is None:
            raise NotFound("The webhook endpoint does not exist.", field="id")
        secret = new_secret()
        await (
            WebhookEndpoint.filter(id=endpoint.id)
            .using_db(connection)
            .update(
                secret=_sealed(settings, secret),
                previous_secret=endpoint.secret,
                previous_secret_until=now + ROTATION_OVERLAP,
                updated_at=now,
            )
        )
        rotated = await WebhookEndpoint.get(id=endpoint.id, using_db=connection)
        await _audited(connection, endpoint, snapshot(endpoint), snapshot(rotated))
    return await WebhookEndpoint.get(id=endpoint.id), secret


async def delete_endpoint(principal, endpoint_id: Any) -> None:
    """Delete an endpoint with its deliveries and their attempts."""
    endpoint = await owned_endpoint(principal, endpoint_id)
    async with in_transaction() as connection:
        await endpoint.delete(using_db=connection)
        await _audited(connection, endpoint, snapshot(endpoint), None)


async def _audited(connection: Any, endpoint: WebhookEndpoint, before: dict | None, after: dict | None) -> None:
    """The audit log's entry of an endpoint's change (its secrets masked), in the change's transaction."""
    await record_change(connection, AuditEntity.WEBHOOK_ENDPOINT, endpoint.id, endpoint.organization_id, before, after)


async def owned_endpoint(principal, endpoint_id: Any, field: str = "id") -> WebhookEndpoint:
    endpoint = await visible_endpoints(principal).filter(id=endpoint_id).first() if endpoint_id else None
    if endpoint is None:
        raise NotFound("The webhook endpoint does not exist.", field=field)
    return endpoint


async def owned_delivery(principal, delivery_id: Any) -> WebhookDelivery:
    delivery = await visible_deliveries(principal).filter(id=delivery_id).select_related("endpoint").first() if delivery_id else None
    if delivery is None:
        raise NotFound("The webhook delivery does not exist.", field="deliveryId")
    return delivery


def ready_for_test(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise InvalidTransition("The endpoint is disabled: enable it first.", field="endpointId")


def test_event(endpoint: WebhookEndpoint) -> Event:
    """The event `sendTestWebhook` sends: which endpoint it was sent to."""
    return Event(
        endpoint.organization_id,
        TEST_EVENT,
        {"webhookEndpoint": {"id": node_id("WebhookEndpoint", endpoint.id), "url": endpoint.url, "description": endpoint.description}},
    )
