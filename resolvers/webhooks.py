"""Webhooks: the endpoints and the event types, create/update/delete, secret rotation, a test
event and a redelivery."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import strawberry

from infra import webhooks as client
from models import webhooks
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid_or_none
from schema.core.pagination import Direction, connection_field
from schema.core.permissions import MSP_USERS, OWNERS, requires
from schema.webhooks import (
    CreateWebhookEndpointInput,
    CreateWebhookEndpointPayload,
    DeleteWebhookEndpointPayload,
    RedeliverWebhookPayload,
    RotateWebhookSecretPayload,
    SendTestWebhookPayload,
    UpdateWebhookEndpointInput,
    UpdateWebhookEndpointPayload,
    WebhookDelivery,
    WebhookDeliveryQueued,
    WebhookEndpoint,
    WebhookEndpointConnection,
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
    WebhookEndpointOrder,
    WebhookEndpointOrderField,
    WebhookEndpointSaved,
    WebhookEventType,
    WebhookSecretRotated,
    endpoint_input,
)

TYPE_NAME = "WebhookEndpoint"


@strawberry.type
class Query:
    webhook_endpoints = connection_field(
        WebhookEndpointConnection,
        WebhookEndpointOrder(field=WebhookEndpointOrderField.CREATED_AT, direction=Direction.ASC),
        webhooks.visible_endpoints,
        WebhookEndpoint.from_model,
        description="The organization's webhook endpoints; by default oldest first.",
        scopes=MSP_USERS,
    )

    @strawberry.field(description="Every event type an endpoint can subscribe to.", extensions=requires(*MSP_USERS))
    def webhook_event_types(self) -> list[WebhookEventType]:
        return [WebhookEventType(name=name, description=text) for name, text in webhooks.EVENT_TYPES.items()]


@strawberry.type
class Mutation:
    @mutation(
        description="Add an endpoint that receives the events chosen, signed (Standard Webhooks); the answer "
        "holds its secret, shown this once.",
        scopes=OWNERS,
    )
    async def create_webhook_endpoint(self, info: Info, input: CreateWebhookEndpointInput) -> CreateWebhookEndpointPayload:
        settings = info.context.settings
        row, secret = await webhooks.create_endpoint(
            info.context.principal, settings, endpoint_input(input), partial(client.check_url, settings)
        )
        return WebhookEndpointCreated(webhook_endpoint=WebhookEndpoint.from_model(row), secret=secret)

    @mutation(description="Change an endpoint (its URL, events, description), or disable or enable it.", scopes=OWNERS)
    async def update_webhook_endpoint(
        self, info: Info, id: strawberry.ID, input: UpdateWebhookEndpointInput
    ) -> UpdateWebhookEndpointPayload:
        settings = info.context.settings
        row = await webhooks.update_endpoint(
            info.context.principal,
            settings,
            node_uuid_or_none(id, TYPE_NAME),
            endpoint_input(input),
            partial(client.check_url, settings),
        )
        return WebhookEndpointSaved(webhook_endpoint=WebhookEndpoint.from_model(row))

    @mutation(description="Delete an endpoint with its deliveries.", scopes=OWNERS)
    async def delete_webhook_endpoint(self, info: Info, id: strawberry.ID) -> DeleteWebhookEndpointPayload:
        await webhooks.delete_endpoint(info.context.principal, node_uuid_or_none(id, TYPE_NAME))
        return WebhookEndpointDeleted(deleted_id=id)

    @mutation(
        description="Give the endpoint a new secret (shown this once); for a day the previous one signs too, "
        "so that the receiver can switch without losing an event.",
        scopes=OWNERS,
    )
    async def rotate_webhook_secret(self, info: Info, id: strawberry.ID) -> RotateWebhookSecretPayload:
        row, secret = await webhooks.rotate_secret(
            info.context.principal, info.context.settings, node_uuid_or_none(id, TYPE_NAME), datetime.now(UTC)
        )
        return WebhookSecretRotated(webhook_endpoint=WebhookEndpoint.from_model(row), secret=secret)

    @mutation(description="Send a delivery again now (same `webhook-id` and body); its retries start over.", scopes=OWNERS)
    async def redeliver_webhook(self, info: Info, delivery_id: strawberry.ID) -> RedeliverWebhookPayload:
        delivery = await webhooks.owned_delivery(info.context.principal, node_uuid_or_none(delivery_id, "WebhookDelivery"))
        row = await webhooks.redeliver(delivery, datetime.now(UTC))
        await row.fetch_related("event")
        return WebhookDeliveryQueued(delivery=WebhookDelivery.from_model(row))

    @mutation(description="Send a `webhook.test` event to the endpoint, whatever events it receives.", scopes=OWNERS)
    async def send_test_webhook(self, info: Info, endpoint_id: strawberry.ID) -> SendTestWebhookPayload:
        endpoint = await webhooks.owned_endpoint(info.context.principal, node_uuid_or_none(endpoint_id, TYPE_NAME), field="endpointId")
        webhooks.ready_for_test(endpoint)
        row = await webhooks.queue_test(endpoint, webhooks.test_event(endpoint), datetime.now(UTC))
        await row.fetch_related("event")
        return WebhookDeliveryQueued(delivery=WebhookDelivery.from_model(row))
