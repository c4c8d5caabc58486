"""GraphQL inputs and payloads of people: invitations, scopes, deactivation, lists of users."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from models.people import UserQuery
from schema.auth import LoginSuccess
from schema.core.errors import (
    ConflictError,
    InvalidTransitionError,
    InvitationInvalidError,
    NotFoundError,
    ValidationError,
)
from schema.core.nodes import filter_uuids
from schema.core.pagination import Direction
from schema.core.permissions import Scope
from schema.organizations import User, UserState


@strawberry.enum(description="What users can be sorted by.")
class UserOrderField(Enum):
    EMAIL = "email"
    NAME = "name"
    CREATED_AT = "created_at"
    LAST_LOGIN_AT = "last_login_at"


@strawberry.input(description="Sort order of users.")
class UserOrder:
    field: UserOrderField = strawberry.field(description="Sort key (a user who never signed in "
                                             "comes last by LAST_LOGIN_AT ascending).")
    direction: Direction = strawberry.field(default=Direction.ASC, description="Direction.")


@strawberry.input(description="Narrow the list of users; all conditions combine.")
class UserFilter:
    scopes: list[Scope] | None = strawberry.field(default=None, description="Any of these scopes.")
    states: list[UserState] | None = strawberry.field(default=None, description="Any of these states.")
    account_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Customer users of any of these managed accounts."
    )
    search: str | None = strawberry.field(default=None, description="Part of the e-mail or the name.")


def user_query(where: UserFilter | None) -> UserQuery:
    if where is None:
        return UserQuery()
    return UserQuery(
        scopes=where.scopes, states=where.states, search=where.search,
        managed_account_ids=filter_uuids(where.account_ids, "ManagedAccount"),
    )


@strawberry.input(description="A new user of your organization.")
class InviteUserInput:
    email: str = strawberry.field(description="The address the user signs in with (unique across the service).")
    scope: Scope = strawberry.field(description="OWNER or VIEWER (MSP users), or CUSTOMER.")
    managed_account_id: strawberry.ID | None = strawberry.field(
        default=None, description="For a CUSTOMER: the managed account it belongs to (required); "
        "MSP users have none."
    )
    name: str | None = strawberry.field(default=None, description="Display name.")
    password: str | None = strawberry.field(
        default=None, description="Set the password now (at least 10 characters; tell the user "
        "yourself): the user is ACTIVE and no e-mail is sent. Omitted: the user is INVITED and "
        "e-mailed a link to choose one."
    )


@strawberry.type(description="The user was created; invited by e-mail unless a password was given.")
class UserInvited:
    user: User = strawberry.field(description="The new user.")
    invitation_expires_at: datetime | None = strawberry.field(
        description="Until when the e-mailed link works (INVITATION_DAYS); null when a password was set."
    )


InviteUserPayload = Annotated[
    UserInvited | ValidationError | ConflictError | NotFoundError,
    strawberry.union("InviteUserPayload", description="The result of `inviteUser` (an e-mail "
                     "already in use: `EMAIL_TAKEN`)."),
]
ResendInvitationPayload = Annotated[
    UserInvited | NotFoundError | InvalidTransitionError,
    strawberry.union("ResendInvitationPayload", description="The result of `resendInvitation`."),
]
AcceptInvitationPayload = Annotated[
    LoginSuccess | InvitationInvalidError | ValidationError,
    strawberry.union("AcceptInvitationPayload", description="The result of `acceptInvitation`: "
                     "signed in, or why not (nothing changed)."),
]


@strawberry.type(description="The user was changed.")
class UserUpdated:
    user: User = strawberry.field(description="The user, as changed.")


ChangeUserScopePayload = Annotated[
    UserUpdated | NotFoundError | ValidationError | InvalidTransitionError,
    strawberry.union("ChangeUserScopePayload", description="The result of `changeUserScope` "
                     "(the last active owner: `LAST_OWNER`)."),
]
DeactivateUserPayload = Annotated[
    UserUpdated | NotFoundError | InvalidTransitionError,
    strawberry.union("DeactivateUserPayload", description="The result of `deactivateUser` "
                     "(the last active owner: `LAST_OWNER`)."),
]
ReactivateUserPayload = Annotated[
    UserUpdated | NotFoundError,
    strawberry.union("ReactivateUserPayload", description="The result of `reactivateUser`."),
]
