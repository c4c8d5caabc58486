"""The webhook tables: an organization's endpoints (their signing secrets sealed), the events
committed changes gave, one delivery of an event per endpoint, and each attempt at it."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING
from uuid import UUID

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model

from models.base import TimestampMixin, enum_check

if TYPE_CHECKING:
    from models.organizations import Organization


class DeliveryState(str, Enum):
    """PENDING until an attempt is answered with a 2xx (DELIVERED), or until its retries ran
    out or its endpoint was disabled or deleted (FAILED)."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class WebhookEndpoint(TimestampMixin, Model):
    """A URL of an organization's that receives the events it subscribed to, signed with its
    secret (Standard Webhooks)."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="webhook_endpoints", on_delete=fields.CASCADE
    )
    url = fields.CharField(max_length=2048)
    description = fields.CharField(max_length=500, default="")
    # The event types it receives (`models.webhooks.events.EVENT_TYPES`).
    events: fields.JSONField[list[str]] = fields.JSONField(default=list)
    # The signing secret (`whsec_...`), sealed; after a rotation the previous one signs too
    # until `previous_secret_until`.
    secret = fields.TextField()
    previous_secret = fields.TextField(null=True)
    previous_secret_until = fields.DatetimeField(null=True)
    enabled = fields.BooleanField(default=True)
    disabled_at = fields.DatetimeField(null=True)
    disabled_reason = fields.TextField(null=True)
    # Since when its attempts have failed with no success between (null: its last one succeeded).
    failing_since = fields.DatetimeField(null=True)

    organization_id: UUID

    class Meta:
        table = "webhook_endpoints"
        constraints = (CheckConstraint(check="url ~ '^https?://'", name="webhook_endpoints_url_http"),)


class WebhookEvent(Model):
    """One event as it was sent: its type and its JSON body, the same bytes for every endpoint
    and every attempt (its id is the `webhook-id`)."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="webhook_events", on_delete=fields.CASCADE
    )
    type = fields.CharField(max_length=64)
    payload = fields.TextField()
    # When the change was committed (the body's `timestamp`).
    created_at = fields.DatetimeField()

    organization_id: UUID

    class Meta:
        table = "webhook_events"

    @property
    def message_id(self) -> str:
        return self.message_id_of(self.id)

    @staticmethod
    def message_id_of(event_id: UUID) -> str:
        return f"msg_{event_id.hex}"


class WebhookDelivery(Model):
    """An event to one endpoint: due at `next_attempt_at` while PENDING."""

    id = fields.UUIDField(primary_key=True)
    endpoint: fields.ForeignKeyRelation[WebhookEndpoint] = fields.ForeignKeyField(
        "models.WebhookEndpoint", related_name="deliveries", on_delete=fields.CASCADE
    )
    event: fields.ForeignKeyRelation[WebhookEvent] = fields.ForeignKeyField(
        "models.WebhookEvent", related_name="deliveries", on_delete=fields.CASCADE
    )
    state = fields.CharEnumField(DeliveryState, max_length=16, default=DeliveryState.PENDING)
    attempts = fields.SmallIntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True)
    last_status = fields.SmallIntField(null=True)
    delivered_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    endpoint_id: UUID
    event_id: UUID

    class Meta:
        table = "webhook_deliveries"
        indexes = (("state", "next_attempt_at"), ("endpoint_id", "created_at"))
        constraints = (enum_check("webhook_deliveries", "state", DeliveryState),)


class WebhookAttempt(Model):
    """One try of a delivery: when, the answer's status (none: no answer), how long it took,
    the first bytes of the answer, or why there was none."""

    id = fields.UUIDField(primary_key=True)
    delivery: fields.ForeignKeyRelation[WebhookDelivery] = fields.ForeignKeyField(
        "models.WebhookDelivery", related_name="attempt_log", on_delete=fields.CASCADE
    )
    at = fields.DatetimeField()
    status_code = fields.SmallIntField(null=True)
    duration_ms = fields.IntField()
    response = fields.TextField(default="")
    error = fields.CharField(max_length=255, null=True)

    delivery_id: UUID

    class Meta:
        table = "webhook_attempts"
        indexes = (("delivery_id", "at"),)


def visible_endpoints(principal):
    """An organization's endpoints are its MSP users'; a customer sees none."""
    if not principal.is_msp_user:
        return WebhookEndpoint.filter(id__in=[])
    return WebhookEndpoint.filter(organization_id=principal.organization_id)


def visible_deliveries(principal):
    if not principal.is_msp_user:
        return WebhookDelivery.filter(id__in=[])
    return WebhookDelivery.filter(endpoint__organization_id=principal.organization_id)
