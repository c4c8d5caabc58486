"""Users, passwords and tokens.

Passwords are hashed with argon2. Tokens are 256 random bits shown once to their owner and
stored only as a SHA-256 digest: a high-entropy secret needs no slow hash, and a stolen
table yields nothing usable. Every token expires and can be revoked.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.audit import AuditEntity, record_change, snapshot
from models.base import Prepared, Scope, TimestampMixin, enum_check
from models.errors import AuthenticationFailed, EmailTaken, NotFound, ValidationFailed
from models.login_throttle import LoginThrottle
from models.outbox import Entity, Transition, record
from models.text import MAX_EMAIL_LENGTH, clean_text, normalize_email

if TYPE_CHECKING:
    from models.managed_accounts import ManagedAccount
    from models.organizations import Organization

log = logging.getLogger(__name__)

TOKEN_PREFIX = "inv_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_API_TOKEN_DAYS = 730
_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so that both failures take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class TokenKind(str, Enum):
    SESSION = "SESSION"
    API = "API"


class UserState(str, Enum):
    """ACTIVE signs in; INVITED has no password yet (its invitation sets one); DEACTIVATED
    cannot sign in, and every token it had is revoked."""

    ACTIVE = "ACTIVE"
    INVITED = "INVITED"
    DEACTIVATED = "DEACTIVATED"


class User(TimestampMixin, Model):
    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="users", on_delete=fields.CASCADE
    )
    email = fields.CharField(max_length=320, unique=True)
    name = fields.CharField(max_length=255, default="")
    password_hash = fields.CharField(max_length=255, null=True)
    scope = fields.CharEnumField(Scope, max_length=16)
    # A customer user is bound to exactly one managed account; MSP users to none.
    managed_account: fields.ForeignKeyNullableRelation[ManagedAccount] = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="users", null=True, on_delete=fields.CASCADE
    )
    is_active = fields.BooleanField(default=True)
    last_login_at = fields.DatetimeField(null=True)

    # The foreign keys' columns, which Tortoise sets on the instance.
    organization_id: UUID
    managed_account_id: UUID | None

    class Meta:
        table = "users"
        constraints = (
            enum_check("users", "scope", Scope),
            CheckConstraint(check="email = lower(email) AND email LIKE '%_@_%'", name="users_email_normalized"),
            CheckConstraint(
                check="(scope = 'CUSTOMER') = (managed_account_id IS NOT NULL)",
                name="users_customer_has_account",
            ),
        )

    @property
    def state(self) -> UserState:
        if not self.is_active:
            return UserState.DEACTIVATED
        return UserState.INVITED if self.password_hash is None else UserState.ACTIVE


class Token(Model):
    id = fields.UUIDField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="tokens", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(TokenKind, max_length=16)
    name = fields.CharField(max_length=255, default="")
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "tokens"
        constraints = (
            enum_check("tokens", "kind", TokenKind),
            CheckConstraint(check="token_hash ~ '^[0-9a-f]{64}$'", name="tokens_hash_is_sha256"),
            CheckConstraint(check="expires_at > created_at", name="tokens_expire_after_creation"),
        )

    @property
    def is_valid(self) -> bool:
        return self.revoked_at is None and self.expires_at > _now()


async def live_token_ids(token_ids: Iterable[Any]) -> set[str]:
    """Those of the tokens that still authenticate (not revoked, not expired, their user
    active), by one query: what a live subscription held on a token is checked against."""
    return {
        str(token_id)
        for token_id in await Token.filter(
            id__in=list(token_ids), revoked_at=None, expires_at__gt=_now(), user__is_active=True
        ).values_list("id", flat=True)
    }


def _now() -> datetime:
    return datetime.now(UTC)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < 10:
        raise ValidationFailed("A password needs at least 10 characters.", field="password")
    return _hasher.hash(password)


async def hashed_password(password: str) -> str:
    """`hash_password` in a thread: argon2 takes tens of milliseconds of CPU on purpose, which
    the event loop would otherwise spend not serving anyone else."""
    return await asyncio.to_thread(hash_password, password)


def _password_matches(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def create_user(
    organization_id,
    email: str,
    scope: Scope,
    *,
    password: str | None = None,
    name: str = "",
    managed_account_id=None,
) -> User:
    email = normalize_email(email)
    if (scope == Scope.CUSTOMER) != (managed_account_id is not None):
        raise ValidationFailed(
            "A customer user needs a managed account; other users must not have one.",
            field="managedAccountId",
        )
    name = clean_text(name, "name", 255, False)
    password_hash = await hashed_password(password) if password is not None else None
    if await User.filter(email=email).exists():
        raise email_taken(email)
    try:
        # Inside a caller's transaction, a savepoint: a concurrent twin's duplicate key then
        # leaves that transaction usable for the typed error.
        async with in_transaction() as connection:
            user = await User.create(
                organization_id=organization_id, email=email, name=name, scope=scope,
                managed_account_id=managed_account_id, password_hash=password_hash, using_db=connection,
            )
            await record_change(connection, AuditEntity.USER, user.id, organization_id, None, snapshot(user))
            return user
    except IntegrityError as exc:
        if "email" not in str(exc):
            raise
        raise email_taken(email) from None


def no_such_user() -> NotFound:
    """The refusal of a user id the principal may not see (or that does not exist): the two are not told apart."""
    return NotFound("No such user.", field="userId")


def email_taken(email: str) -> EmailTaken:
    return EmailTaken(f"A user with e-mail {email} already exists.", field="email")


async def issue_token(
    user: User, kind: TokenKind, lifetime: timedelta, name: str = ""
) -> tuple[str, Token]:
    """Make a token; the raw value is returned once and never stored."""
    if lifetime <= timedelta(0):
        raise ValidationFailed("A token must live for a positive time.", field="expiresInDays")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = await Token.create(
        user=user, kind=kind, name=name, token_hash=hash_token(raw), expires_at=_now() + lifetime
    )
    return raw, token


async def issue_api_token(user: User, name: str, days: int) -> tuple[str, Token]:
    """An API token for a script, living 1 to MAX_API_TOKEN_DAYS days."""
    if not 1 <= days <= MAX_API_TOKEN_DAYS:
        raise ValidationFailed(
            f"An API token lives 1 to {MAX_API_TOKEN_DAYS} days.", field="expiresInDays"
        )
    name = name.strip()
    if not name or len(name) > 255:
        raise ValidationFailed("Name the token (1 to 255 characters).", field="name")
    async with in_transaction() as connection:
        raw, token = await issue_token(user, TokenKind.API, timedelta(days=days), name=name)
        await record_change(connection, AuditEntity.API_TOKEN, token.id, user.organization_id, None, snapshot(token))
    return raw, token


async def login(
    email: str, password: str, lifetime: timedelta, *, throttle: LoginThrottle | None = None
) -> tuple[str, Token]:
    """Check the password and open a session. Unknown e-mail and wrong password answer alike,
    in about the same time (an unknown e-mail is verified against a dummy hash). While the
    `throttle` makes the e-mail or the address wait, every attempt is refused before any lookup
    (`LoginThrottled`), known e-mail or not."""
    address = throttle.address if throttle else None
    if throttle:
        await throttle.admit(email)
    if len(email.strip()) > MAX_EMAIL_LENGTH:
        # No account can have it; refused before it reaches the database.
        raise ValidationFailed(f"An e-mail address has at most {MAX_EMAIL_LENGTH} characters.", field="email")
    user = await User.get_or_none(email=email.strip().lower(), is_active=True)
    stored = user.password_hash if user and user.password_hash else _DUMMY_HASH
    # In a thread, as hashing is (many logins in one request would hold every other request).
    if not await asyncio.to_thread(_password_matches, stored, password):
        user = None
    if user is None or user.password_hash is None:
        log.warning("login failed for %.200r from %s", email, address)
        raise AuthenticationFailed("The e-mail or the password is wrong.")
    if throttle:
        await throttle.succeeded(email)
    user.last_login_at = _now()
    update = ["last_login_at"]
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = await asyncio.to_thread(_hasher.hash, password)
        update.append("password_hash")
    await user.save(update_fields=update)
    return await issue_token(user, TokenKind.SESSION, lifetime)


# A token with its user and the user's organization, by the digest of the raw token.
_TOKEN_BY_HASH = Prepared(
    Token, lambda digest: Token.filter(token_hash=digest).select_related("user", "user__organization").limit(1)
)


async def authenticate(raw: str) -> Principal:
    """The user behind a raw token, or `AuthenticationFailed`."""
    found = await _TOKEN_BY_HASH.run(hash_token(raw))
    token = found[0] if found else None
    if token is None or not token.is_valid or not token.user.is_active:
        raise AuthenticationFailed("The token is invalid, expired or revoked.")
    now = _now()
    # Recorded at most once a minute per token: a write per request would cost more than it
    # tells. Conditional, so that concurrent requests write it once.
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        await Token.filter(
            Q(last_used_at=None) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION), id=token.id
        ).update(last_used_at=now)
    return Principal(token.user, token)


async def revoke_token(principal: Principal, token_id=None) -> Token:
    """Revoke a token the principal may see (by default the one it is using: a logout)."""
    token_id = token_id or principal.presented_token.id
    token = await visible_tokens(principal).filter(id=token_id).first()
    if token is None:
        raise NotFound("No such token.")
    if token.revoked_at is None:
        async with in_transaction() as connection:
            before = snapshot(token)
            token.revoked_at = _now()
            await token.save(update_fields=["revoked_at"], using_db=connection)
            if token.kind == TokenKind.API:
                await record_change(connection, AuditEntity.API_TOKEN, token.id, principal.organization_id, before, snapshot(token))
    record(Entity.TOKEN, Transition.REVOKED, [token.id])
    return token


async def unlock_login(principal: Principal, user_id, throttle: LoginThrottle) -> User:
    """Lift the sign-in throttle of a user the principal may see: the attempts counted on the
    user's e-mail are forgotten, and the next one is not made to wait."""
    user = await visible_users(principal).filter(id=user_id).first()
    if user is None:
        raise no_such_user()
    await throttle.clear(user.email)
    log.warning("login unlocked for %r by %s", user.email, principal.user.email)
    return user


