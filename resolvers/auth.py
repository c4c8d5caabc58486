"""Viewer, sign-in and tokens."""

from __future__ import annotations

from datetime import timedelta

import strawberry

from models import ManagedAccount as ManagedAccountModel
from models import auth
from models.login_throttle import LoginThrottle
from schema.auth import (
    ApiTokenCreated,
    CreateApiTokenInput,
    CreateApiTokenPayload,
    LoginPayload,
    LoginSuccess,
    LoginUnlocked,
    RevokeTokenPayload,
    TokenRevoked,
    UnlockLoginPayload,
    Viewer,
)
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid
from schema.core.permissions import ANY_USER, OWNERS
from schema.managed_accounts import ManagedAccount
from schema.organizations import ApiToken, Organization, User


async def viewer(principal: auth.Principal) -> Viewer:
    user = principal.user
    # The query `await user.managed_account` makes (tortoise types the unfetched relation
    # as the model itself).
    account = await ManagedAccountModel.filter(id=user.managed_account_id).first() if user.managed_account_id else None
    return Viewer(
        user=User.from_model(user),
        scope=user.scope,
        organization=Organization.from_model(user.organization),
        managed_account=ManagedAccount.from_model(account) if account else None,
    )


def _throttle(info: Info) -> LoginThrottle:
    """The sign-in throttle for this request's client address (behind a proxy, the address
    the server was told to trust: uvicorn's `--forwarded-allow-ips`)."""
    request = info.context.request
    client = getattr(request, "client", None)
    return LoginThrottle(info.context.redis, info.context.settings, client.host if client else None)


async def _login(info: Info, email: str, password: str) -> LoginPayload:
    lifetime = timedelta(hours=info.context.settings.session_token_hours)
    raw, token = await auth.login(email, password, lifetime, throttle=_throttle(info))
    principal = await auth.authenticate(raw)
    # The answer's viewer is the one who just signed in: its fields (an account's invoices,
    # say) read with that principal when the request itself came without a token.
    if info.context.principal is None:
        info.context.principal = principal
    return LoginSuccess(token=raw, expires_at=token.expires_at, viewer=await viewer(principal))


async def _create_api_token(info: Info, input: CreateApiTokenInput) -> CreateApiTokenPayload:
    raw, token = await auth.issue_api_token(
        info.context.authenticated().user, input.name, input.expires_in_days
    )
    return ApiTokenCreated(token=raw, api_token=ApiToken.from_model(token))


async def _revoke_token(info: Info, id: strawberry.ID | None = None) -> RevokeTokenPayload:
    token = await auth.revoke_token(info.context.authenticated(), node_uuid(id, "ApiToken"))
    return TokenRevoked(api_token=ApiToken.from_model(token))


async def _unlock_login(info: Info, user_id: strawberry.ID) -> UnlockLoginPayload:
    user = await auth.unlock_login(
        info.context.authenticated(), node_uuid(user_id, "User", "userId"), _throttle(info)
    )
    return LoginUnlocked(user=User.from_model(user))


@strawberry.type
class Query:
    @strawberry.field(description="Who is asking; null without a valid token.")
    async def viewer(self, info: Info) -> Viewer | None:
        principal = info.context.principal
        return await viewer(principal) if principal else None


@strawberry.type
class Mutation:
    login: LoginPayload = mutation(
        resolver=_login,
        description="Exchange an e-mail and password for a session token. A wrong password and "
        "an unknown e-mail answer alike (`UNAUTHENTICATED`). Past `LOGIN_FREE_ATTEMPTS_PER_ACCOUNT` "
        "attempts on one e-mail, or `LOGIN_FREE_ATTEMPTS_PER_ADDRESS` failures from one client "
        "address, with no quiet `LOGIN_ATTEMPT_WINDOW_SECONDS` between them, each further attempt "
        "must first wait, twice as long as the last wait (up to `LOGIN_BACKOFF_MAX_SECONDS`): until "
        "then `login` answers `LOGIN_THROTTLED`, whose message gives the seconds to wait, whatever "
        "the password and whether the e-mail exists or not. A successful sign-in forgets the "
        "e-mail's attempts; so does an owner's `unlockLogin`.",
    )
    create_api_token: CreateApiTokenPayload = mutation(
        resolver=_create_api_token,
        description="Create an API token for a script (owners only).",
        scopes=OWNERS,
    )
    revoke_token: RevokeTokenPayload = mutation(
        resolver=_revoke_token,
        description="Revoke a token; without `id`, the one this request uses (sign out).",
        scopes=ANY_USER,
    )
    unlock_login: UnlockLoginPayload = mutation(
        resolver=_unlock_login,
        description="Lift a user's sign-in throttle (owners only, for their organization's "
        "users): after too many failed attempts `login` answers `LOGIN_THROTTLED` and each "
        "further attempt on that e-mail must wait longer, up to `LOGIN_BACKOFF_MAX_SECONDS`; "
        "this forgets the e-mail's attempts so that the next one is not made to wait. The "
        "throttle of a client address is not lifted.",
        scopes=OWNERS,
    )
