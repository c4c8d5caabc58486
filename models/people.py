"""People of an organization: invitations, scopes, deactivation, and the owners' view of users
and tokens.

An invitation's link carries a token like an API token's: 256 random bits, stored only as a
SHA-256 digest, made by the job that e-mails it (so the raw value is never stored, not even in
the queue), single use and expiring. A new link (a resend) withdraws the earlier ones.

Whatever could leave the organization without an active owner (a demotion, a deactivation)
locks the organization's row first, so two owners demoting each other at once cannot both
succeed."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import fields
from tortoise.expressions import Q
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.actors import Actor, acting, current
from models.audit import AuditEntity, record_change, snapshot
from models.auth import (
    TOKEN_PREFIX,
    Principal,
    Token,
    TokenKind,
    User,
    UserState,
    create_user,
    hash_token,
    hashed_password,
    issue_token,
    no_such_user,
    visible_tokens,
    visible_users,
)
from models.base import Scope
from models.errors import InvalidTransition, InvitationInvalid, LastOwner, NotFound, ValidationFailed
from models.managed_accounts import visible_accounts
from models.outbox import Entity, Transition, record

log = logging.getLogger(__name__)

INVITATION_INVALID = "This invitation link is unknown, expired or already used: ask for a new one."


class Invitation(Model):
    id = fields.UUIDField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="invitations", on_delete=fields.CASCADE
    )
    invited_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # Set when the link is made (by the job that e-mails it); null until then.
    token_hash = fields.CharField(max_length=64, unique=True, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)
    accepted_at = fields.DatetimeField(null=True)
    # A newer invitation replaced it, or the user was deactivated.
    withdrawn_at = fields.DatetimeField(null=True)

    user_id: Any
    invited_by_id: Any

    class Meta:
        table = "invitations"
        constraints = (
            CheckConstraint(check="token_hash ~ '^[0-9a-f]{64}$'", name="invitations_hash_is_sha256"),
            CheckConstraint(check="expires_at > created_at", name="invitations_expire_after_creation"),
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _pending() -> Q:
    return Q(accepted_at=None, withdrawn_at=None, expires_at__gt=_now())


def _require_owner(principal: Principal) -> None:
    # The API checks the scope before this; the domain refuses the rest alike (CLI, jobs).
    if principal.scope != Scope.OWNER:
        raise no_such_user()


async def _account_of(principal: Principal, scope: Scope, managed_account_id: Any) -> Any:
    """The managed account a customer user is bound to: one of the principal's organization."""
    if scope != Scope.CUSTOMER:
        if managed_account_id is not None:
            raise ValidationFailed("Only a customer user belongs to a managed account.", field="managedAccountId")
        return None
    if managed_account_id is None:
        raise ValidationFailed("A customer user needs a managed account.", field="managedAccountId")
    if not await visible_accounts(principal).filter(id=managed_account_id).exists():
        raise NotFound(f"No managed account with id {managed_account_id}.", field="managedAccountId")
    return managed_account_id


async def invite_user(
    principal: Principal, email: str, scope: Scope, *, lifetime: timedelta, name: str = "",
    managed_account_id: Any = None, password: str | None = None,
) -> tuple[User, Invitation | None]:
    """A new user of the principal's organization (owners only). With a password, it signs in
    at once; without, it is INVITED and the invitation's link, e-mailed once this committed,
    lets it choose one."""
    _require_owner(principal)
    managed_account_id = await _account_of(principal, scope, managed_account_id)
    async with in_transaction() as connection:
        user = await create_user(
            principal.organization_id, email, scope, password=password, name=name,
            managed_account_id=managed_account_id,
        )
        invitation = None if password is not None else await Invitation.create(
            user=user, invited_by_id=principal.user.id, expires_at=_now() + lifetime, using_db=connection,
        )
        await _logged_invitation(connection, invitation, user)
    log.info("%s invited %s as %s", principal.user.email, user.email, scope.value)
    record(Entity.INVITATION, Transition.CREATED, [invitation.id] if invitation else [])
    return user, invitation


