"""Managed accounts: the list, create and update."""

from __future__ import annotations

import strawberry

from models import managed_accounts
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid
from schema.core.pagination import Direction, paginate
from schema.core.permissions import ANY_USER, OWNERS, requires
from schema.managed_accounts import (
    CreateManagedAccountInput,
    CreateManagedAccountPayload,
    ManagedAccount,
    ManagedAccountConnection,
    ManagedAccountFilter,
    ManagedAccountOrder,
    ManagedAccountOrderField,
    ManagedAccountSaved,
    UpdateManagedAccountInput,
    UpdateManagedAccountPayload,
    account_data,
    account_query,
)


@strawberry.type
class Query:
    @strawberry.field(
        description="Managed accounts visible to you: your organization's, or (for a "
        "customer) exactly your own.",
        extensions=requires(*ANY_USER),
    )
    async def managed_accounts(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
        filter: ManagedAccountFilter | None = None, order_by: ManagedAccountOrder | None = None,
    ) -> ManagedAccountConnection:
        order = order_by or ManagedAccountOrder(field=ManagedAccountOrderField.NAME, direction=Direction.ASC)
        return await paginate(
            info,
            ManagedAccountConnection,
            managed_accounts.filter_accounts(managed_accounts.visible_accounts(info.context.principal), account_query(filter)),
            ManagedAccount.from_model,
            order, first=first, after=after, last=last, before=before,
        )


@strawberry.type
class Mutation:
    @mutation(
        description="Create a managed account, optionally claiming its cloud sub-accounts "
        "(their cost records are linked to it).",
        scopes=OWNERS,
    )
    async def create_managed_account(
        self, info: Info, input: CreateManagedAccountInput
    ) -> CreateManagedAccountPayload:
        row = await managed_accounts.create_account(info.context.principal, account_data(input))
        return ManagedAccountSaved(managed_account=ManagedAccount.from_model(row))

    @mutation(
        description="Change a managed account; only the fields given change. Invoices "
        "already generated keep what they printed until regenerated.",
        scopes=OWNERS,
    )
    async def update_managed_account(
        self, info: Info, id: strawberry.ID, input: UpdateManagedAccountInput
    ) -> UpdateManagedAccountPayload:
        row = await managed_accounts.update_account(
            info.context.principal, node_uuid(id, "ManagedAccount"), account_data(input)
        )
        return ManagedAccountSaved(managed_account=ManagedAccount.from_model(row))
