"""Webhooks: an organization's endpoints, and the events of committed changes delivered to
them, signed (Standard Webhooks) and retried (the delivery itself is `jobs.webhooks`, through
`infra.webhooks`, the one client that reaches endpoints).

`tables`: the tables and who sees them; `events`: which events a transition gives and their
bodies; `endpoints`: creating and changing endpoints, their sealed secrets; `deliveries`: the
queue, the retry schedule and what an attempt's outcome does."""

from models.webhooks.deliveries import (
    CLAIM,
    RETRY_DELAYS,
    Attempted,
    Due,
    Outcome,
    any_due,
    claim_due,
    queue_events,
    queue_test,
    record_attempt,
    record_attempts,
    redeliver,
    release_claims,
)
from models.webhooks.endpoints import (
    EndpointInput,
    check_url,
    create_endpoint,
    delete_endpoint,
    owned_delivery,
    owned_endpoint,
    ready_for_test,
    rotate_secret,
    signing_secrets,
    test_event,
    update_endpoint,
)
from models.webhooks.events import EVENT_TYPES, TEST_EVENT, Event, events_of, node_id
from models.webhooks.tables import (
    DeliveryState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    visible_deliveries,
    visible_endpoints,
)

__all__ = [
    "CLAIM",
    "EVENT_TYPES",
    "RETRY_DELAYS",
    "TEST_EVENT",
    "Attempted",
    "DeliveryState",
    "Due",
    "EndpointInput",
    "Event",
    "Outcome",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "any_due",
    "check_url",
    "claim_due",
    "create_endpoint",
    "delete_endpoint",
    "events_of",
    "node_id",
    "owned_delivery",
    "owned_endpoint",
    "queue_events",
    "queue_test",
    "ready_for_test",
    "record_attempt",
    "record_attempts",
    "redeliver",
    "release_claims",
    "rotate_secret",
    "signing_secrets",
    "test_event",
    "update_endpoint",
    "visible_deliveries",
    "visible_endpoints",
]
