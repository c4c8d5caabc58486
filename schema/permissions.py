"""Coarse access checks: permission classes on fields, shown in the SDL as
`@requiresScope(scopes: [...])`. Row-level visibility is not decided here but in the scoped
queries of `models/` that every read goes through."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.schema_directive import Location

from models.base import Scope as ScopeValue

Scope = strawberry.enum(
    ScopeValue,
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

    def __init__(self, *scopes: Enum):
        self.scopes = scopes
        self._schema_directive = RequiresScopeDirective(scopes=list(scopes))

    def has_permission(self, source: Any, info, **kwargs: Any) -> bool:
        principal = info.context.principal
        if principal is None:
            reason = info.context.auth_error or "Authentication required: send a bearer token."
            raise GraphQLError(reason, extensions={"code": "UNAUTHENTICATED"})
        if principal.scope not in self.scopes:
            raise GraphQLError(
                f"This needs one of the scopes {', '.join(s.value for s in self.scopes)}.",
                extensions={"code": "FORBIDDEN"},
            )
        return True


def requires(*scopes: Enum) -> list[PermissionExtension]:
    """`extensions=requires(OWNER)` on a field."""
    return [PermissionExtension(permissions=[RequiresScope(*scopes)])]


ANY_USER = (ScopeValue.OWNER, ScopeValue.VIEWER, ScopeValue.CUSTOMER)
MSP_USERS = (ScopeValue.OWNER, ScopeValue.VIEWER)
OWNERS = (ScopeValue.OWNER,)
