"""GraphQL types, inputs and payloads of webhooks: endpoints, their deliveries and attempts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import relay

from models import webhooks as domain
from schema.core.context import Info
from schema.core.errors import InvalidTransitionError, NotFoundError, ValidationError
from schema.core.nodes import scoped_nodes
from schema.core.pagination import CountedConnection, Direction, paginate

WebhookDeliveryState = domain.DeliveryState
strawberry.enum(
    WebhookDeliveryState,
    name="WebhookDeliveryState",
    description="PENDING until an attempt is answered with a 2xx (DELIVERED), or until its retries ran out or its "
    "endpoint was disabled (FAILED; `redeliverWebhook` sends it again).",
)


@strawberry.type(description="One try of a delivery.")
class WebhookAttempt:
    at: datetime = strawberry.field(description="When it was made.")
    status_code: int | None = strawberry.field(description="The HTTP status answered; null when no answer came.")
    duration_ms: int = strawberry.field(description="How long it took, in milliseconds.")
    response: str = strawberry.field(description="The first bytes of the answer (512 at most).")
    error: str | None = strawberry.field(
        description="Why no answer came: timed out, could not connect, refused address, name does not resolve."
    )


@strawberry.type(name="WebhookDelivery", description="An event sent to one endpoint, and its attempts.")
class WebhookDelivery(relay.Node):
    id: relay.NodeID[str]
    event_id: str = strawberry.field(
        description="The event's `webhook-id` header: the same for every attempt, redelivery and endpoint of the event."
    )
    event_type: str = strawberry.field(description="The event's type, e.g. `invoice.paid`.")
    payload: str = strawberry.field(description="The JSON body sent, exactly as signed.")
    state: WebhookDeliveryState = strawberry.field(description="Where it stands.")
    attempts: int = strawberry.field(description="Attempts made since it was queued (or redelivered).")
    next_attempt_at: datetime | None = strawberry.field(description="When the next attempt is due; null once settled.")
    last_status: int | None = strawberry.field(description="The status of the last answer.")
    delivered_at: datetime | None = strawberry.field(description="When an endpoint answered it with a 2xx.")
    created_at: datetime = strawberry.field(description="When the event happened (its change was committed).")
    model: strawberry.Private[Any]

    @classmethod
    def from_model(cls, row: domain.WebhookDelivery) -> WebhookDelivery:
        return cls(
            id=str(row.id),
            event_id=row.event.message_id,
            event_type=row.event.type,
            payload=row.event.payload,
            state=row.state,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            last_status=row.last_status,
            delivered_at=row.delivered_at,
            created_at=row.created_at,
            model=row,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False) -> list[Any]:
        return await scoped_nodes(
            cls, info, node_ids, required, lambda principal: domain.visible_deliveries(principal).select_related("event")
        )

    @strawberry.field(description="Every attempt, oldest first: time, status, duration, first bytes of the answer.")
    async def attempt_log(self, info: Info) -> list[WebhookAttempt]:
        rows = await domain.WebhookAttempt.filter(delivery_id=self.model.id).order_by("at", "id")
        return [
            WebhookAttempt(at=r.at, status_code=r.status_code, duration_ms=r.duration_ms, response=r.response, error=r.error) for r in rows
        ]


@strawberry.type(description="A page of webhook deliveries.")
class WebhookDeliveryConnection(CountedConnection[WebhookDelivery]):
    pass


@strawberry.enum(description="What webhook deliveries can be sorted by.")
class WebhookDeliveryOrderField(Enum):
    CREATED_AT = "created_at"


@strawberry.input(description="Sort order of webhook deliveries.")
class WebhookDeliveryOrder:
    field: WebhookDeliveryOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.DESC, description="Direction.")


@strawberry.type(
    name="WebhookEndpoint",
    description="A URL that receives the organization's events it subscribed "
    "to, each signed per the Standard Webhooks specification with the endpoint's secret (never shown again "
    "after its creation or rotation).",
)
class WebhookEndpoint(relay.Node):
    id: relay.NodeID[str]
    url: str = strawberry.field(description="Where events are posted (https://).")
    description: str = strawberry.field(description="What it is for.")
    events: list[str] = strawberry.field(description="The event types it receives (see `webhookEventTypes`).")
    enabled: bool = strawberry.field(description="Whether events are sent to it.")
    disabled_at: datetime | None = strawberry.field(description="When it was disabled; null while enabled.")
    disabled_reason: str | None = strawberry.field(
        description="Why it was disabled by the server (every attempt failed for days); null when enabled or disabled by hand."
    )
    failing_since: datetime | None = strawberry.field(
        description="Since when every attempt to it has failed; null when its last attempt succeeded."
    )
    previous_secret_valid_until: datetime | None = strawberry.field(
        description="After a rotation: until when the previous secret signs too (a second signature in the header)."
    )
    created_at: datetime = strawberry.field(description="When it was added.")
    model: strawberry.Private[Any]

    @classmethod
    def from_model(cls, row: domain.WebhookEndpoint) -> WebhookEndpoint:
        return cls(
            id=str(row.id),
            url=row.url,
            description=row.description,
            events=list(row.events),
            enabled=row.enabled,
            disabled_at=row.disabled_at,
            disabled_reason=row.disabled_reason,
            failing_since=row.failing_since,
            previous_secret_valid_until=row.previous_secret_until,
            created_at=row.created_at,
            model=row,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False) -> list[Any]:
        return await scoped_nodes(cls, info, node_ids, required, domain.visible_endpoints)

    @strawberry.field(description="Its deliveries, newest first by default.")
    async def deliveries(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        state: WebhookDeliveryState | None = None,
        order_by: WebhookDeliveryOrder | None = None,
    ) -> WebhookDeliveryConnection:
        query = domain.WebhookDelivery.filter(endpoint_id=self.model.id).select_related("event")
        if state is not None:
            query = query.filter(state=state)
        return await paginate(
            info,
            WebhookDeliveryConnection,
            query,
            WebhookDelivery.from_model,
            order_by or WebhookDeliveryOrder(field=WebhookDeliveryOrderField.CREATED_AT),
            first=first,
            after=after,
            last=last,
            before=before,
        )


@strawberry.type(description="A page of webhook endpoints.")
class WebhookEndpointConnection(CountedConnection[WebhookEndpoint]):
    pass


@strawberry.enum(description="What webhook endpoints can be sorted by.")
class WebhookEndpointOrderField(Enum):
    CREATED_AT = "created_at"
    URL = "url"


@strawberry.input(description="Sort order of webhook endpoints.")
class WebhookEndpointOrder:
    field: WebhookEndpointOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.ASC, description="Direction.")


@strawberry.type(description="An event type an endpoint can subscribe to.")
class WebhookEventType:
    name: str = strawberry.field(description="The type, as the body's `type` and `events` name it.")
    description: str = strawberry.field(description="What happened when it is sent.")


@strawberry.input(description="A new webhook endpoint.")
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="`https://` URL that receives the events (its host must resolve to public addresses).")
    events: list[str] = strawberry.field(description="The event types it receives (at least one).")
    description: str = strawberry.field(default="", description="What it is for (500 characters at most).")


@strawberry.input(description="Changes to a webhook endpoint; only the fields given change.")
class UpdateWebhookEndpointInput:
    url: str | None = strawberry.field(default=None, description="A new URL.")
    events: list[str] | None = strawberry.field(default=None, description="The event types it receives from now on.")
    description: str | None = strawberry.field(default=None, description="A new description.")
    enabled: bool | None = strawberry.field(
        default=None, description="false disables it (its pending deliveries fail); true enables it again."
    )


def endpoint_input(data: CreateWebhookEndpointInput | UpdateWebhookEndpointInput) -> domain.EndpointInput:
    return domain.EndpointInput(url=data.url, events=data.events, description=data.description, enabled=getattr(data, "enabled", None))


@strawberry.type(description="The endpoint was created; its secret is shown this once.")
class WebhookEndpointCreated:
    webhook_endpoint: WebhookEndpoint = strawberry.field(description="The endpoint.")
    secret: str = strawberry.field(description="The signing secret (`whsec_...`): keep it, it is never shown again.")


@strawberry.type(description="The webhook endpoint as saved.")
class WebhookEndpointSaved:
    webhook_endpoint: WebhookEndpoint = strawberry.field(description="The endpoint.")


@strawberry.type(description="The webhook endpoint was deleted, with its deliveries.")
class WebhookEndpointDeleted:
    deleted_id: strawberry.ID = strawberry.field(description="The ID the endpoint had.")


@strawberry.type(description="The endpoint has a new secret (shown this once); the previous one signs too for a day.")
class WebhookSecretRotated:
    webhook_endpoint: WebhookEndpoint = strawberry.field(description="The endpoint.")
    secret: str = strawberry.field(description="The new signing secret: keep it, it is never shown again.")


@strawberry.type(description="The delivery is queued: follow its state and `attemptLog`.")
class WebhookDeliveryQueued:
    delivery: WebhookDelivery = strawberry.field(description="The delivery.")


CreateWebhookEndpointPayload = Annotated[
    WebhookEndpointCreated | ValidationError,
    strawberry.union("CreateWebhookEndpointPayload", description="The result of `createWebhookEndpoint`."),
]
UpdateWebhookEndpointPayload = Annotated[
    WebhookEndpointSaved | ValidationError | NotFoundError,
    strawberry.union("UpdateWebhookEndpointPayload", description="The result of `updateWebhookEndpoint`."),
]
DeleteWebhookEndpointPayload = Annotated[
    WebhookEndpointDeleted | NotFoundError,
    strawberry.union("DeleteWebhookEndpointPayload", description="The result of `deleteWebhookEndpoint`."),
]
RotateWebhookSecretPayload = Annotated[
    WebhookSecretRotated | NotFoundError,
    strawberry.union("RotateWebhookSecretPayload", description="The result of `rotateWebhookSecret`."),
]
RedeliverWebhookPayload = Annotated[
    WebhookDeliveryQueued | NotFoundError,
    strawberry.union("RedeliverWebhookPayload", description="The result of `redeliverWebhook`."),
]
SendTestWebhookPayload = Annotated[
    WebhookDeliveryQueued | NotFoundError | InvalidTransitionError,
    strawberry.union("SendTestWebhookPayload", description="The result of `sendTestWebhook`."),
]
