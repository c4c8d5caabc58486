"""The schema: Query and Mutation composed from one part per domain."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry import relay
from strawberry.schema.config import StrawberryConfig

from resolvers import (
    audit,
    auth,
    billing_periods,
    billing_profiles,
    billing_rules,
    cost_sources,
    costs,
    credit_notes,
    einvoicing,
    exchange_rates,
    exports,
    invoice_templates,
    invoices,
    managed_accounts,
    organizations,
    payments,
    people,
    reminders,
    statements,
    webhooks,
    xero,
)
from schema.core.consistency import ConsistentReads
from schema.core.context import Info, ReleaseLoaded
from schema.core.execution import ExecutionContext, answer_prefetched
from schema.core.limits import QueryLimits
from schema.core.masking import ErrorCodes, Schema
from schema.core.nodes import resolve_global_ids
from schema.core.observing import Observed
from schema.core.permissions import ANY_USER, WebSocketAuthentication, requires
from schema.core.scalars import SCALARS


@strawberry.type(description="Reads. Every object is filtered by the viewer's scope.")
class Query(
    auth.Query, billing_profiles.Query, exchange_rates.Query, invoices.Query, billing_periods.Query, billing_rules.Query,
    managed_accounts.Query, costs.Query, cost_sources.Query, people.Query, credit_notes.Query, xero.Query, audit.Query,
    webhooks.Query, invoice_templates.Query,
):
    # Plain ID arguments (not relay.node()'s GlobalID): a malformed id then answers null
    # like a missing one, instead of failing the whole query while arguments are parsed.
    @strawberry.field(
        description="Any object by global id; null when the id is malformed, or the object "
        "does not exist or is not visible.",
        extensions=requires(*ANY_USER),
    )
    async def node(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="The ID of the object.")]
    ) -> relay.Node | None:
        return (await resolve_global_ids(info, [id]))[0]

    @strawberry.field(
        description="Objects by global ids (at most `MAX_PAGE_SIZE`), one per id, in order; "
        "null for each id that is malformed, or whose object does not exist or is not visible.",
        extensions=requires(*ANY_USER),
    )
    async def nodes(
        self, info: Info,
        ids: Annotated[list[strawberry.ID], strawberry.argument(description="The IDs of the objects.")],
    ) -> list[relay.Node | None]:
        return await resolve_global_ids(info, ids)


@strawberry.type(description="Writes. Each answers a payload union of success or typed errors.")
class Mutation(
    auth.Mutation, billing_profiles.Mutation, exchange_rates.Mutation, billing_rules.Mutation,
    invoices.Mutation, payments.Mutation, billing_periods.Mutation, managed_accounts.Mutation, costs.Mutation, cost_sources.Mutation,
    exports.Mutation, people.Mutation, organizations.Mutation, reminders.Mutation, credit_notes.Mutation,
    einvoicing.Mutation, xero.Mutation, webhooks.Mutation, invoice_templates.Mutation,
    statements.Mutation,
):
    pass


@strawberry.type(description="Live updates over WebSocket (graphql-transport-ws).")
class Subscription(invoices.Subscription, costs.Subscription):
    pass


schema = Schema(
    query=Query, mutation=Mutation, subscription=Subscription,
    # In this order: the operation timed and named for the logs, who is asking, then what they
    # may ask, then the codes of what went wrong; a query's reads see one moment; what the
    # operation loaded is let go as soon as it has its answer.
    extensions=[Observed, WebSocketAuthentication, QueryLimits, ErrorCodes, ConsistentReads, ReleaseLoaded],
    config=StrawberryConfig(scalar_map=SCALARS),
    execution_context_class=ExecutionContext,
)
answer_prefetched(schema._schema)


def sdl() -> str:
    """The schema as SDL, as committed in `schema.graphql` (`invoicing schema` writes it)."""
    return schema.as_str() + "\n"
