"""GraphQL types of managed accounts (the MSP's customers)."""

from __future__ import annotations

from typing import Iterable

import strawberry
from strawberry import relay

from models import ManagedAccount as ManagedAccountModel
from models.managed_accounts import visible_accounts
from schema.context import Info
from schema.nodes import scoped_nodes


@strawberry.type(name="ManagedAccount", description="A customer of the MSP.")
class ManagedAccount(relay.Node):
    id: relay.NodeID[str]
    name: str = strawberry.field(description="The account's display name.")
    currency: str = strawberry.field(description="ISO 4217 code invoices are issued in.")

    @classmethod
    def from_model(cls, account: ManagedAccountModel) -> ManagedAccount:
        return cls(id=str(account.id), name=account.name, currency=account.currency)

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_accounts)