async def purge_tokens(before: datetime) -> int:
    """Delete tokens that expired or were revoked before `before`."""
    return await Token.filter(Q(expires_at__lt=before) | Q(revoked_at__lt=before)).delete()


class Principal:
    """Who is asking: the authenticated user and the token they used. Every scoped query
    takes one, so that visibility is decided in one place per domain."""

    __slots__ = ("user", "token")

    def __init__(self, user: User, token: Token | None):
        self.user = user
        # None for the principal a signed download link stands for: no token was presented.
        self.token = token

    @property
    def presented_token(self) -> Token:
        """The token of a principal that authenticated with one (every request's does)."""
        assert self.token is not None, "a signed link's principal presented no token"
        return self.token

    @property
    def scope(self) -> Scope:
        return self.user.scope

    @property
    def organization_id(self) -> UUID:
        return self.user.organization_id

    @property
    def managed_account_id(self) -> UUID | None:
        return self.user.managed_account_id

    @property
    def is_msp_user(self) -> bool:
        return self.user.scope in (Scope.OWNER, Scope.VIEWER)


async def principal_of_link(user_id, organization_id, scope, managed_account_id, token_id) -> Principal | None:
    """The principal a signed download link was made for, if that user is still active
    with the same organization, scope and account, and the token it was made with is still
    valid (not signed out, revoked or expired); else None."""
    token = await Token.get_or_none(id=token_id, user_id=user_id) if token_id else None
    if token is None or not token.is_valid:
        return None
    user = await User.get_or_none(id=user_id, is_active=True)
    if user is None or (str(user.organization_id), user.scope.value) != (organization_id, scope):
        return None
    if (str(user.managed_account_id) if user.managed_account_id else None) != managed_account_id:
        return None
    return Principal(user, None)


def visible_users(principal: Principal):
    """Users the principal may see: its organization's for MSP users, itself for a customer."""
    if principal.is_msp_user:
        return User.filter(organization_id=principal.organization_id)
    return User.filter(id=principal.user.id)


def visible_tokens(principal: Principal):
    """API and session tokens: an owner sees its organization's, anyone else its own."""
    if principal.scope == Scope.OWNER:
        return Token.filter(user__organization_id=principal.organization_id)
    return Token.filter(user_id=principal.user.id)
