"""Xero tables: an organization's connection (tokens encrypted), the authorizations under way,
its account mapping, the push state of each document, and the payments brought back."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING
from uuid import UUID

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model

from models.base import TimestampMixin, enum_check
from models.invoices.tables import LineKind

if TYPE_CHECKING:
    from models.auth import User
    from models.invoices.tables import Invoice
    from models.organizations import Organization
    from models.payments.tables import Payment


class ConnectionStatus(str, Enum):
    CONNECTED = "CONNECTED"
    # Xero refused the refresh token (revoked in Xero, or unused for 60 days): connect again.
    NEEDS_RECONNECT = "NEEDS_RECONNECT"


class DocumentKind(str, Enum):
    """What is pushed: an invoice, or a credit note (Xero's ACCRECCREDIT)."""

    INVOICE = "INVOICE"
    CREDIT_NOTE = "CREDIT_NOTE"


class SyncState(str, Enum):
    QUEUED = "QUEUED"
    RETRYING = "RETRYING"
    SYNCED = "SYNCED"
    FAILED = "FAILED"


class XeroConnection(TimestampMixin, Model):
    """One Xero organisation (tenant) per MSP organization."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.OneToOneRelation[Organization] = fields.OneToOneField(
        "models.Organization", related_name="xero_connection", on_delete=fields.CASCADE
    )
    status = fields.CharEnumField(ConnectionStatus, max_length=16, default=ConnectionStatus.CONNECTED)
    status_message = fields.TextField(null=True)
    tenant_id = fields.CharField(max_length=64)
    tenant_name = fields.CharField(max_length=255, default="")
    # The organisation's short code, which deep links to its documents need.
    short_code = fields.CharField(max_length=32, default="")
    # Xero's id of the connection (the app's access to this tenant), to remove it on disconnect.
    connection_ref = fields.CharField(max_length=64, default="")
    # Access and refresh token, scopes and expiry as one Fernet token (models.xero.tokens).
    tokens = fields.TextField()
    access_expires_at = fields.DatetimeField()
    connected_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    connected_at = fields.DatetimeField()
    # Payments are read from Xero modified since then (If-Modified-Since).
    payments_checked_at = fields.DatetimeField(null=True)

    organization_id: UUID
    connected_by_id: UUID | None

    class Meta:
        table = "xero_connections"
        constraints = (enum_check("xero_connections", "status", ConnectionStatus),)


class XeroAuthorization(Model):
    """A connection under way: the state Xero hands back, bound to the organization and the
    owner who started it, and the PKCE code verifier (encrypted). Used once, then deleted."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name=False, on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    # SHA-256 of the state: the value itself travels only in the browser's address bar.
    state_hash = fields.CharField(max_length=64, unique=True)
    code_verifier = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()

    organization_id: UUID
    user_id: UUID

    class Meta:
        table = "xero_authorizations"


class XeroSettings(TimestampMixin, Model):
    """How an organization's documents land in Xero."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.OneToOneRelation[Organization] = fields.OneToOneField(
        "models.Organization", related_name="xero_settings", on_delete=fields.CASCADE
    )
    # Push every approved invoice not yet in Xero when a month rolls over.
    auto_push_at_rollover = fields.BooleanField(default=False)
    account_code = fields.CharField(max_length=32, default="200")
    # Our taxes are lines of their own: the default tax type adds none in Xero.
    tax_type = fields.CharField(max_length=64, default="NONE")

    organization_id: UUID

    class Meta:
        table = "xero_settings"
        constraints = (
            CheckConstraint(check="btrim(account_code) <> '' AND btrim(tax_type) <> ''", name="xero_settings_codes_present"),
        )


class XeroAccountMapping(Model):
    """The account code and tax type of the lines of one kind, or of one charge or tax (by the
    name printed on the line), instead of the organization's defaults."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name=False, on_delete=fields.CASCADE
    )
    line_kind = fields.CharEnumField(LineKind, max_length=16)
    # '' for every line of the kind.
    line_name = fields.CharField(max_length=1024, default="")
    account_code = fields.CharField(max_length=32)
    tax_type = fields.CharField(max_length=64)
    position = fields.SmallIntField(default=0)

    organization_id: UUID

    class Meta:
        table = "xero_account_mappings"
        constraints = (
            UniqueConstraint(fields=("organization_id", "line_kind", "line_name"), name="xero_account_mappings_unique"),
            enum_check("xero_account_mappings", "line_kind", LineKind),
            CheckConstraint(
                check="btrim(account_code) <> '' AND btrim(tax_type) <> ''", name="xero_account_mappings_codes_present"
            ),
        )


class XeroSync(TimestampMixin, Model):
    """Where one of our documents stands with Xero. `invoice` is the invoice itself, or the
    one a credit note corrects: its timeline tells every attempt."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name=False, on_delete=fields.CASCADE
    )
    invoice: fields.ForeignKeyRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name=False, on_delete=fields.RESTRICT
    )
    document_kind = fields.CharEnumField(DocumentKind, max_length=16)
    document_id = fields.UUIDField()
    number = fields.CharField(max_length=64)
    state = fields.CharEnumField(SyncState, max_length=16, default=SyncState.QUEUED)
    message: str | None = fields.TextField(null=True)
    attempts = fields.SmallIntField(default=0)
    xero_id = fields.CharField(max_length=64, null=True)
    xero_url = fields.CharField(max_length=512, null=True)
    last_attempt_at = fields.DatetimeField(null=True)
    synced_at = fields.DatetimeField(null=True)
    # A credit note: when Xero allocated it to its invoice (once; null before, and for invoices).
    allocated_at = fields.DatetimeField(null=True)

    organization_id: UUID
    invoice_id: UUID

    class Meta:
        table = "xero_syncs"
        constraints = (
            UniqueConstraint(fields=("document_kind", "document_id"), name="xero_syncs_document_unique"),
            enum_check("xero_syncs", "document_kind", DocumentKind),
            enum_check("xero_syncs", "state", SyncState),
            CheckConstraint(check="state <> 'SYNCED' OR xero_id IS NOT NULL", name="xero_syncs_synced_has_id"),
        )


class XeroPayment(Model):
    """A payment read from Xero, once: recorded against our invoice, or skipped (`message`
    says why). Its Xero id makes reading it again change nothing."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name=False, on_delete=fields.CASCADE
    )
    xero_payment_id = fields.CharField(max_length=64)
    invoice: fields.ForeignKeyRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name=False, on_delete=fields.RESTRICT
    )
    payment: fields.ForeignKeyNullableRelation[Payment] = fields.ForeignKeyField(
        "models.Payment", related_name=False, null=True, on_delete=fields.RESTRICT
    )
    message = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    organization_id: UUID
    invoice_id: UUID
    payment_id: UUID | None

    class Meta:
        table = "xero_payments"
        constraints = (
            UniqueConstraint(fields=("organization_id", "xero_payment_id"), name="xero_payments_unique"),
            CheckConstraint(check="(payment_id IS NULL) <> (message IS NULL)", name="xero_payments_outcome"),
        )
