"""GraphQL types of authentication: the viewer, sign-in and tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from schema.core.errors import AuthenticationError, NotFoundError, ValidationError
from schema.core.permissions import Scope
from schema.managed_accounts import ManagedAccount
from schema.organizations import ApiToken, Organization, User


@strawberry.type(description="Who is asking, and in which organization.")
class Viewer:
    user: User = strawberry.field(description="The signed-in user.")
    scope: Scope = strawberry.field(description="The user's scope.")
    organization: Organization = strawberry.field(description="The user's organization.")
    managed_account: ManagedAccount | None = strawberry.field(
        description="For a customer: the one managed account it belongs to."
    )


@strawberry.type(description="Signed in: use `token` as `Authorization: Bearer <token>`.")
class LoginSuccess:
    token: str = strawberry.field(description="The session token; shown only this once.")
    expires_at: datetime = strawberry.field(description="When the session ends.")
    viewer: Viewer = strawberry.field(description="Who signed in.")


LoginPayload = Annotated[
    LoginSuccess | AuthenticationError | ValidationError,
    strawberry.union("LoginPayload", description="The result of `login`."),
]


@strawberry.input(description="A new API token for a script.")
class CreateApiTokenInput:
    name: str = strawberry.field(description="What the token is for, e.g. 'Xero sync'.")
    expires_in_days: int = strawberry.field(
        default=90, description="Lifetime in days (1 to 730)."
    )


@strawberry.type(description="The token was created; `token` is shown only this once.")
class ApiTokenCreated:
    token: str = strawberry.field(description="The secret, for `Authorization: Bearer`.")
    api_token: ApiToken = strawberry.field(description="The token's record.")


CreateApiTokenPayload = Annotated[
    ApiTokenCreated | ValidationError,
    strawberry.union("CreateApiTokenPayload", description="The result of `createApiToken`."),
]


@strawberry.type(description="The token no longer works.")
class TokenRevoked:
    api_token: ApiToken = strawberry.field(description="The revoked token's record.")


RevokeTokenPayload = Annotated[
    TokenRevoked | NotFoundError,
    strawberry.union("RevokeTokenPayload", description="The result of `revokeToken`."),
]


@strawberry.type(description="The user's sign-in throttle is lifted: the next attempt need not wait.")
class LoginUnlocked:
    user: User = strawberry.field(description="The user whose sign-in attempts were forgotten.")


UnlockLoginPayload = Annotated[
    LoginUnlocked | NotFoundError,
    strawberry.union("UnlockLoginPayload", description="The result of `unlockLogin`."),
]