async def resend_invitation(principal: Principal, user_id: Any, *, lifetime: timedelta) -> tuple[User, Invitation]:
    """A new invitation for an INVITED user (the earlier links stop working)."""
    _require_owner(principal)
    async with in_transaction() as connection:
        user = await visible_users(principal).filter(id=user_id).select_for_update().using_db(connection).first()
        if user is None:
            raise no_such_user()
        if user.state != UserState.INVITED:
            raise InvalidTransition(
                f"{user.email} is {user.state.value.lower()}: only an invited user is sent an invitation.",
                field="userId",
            )
        await Invitation.filter(user_id=user.id, accepted_at=None, withdrawn_at=None).using_db(connection).update(
            withdrawn_at=_now()
        )
        invitation = await Invitation.create(
            user=user, invited_by_id=principal.user.id, expires_at=_now() + lifetime, using_db=connection,
        )
        await _logged_invitation(connection, invitation, user)
    record(Entity.INVITATION, Transition.CREATED, [invitation.id])
    return user, invitation


@dataclass(frozen=True)
class InvitationLink:
    """What the invitation e-mail needs: the raw token (never stored) and who it is for."""

    token: str
    invitation: Invitation
    user: User


async def make_invitation_link(invitation_id: Any) -> InvitationLink | None:
    """A fresh token for a pending invitation (None when it is no longer pending: accepted,
    withdrawn, expired, or its user is no longer invited). Each call replaces the token, so
    that a job run twice leaves one working link: the last one e-mailed."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with in_transaction() as connection:
        invitation = await Invitation.filter(_pending(), id=invitation_id).select_for_update().using_db(connection).first()
        if invitation is None:
            return None
        user = await User.get(id=invitation.user_id, using_db=connection).select_related("organization")
        if user.state != UserState.INVITED:
            return None
        invitation.token_hash = hash_token(raw)
        await invitation.save(update_fields=["token_hash"], using_db=connection)
    return InvitationLink(raw, invitation, user)


async def invitation_sent(invitation_id: Any) -> None:
    await Invitation.filter(id=invitation_id).update(sent_at=_now())


async def accept_invitation(raw: str, password: str, session_lifetime: timedelta) -> tuple[str, Token]:
    """Set the invited user's password and open its first session. An unknown, expired,
    withdrawn or used token is refused alike (`InvitationInvalid`) and changes nothing; so
    does a password too short (the link still works afterwards)."""
    password_hash = await hashed_password(password)
    async with in_transaction() as connection:
        invitation = await Invitation.filter(
            _pending(), token_hash=hash_token(raw)
        ).select_for_update().using_db(connection).first()
        user = None if invitation is None else await User.filter(
            id=invitation.user_id, is_active=True, password_hash=None
        ).select_for_update().using_db(connection).first()
        if invitation is None or user is None:
            raise InvitationInvalid(INVITATION_INVALID, field="token")
        was_invitation, was_user = snapshot(invitation), snapshot(user)
        invitation.accepted_at = user.last_login_at = _now()
        user.password_hash = password_hash
        await invitation.save(update_fields=["accepted_at"], using_db=connection)
        await user.save(update_fields=["password_hash", "last_login_at"], using_db=connection)
        raw_session, session = await issue_token(user, TokenKind.SESSION, session_lifetime)
        # The invited user acts, from the address of the request.
        with acting(Actor(user_id=user.id, label=user.email, address=current().address)):
            await _logged_invitation(connection, invitation, user, was_invitation)
            await _logged_user(connection, user, was_user)
    log.info("%s accepted the invitation", user.email)
    return raw_session, session


async def _logged_invitation(connection, invitation: Invitation | None, user: User, before: dict[str, Any] | None = None) -> None:
    if invitation is not None:
        await record_change(connection, AuditEntity.INVITATION, invitation.id, user.organization_id, before, snapshot(invitation))


async def _logged_user(connection, user: User, before: dict[str, Any] | None) -> None:
    await record_change(connection, AuditEntity.USER, user.id, user.organization_id, before, snapshot(user))


async def _lock_organization(principal: Principal, connection) -> None:
    await connection.execute_query("SELECT id FROM organizations WHERE id = $1 FOR UPDATE", [str(principal.organization_id)])


async def _locked_user(principal: Principal, user_id: Any, connection) -> User:
    """A user of the principal's organization, after the organization's row is locked."""
    _require_owner(principal)
    await _lock_organization(principal, connection)
    user = await visible_users(principal).filter(id=user_id).select_for_update().using_db(connection).first()
    if user is None:
        raise no_such_user()
    return user


async def _keep_an_owner(user: User, connection) -> None:
    """Refuse when no other owner of the organization is ACTIVE (under the organization's
    lock). An invited owner does not count: its invitation may never be accepted."""
    if user.scope != Scope.OWNER or not user.is_active:
        return
    others = await User.filter(
        organization_id=user.organization_id, scope=Scope.OWNER, is_active=True, password_hash__not_isnull=True,
    ).exclude(id=user.id).using_db(connection).exists()
    if not others:
        raise LastOwner(
            f"{user.email} is the organization's last active owner: make another user owner first.",
            field="userId",
        )


async def _live_tokens(user: User, connection) -> list[Any]:
    return await Token.filter(user_id=user.id, revoked_at=None, expires_at__gt=_now()).using_db(
        connection
    ).values_list("id", flat=True)


async def change_scope(
    principal: Principal, user_id: Any, scope: Scope, managed_account_id: Any = None
) -> tuple[User, list[Any]]:
    """Give a user another scope (a customer user: with its managed account). Answers the
    user and its live tokens, whose open subscriptions must end: they filter events by the
    scope they began with."""
    managed_account_id = await _account_of(principal, scope, managed_account_id)
    async with in_transaction() as connection:
        user = await _locked_user(principal, user_id, connection)
        if scope != Scope.OWNER:
            await _keep_an_owner(user, connection)
        before = snapshot(user)
        user.scope, user.managed_account_id = scope, managed_account_id
        await user.save(update_fields=["scope", "managed_account_id", "updated_at"], using_db=connection)
        await _logged_user(connection, user, before)
        tokens = await _live_tokens(user, connection)
    log.warning("%s made %s %s", principal.user.email, user.email, scope.value)
    record(Entity.USER, Transition.SCOPE_CHANGED, tokens)
    return user, tokens


async def deactivate_user(principal: Principal, user_id: Any) -> tuple[User, list[Any]]:
    """The user can no longer sign in: its tokens are revoked and its invitations withdrawn
    in the same transaction. Answers the user and the tokens revoked now (whose live
    subscriptions end once this committed)."""
    async with in_transaction() as connection:
        user = await _locked_user(principal, user_id, connection)
        await _keep_an_owner(user, connection)
        tokens = await _live_tokens(user, connection)
        now = _now()
        await Token.filter(id__in=tokens).using_db(connection).update(revoked_at=now)
        await Invitation.filter(user_id=user.id, accepted_at=None, withdrawn_at=None).using_db(connection).update(
            withdrawn_at=now
        )
        before = snapshot(user)
        user.is_active = False
        await user.save(update_fields=["is_active", "updated_at"], using_db=connection)
        await _logged_user(connection, user, before)
    log.warning("%s deactivated %s (%d tokens revoked)", principal.user.email, user.email, len(tokens))
    record(Entity.USER, Transition.DEACTIVATED, tokens)
    return user, tokens


async def reactivate_user(principal: Principal, user_id: Any) -> User:
    """A deactivated user may sign in again with its password (its old tokens stay revoked;
    one still without a password needs a new invitation)."""
    async with in_transaction() as connection:
        user = await _locked_user(principal, user_id, connection)
        before = snapshot(user)
        user.is_active = True
        await user.save(update_fields=["is_active", "updated_at"], using_db=connection)
        await _logged_user(connection, user, before)
    log.warning("%s reactivated %s", principal.user.email, user.email)
    return user


@dataclass(frozen=True)
class UserQuery:
    """The conditions a list of users can be narrowed by (None: any)."""

    scopes: list[Scope] | None = None
    states: list[UserState] | None = None
    managed_account_ids: list[Any] | None = None
    search: str | None = None


_STATES = {
    UserState.ACTIVE: Q(is_active=True, password_hash__not_isnull=True),
    UserState.INVITED: Q(is_active=True, password_hash=None),
    UserState.DEACTIVATED: Q(is_active=False),
}


def filter_users(query, where: UserQuery):
    if where.scopes is not None:
        query = query.filter(scope__in=where.scopes)
    if where.states is not None:
        states = [_STATES[state] for state in where.states]
        query = query.filter(Q(*states, join_type=Q.OR)) if states else query.filter(id__in=[])
    if where.managed_account_ids is not None:
        query = query.filter(managed_account_id__in=where.managed_account_ids)
    if where.search:
        query = query.filter(Q(email__icontains=where.search) | Q(name__icontains=where.search))
    return query


def listed_tokens(principal: Principal, *, include_sessions: bool, include_inactive: bool):
    """The tokens an owner lists: its organization's API tokens (and sessions when asked),
    live ones only unless asked; anyone else, its own."""
    query = visible_tokens(principal)
    if not include_sessions:
        query = query.filter(kind=TokenKind.API)
    if not include_inactive:
        query = query.filter(revoked_at=None, expires_at__gt=_now())
    return query
