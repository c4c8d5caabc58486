"""Coarse access checks: permission classes on fields, shown in the SDL as
`@requiresScope(scopes: [...])`. Row-level visibility is not decided here but in the scoped
queries of `models/` that every read goes through."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import FieldExtension, SchemaExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.schema_directive import Location

from models.auth import Principal, authenticate
from models.base import Scope as ScopeValue
from models.errors import AuthenticationFailed, RequestErrorCode
from schema.core.arguments import CheckedArguments

BEARER = "bearer "

# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
Scope = ScopeValue
strawberry.enum(
    Scope,
    description="What a user may do: OWNER reads and writes its organization, VIEWER reads "
    "it, CUSTOMER reads only its own account's approved invoices.",
)


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="requiresScope",
    description="The field answers only to a user with one of these scopes; the server "
    "enforces it.",
)
class RequiresScopeDirective:
    scopes: list[Scope]


class RequiresScope(BasePermission):
    """Refuses the field unless the request is authenticated with one of `scopes`."""

    def __init__(self, *scopes: ScopeValue):
        self.scopes = scopes
        self._directive = RequiresScopeDirective(scopes=list(scopes))

    @property
    def schema_directive(self) -> object:
        """`@requiresScope` with this field's scopes (strawberry's default is one per class)."""
        return self._directive

    def has_permission(self, source: Any, info, **kwargs: Any) -> bool:
        principal = info.context.principal
        if principal is None:
            reason = info.context.auth_error or "Authentication required: send a bearer token."
            raise GraphQLError(reason, extensions={"code": RequestErrorCode.UNAUTHENTICATED.value})
        if principal.scope not in self.scopes:
            raise GraphQLError(
                f"This needs one of the scopes {', '.join(s.value for s in self.scopes)}.",
                extensions={"code": RequestErrorCode.FORBIDDEN.value},
            )
        return True


async def authenticate_bearer(value: str | None) -> tuple[Principal | None, str | None]:
    """The principal of an `Authorization: Bearer <token>` value, and why there is none."""
    if not value:
        return None, None
    if not value.lower().startswith(BEARER):
        return None, "The Authorization header must be 'Bearer <token>'."
    try:
        return await authenticate(value[len(BEARER):].strip()), None
    except AuthenticationFailed as exc:
        return None, exc.message


class WebSocketAuthentication(SchemaExtension):
    """A WebSocket stays open for hours, so every operation on one checks the token of its
    `connection_init` again: once revoked or expired, it stops working on open sockets too."""

    async def on_operation(self):
        context = self.execution_context.context
        if context.bearer is not None:
            context.principal, context.auth_error = await authenticate_bearer(context.bearer)
        yield


def requires(*scopes: ScopeValue) -> list[FieldExtension]:
    """`extensions=requires(OWNER)` on a field: the scope check, then the check of its text
    arguments (`schema.core.arguments`), so that a caller without the scope learns nothing more."""
    # The last extension of a field runs first.
    return [CheckedArguments(), PermissionExtension(permissions=[RequiresScope(*scopes)])]


ANY_USER = (ScopeValue.OWNER, ScopeValue.VIEWER, ScopeValue.CUSTOMER)
MSP_USERS = (ScopeValue.OWNER, ScopeValue.VIEWER)
OWNERS = (ScopeValue.OWNER,)
