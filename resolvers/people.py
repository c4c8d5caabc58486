"""People: the users and tokens of an organization, invitations, scopes and deactivation."""

from __future__ import annotations

from datetime import timedelta

import strawberry

from models import people
from models.auth import authenticate, visible_users
from resolvers.auth import viewer
from schema.auth import LoginSuccess
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid
from schema.core.pagination import Direction, paginate
from schema.core.permissions import MSP_USERS, OWNERS, Scope, requires
from schema.organizations import ApiToken, ApiTokenConnection, User, UserConnection
from schema.people import (
    AcceptInvitationPayload,
    ChangeUserScopePayload,
    DeactivateUserPayload,
    InviteUserInput,
    InviteUserPayload,
    ReactivateUserPayload,
    ResendInvitationPayload,
    UserFilter,
    UserInvited,
    UserOrder,
    UserOrderField,
    UserUpdated,
    user_query,
)

# Tokens list newest first (the order's field is a column tokens share with users).
_TOKEN_ORDER = UserOrder(field=UserOrderField.CREATED_AT, direction=Direction.DESC)


@strawberry.type
class Query:
    @strawberry.field(
        description="Your organization's users (MSP users and customer users), with their scope, "
        "account, state and last sign-in.",
        extensions=requires(*MSP_USERS),
    )
    async def users(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, filter: UserFilter | None = None, order_by: UserOrder | None = None,
    ) -> UserConnection:
        query = people.filter_users(visible_users(info.context.authenticated()), user_query(filter))
        order = order_by or UserOrder(field=UserOrderField.EMAIL)
        return await paginate(
            info, UserConnection, query, User.from_model, order, first=first, after=after, last=last, before=before
        )

    @strawberry.field(
        description="Your organization's API tokens, newest first: name, owner, created, last "
        "used, expiry. Sessions (from `login`) only with `includeSessions`, and revoked or expired "
        "tokens only with `includeInactive`. `revokeToken(id)` revokes any of them.",
        extensions=requires(*OWNERS),
    )
    async def api_tokens(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, include_sessions: bool = False, include_inactive: bool = False,
    ) -> ApiTokenConnection:
        query = people.listed_tokens(
            info.context.authenticated(), include_sessions=include_sessions, include_inactive=include_inactive
        )
        return await paginate(
            info, ApiTokenConnection, query, ApiToken.from_model, _TOKEN_ORDER,
            first=first, after=after, last=last, before=before,
        )


def _invitation_lifetime(info: Info) -> timedelta:
    return timedelta(days=info.context.settings.invitation_days)


@strawberry.type
class Mutation:
    @mutation(
        description="Add a user to your organization: an MSP user (OWNER, VIEWER) or a customer "
        "user of one managed account. Without `password` the user is INVITED: an e-mail carries a "
        "one-time link (valid INVITATION_DAYS) to choose a password with `acceptInvitation`.",
        scopes=OWNERS,
    )
    async def invite_user(self, info: Info, input: InviteUserInput) -> InviteUserPayload:
        user, invitation = await people.invite_user(
            info.context.authenticated(), input.email, input.scope, lifetime=_invitation_lifetime(info),
            name=input.name or "", password=input.password,
            managed_account_id=node_uuid(input.managed_account_id, "ManagedAccount", "managedAccountId"),
        )
        expires_at = invitation.expires_at if invitation else None
        return UserInvited(user=User.from_model(user), invitation_expires_at=expires_at)

    @mutation(
        description="E-mail an INVITED user a new link (the earlier links stop working).", scopes=OWNERS,
    )
    async def resend_invitation(self, info: Info, user_id: strawberry.ID) -> ResendInvitationPayload:
        user, invitation = await people.resend_invitation(
            info.context.authenticated(), node_uuid(user_id, "User", "userId"), lifetime=_invitation_lifetime(info)
        )
        return UserInvited(user=User.from_model(user), invitation_expires_at=invitation.expires_at)

    @mutation(
        description="Choose a password with an invitation link's token, and sign in (no bearer "
        "token needed). The token works once, until it expires; an unknown, expired or used one "
        "answers `INVITATION_INVALID` and changes nothing.",
    )
    async def accept_invitation(self, info: Info, token: str, password: str) -> AcceptInvitationPayload:
        lifetime = timedelta(hours=info.context.settings.session_token_hours)
        raw, session = await people.accept_invitation(token, password, lifetime)
        principal = await authenticate(raw)
        # The answer's viewer is the one who just signed in (the request came without a token).
        info.context.principal = info.context.principal or principal
        return LoginSuccess(token=raw, expires_at=session.expires_at, viewer=await viewer(principal))

    @mutation(
        description="Give a user another scope; a CUSTOMER needs `managedAccountId` (of your "
        "organization). Its live subscriptions end (they began under the old scope). The last "
        "active owner cannot be demoted (`LAST_OWNER`).",
        scopes=OWNERS,
    )
    async def change_user_scope(
        self, info: Info, user_id: strawberry.ID, scope: Scope, managed_account_id: strawberry.ID | None = None,
    ) -> ChangeUserScopePayload:
        user, _ = await people.change_scope(
            info.context.authenticated(), node_uuid(user_id, "User", "userId"), scope,
            node_uuid(managed_account_id, "ManagedAccount", "managedAccountId"),
        )
        return UserUpdated(user=User.from_model(user))

    @mutation(
        description="Stop a user from signing in: its sessions and API tokens are revoked and its "
        "live subscriptions end at once. The last active owner cannot be deactivated (`LAST_OWNER`).",
        scopes=OWNERS,
    )
    async def deactivate_user(self, info: Info, user_id: strawberry.ID) -> DeactivateUserPayload:
        user, _ = await people.deactivate_user(info.context.authenticated(), node_uuid(user_id, "User", "userId"))
        return UserUpdated(user=User.from_model(user))

    @mutation(
        description="Let a deactivated user sign in again with its password (its old tokens stay "
        "revoked).",
        scopes=OWNERS,
    )
    async def reactivate_user(self, info: Info, user_id: strawberry.ID) -> ReactivateUserPayload:
        user = await people.reactivate_user(info.context.authenticated(), node_uuid(user_id, "User", "userId"))
        return UserUpdated(user=User.from_model(user))
