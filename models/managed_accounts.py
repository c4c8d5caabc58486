"""Managed accounts: the MSP's customers, and the cloud sub-accounts that map costs to them."""

from __future__ import annotations

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model

from models.base import AddressMixin, TimestampMixin


class ManagedAccount(TimestampMixin, AddressMixin, Model):
    id = fields.UUIDField(primary_key=True)
    organization = fields.ForeignKeyField(
        "models.Organization", related_name="managed_accounts", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=255)
    contact_email = fields.CharField(max_length=320, default="")
    billing_profile = fields.ForeignKeyField(
        "models.BillingProfile", related_name="managed_accounts", null=True, on_delete=fields.SET_NULL
    )
    payment_terms_days = fields.SmallIntField(default=30)
    currency = fields.CharField(max_length=3, default="USD")
    # Also bill the integrations the customer connected itself, not only the MSP's.
    include_account_integrations = fields.BooleanField(default=False)
    official_company_name = fields.CharField(max_length=255, default="")
    billing_emails = fields.JSONField(default=list)
    po_number = fields.CharField(max_length=128, default="")
    business_fields = fields.JSONField(default=list)
    # The MSP's own notes; never shown to the customer.
    internal_notes = fields.TextField(default="")

    sub_accounts: fields.ReverseRelation[SubAccount]

    class Meta:
        table = "managed_accounts"
        constraints = (
            UniqueConstraint(fields=("organization_id", "name"), name="managed_accounts_name_unique"),
            CheckConstraint(check="btrim(name) <> ''", name="managed_accounts_name_present"),
            CheckConstraint(check="currency ~ '^[A-Z]{3}$'", name="managed_accounts_currency_iso"),
            CheckConstraint(
                check="payment_terms_days BETWEEN 0 AND 365", name="managed_accounts_payment_terms_range"
            ),
            CheckConstraint(check="jsonb_typeof(billing_emails) = 'array'", name="managed_accounts_emails_list"),
            CheckConstraint(check="jsonb_typeof(business_fields) = 'array'", name="managed_accounts_business_fields_list"),
        )


class SubAccount(Model):
    """A cloud sub-account (AWS account, Azure subscription, GCP project, OCI tenancy)
    whose FOCUS `SubAccountId` rows belong to a managed account."""

    id = fields.UUIDField(primary_key=True)
    organization = fields.ForeignKeyField(
        "models.Organization", related_name="sub_accounts", on_delete=fields.CASCADE
    )
    managed_account = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="sub_accounts", on_delete=fields.CASCADE
    )
    sub_account_id = fields.CharField(max_length=512)
    provider_name = fields.CharField(max_length=128, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "sub_accounts"
        constraints = (
            # One sub-account's costs go to exactly one customer.
            UniqueConstraint(fields=("organization_id", "sub_account_id"), name="sub_accounts_unique"),
            CheckConstraint(check="btrim(sub_account_id) <> ''", name="sub_accounts_id_present"),
        )


def visible_accounts(principal):
    """Managed accounts the principal may see: its organization's, or a customer's own."""
    query = ManagedAccount.filter(organization_id=principal.organization_id)
    if not principal.is_msp_user:
        query = query.filter(id=principal.managed_account_id)
    return query
