"""The schema: Query and Mutation composed from one part per domain."""

from __future__ import annotations

import strawberry
from strawberry import relay
from strawberry.schema.config import StrawberryConfig

from resolvers import auth, billing_periods, billing_profiles, billing_rules, exchange_rates, invoices
from resolvers import costs, exports, managed_accounts, payments
from schema.execution import ExecutionContext
from schema.permissions import ANY_USER, WebSocketAuthentication, requires
from schema.scalars import SCALARS


@strawberry.type(description="Reads. Every object is filtered by the viewer's scope.")
class Query(auth.Query, billing_profiles.Query, exchange_rates.Query, invoices.Query, billing_periods.Query, billing_rules.Query, managed_accounts.Query, costs.Query):
    node: relay.Node | None = relay.node(
        description="Any object by global id; null when it does not exist or is not visible.",
        extensions=requires(*ANY_USER),
    )
    nodes: list[relay.Node | None] = relay.node(
        description="Objects by global ids, in order; null for each one not visible.",
        extensions=requires(*ANY_USER),
    )


@strawberry.type(description="Writes. Each answers a payload union of success or typed errors.")
class Mutation(
    auth.Mutation, billing_profiles.Mutation, exchange_rates.Mutation, billing_rules.Mutation,
    invoices.Mutation, payments.Mutation, billing_periods.Mutation, managed_accounts.Mutation, costs.Mutation,
    exports.Mutation,
):
    pass


@strawberry.type(description="Live updates over WebSocket (graphql-transport-ws).")
class Subscription(invoices.Subscription):
    pass


schema = strawberry.Schema(
    query=Query, mutation=Mutation, subscription=Subscription,
    extensions=[WebSocketAuthentication], config=StrawberryConfig(scalar_map=SCALARS),
    execution_context_class=ExecutionContext,
)


def sdl() -> str:
    """The schema as SDL, as committed in `schema.graphql` (`invoicing schema` writes it)."""
    return schema.as_str() + "\n"
