"""The schema: Query, Mutation and the GraphQL `Schema` object."""

from __future__ import annotations

import strawberry
from strawberry import relay

from resolvers import auth as auth_resolvers
from schema.auth import CreateApiTokenPayload, LoginPayload, RevokeTokenPayload, Viewer
from schema.permissions import ANY_USER, OWNERS, requires


@strawberry.type(description="Reads. Every object is filtered by the viewer's scope.")
class Query:
    node: relay.Node | None = relay.node(
        description="Any object by global id; null when it does not exist or is not visible.",
        extensions=requires(*ANY_USER),
    )
    nodes: list[relay.Node | None] = relay.node(
        description="Objects by global ids, in order; null for each one not visible.",
        extensions=requires(*ANY_USER),
    )

    @strawberry.field(description="Who is asking; null without a valid token.")
    async def viewer(self, info: strawberry.Info) -> Viewer | None:
        return await auth_resolvers.resolve_viewer(info)


@strawberry.type(description="Writes. Each answers a payload union of success or typed errors.")
class Mutation:
    login: LoginPayload = strawberry.mutation(
        resolver=auth_resolvers.login,
        description="Exchange an e-mail and password for a session token.",
    )
    create_api_token: CreateApiTokenPayload = strawberry.mutation(
        resolver=auth_resolvers.create_api_token,
        description="Create an API token for a script (owners only).",
        extensions=requires(*OWNERS),
    )
    revoke_token: RevokeTokenPayload = strawberry.mutation(
        resolver=auth_resolvers.revoke_token,
        description="Revoke a token; without `id`, the one this request uses (sign out).",
        extensions=requires(*ANY_USER),
    )


schema = strawberry.Schema(query=Query, mutation=Mutation)
