"""Managed accounts: the MSP's customers, and the cloud sub-accounts that map costs to them."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.base import AddressMixin, TimestampMixin
from models.errors import ValidationFailed


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


# Namespace of the advisory lock below (the bytes of "subA"), apart from any other lock.
_SUB_ACCOUNT_MAPPING_LOCK = 0x73756241


async def lock_sub_account_mapping(connection: Any, organization_id: Any) -> None:
    """Serialize, within an organization, the transactions that read the sub-account ->
    managed account mapping to link cost records with those that change it (until commit).

    Without it, a cost import that read the mapping before `set_sub_accounts` committed
    would insert rows linked the old way after the relink had run, and they would stay so.
    """
    await connection.execute_query(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        [_SUB_ACCOUNT_MAPPING_LOCK, str(organization_id)],
    )


async def set_sub_accounts(account: ManagedAccount, sub_account_ids: list[str]) -> None:
    """Make `sub_account_ids` the account's whole list of cloud sub-accounts, and relink the
    organization's cost records to match: rows of these sub-accounts now belong to the
    account, rows of sub-accounts it no longer has belong to no account.

    Refuses (ValidationFailed, field "subAccountIds") an empty id, or an id another account
    of the organization already has; nothing changes then.
    """
    wanted = list(dict.fromkeys(sub_account_id.strip() for sub_account_id in sub_account_ids))
    if "" in wanted:
        raise ValidationFailed("A sub-account id cannot be empty.", field="subAccountIds")
    too_long = next((s for s in wanted if len(s) > 512), None)
    if too_long is not None:
        raise ValidationFailed(
            f"Sub-account id {too_long[:40]!r}… is longer than 512 characters.", field="subAccountIds"
        )
    organization_id = account.organization_id
    async with in_transaction() as connection:
        await lock_sub_account_mapping(connection, organization_id)
        claimed = (
            await SubAccount.filter(organization_id=organization_id, sub_account_id__in=wanted)
            .exclude(managed_account_id=account.id)
            .using_db(connection)
            .select_related("managed_account")
            .order_by("sub_account_id")
            .first()
        )
        if claimed is not None:
            raise ValidationFailed(
                f"Sub-account {claimed.sub_account_id} already belongs to "
                f"{claimed.managed_account.name}.",
                field="subAccountIds",
                code="SUB_ACCOUNT_TAKEN",
            )
        current = set(
            await SubAccount.filter(managed_account_id=account.id)
            .using_db(connection)
            .values_list("sub_account_id", flat=True)
        )
        removed = current.difference(wanted)
        if removed:
            await SubAccount.filter(
                managed_account_id=account.id, sub_account_id__in=removed
            ).using_db(connection).delete()
        added = [s for s in wanted if s not in current]
        if added:
            await SubAccount.bulk_create(
                [
                    SubAccount(
                        organization_id=organization_id, managed_account_id=account.id, sub_account_id=s
                    )
                    for s in added
                ],
                using_db=connection,
            )
        # The account's records become exactly those of its sub-accounts, whatever linked
        # them before; only rows whose link changes are written.
        await connection.execute_query(
            "UPDATE cost_records SET managed_account_id = NULL"
            " WHERE managed_account_id = $1 AND organization_id = $2"
            " AND NOT (sub_account_id = ANY($3::varchar[]))",
            [account.id, organization_id, wanted],
        )
        if wanted:
            await connection.execute_query(
                "UPDATE cost_records SET managed_account_id = $1"
                " WHERE organization_id = $2 AND sub_account_id = ANY($3::varchar[])"
                " AND managed_account_id IS DISTINCT FROM $1",
                [account.id, organization_id, wanted],
            )
