"""Typed user errors: expected business outcomes, returned in mutation payload unions.

Domain operations raise `models.errors.DomainError`s; `user_error()` is the one place that
turns them into GraphQL types."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from models import errors


@strawberry.interface(description="An expected failure of a mutation; nothing was written.")
class UserError:
    code: str = strawberry.field(description="Stable machine-readable code, e.g. INVALID.")
    message: str = strawberry.field(description="What went wrong, for a person.")
    field: str | None = strawberry.field(
        description="The input field at fault (camelCase), when one is."
    )


@strawberry.type(description="An input was malformed or out of range.")
class ValidationError(UserError):
    pass


@strawberry.type(description="The object does not exist or is not visible to you.")
class NotFoundError(UserError):
    pass


@strawberry.type(description="The object's current state does not allow this operation.")
class InvalidTransitionError(UserError):
    pass


@strawberry.type(description="The operation collides with existing data or a concurrent change.")
class ConflictError(UserError):
    pass


@strawberry.type(
    description="An amount is more than may be paid (code OVERPAYMENT) or refunded (code "
    "REFUND_EXCEEDS_PAYMENT); nothing was written."
)
class AmountExceededError(UserError):
    maximum: Decimal = strawberry.field(description="The most that may be paid or refunded now.")


@strawberry.type(description="The credentials were not accepted.")
class AuthenticationError(UserError):
    pass


_TYPES: dict[type[errors.DomainError], type[UserError]] = {
    errors.AmountExceeded: AmountExceededError,
    errors.ValidationFailed: ValidationError,
    errors.NotFound: NotFoundError,
    errors.InvalidTransition: InvalidTransitionError,
    errors.Conflict: ConflictError,
    errors.AuthenticationFailed: AuthenticationError,
}


def user_error(exc: errors.DomainError) -> UserError:
    for domain_type in type(exc).__mro__:
        if domain_type in _TYPES:
            extra = {"maximum": exc.maximum} if isinstance(exc, errors.AmountExceeded) else {}
            return _TYPES[domain_type](code=exc.code, message=exc.message, field=exc.field, **extra)
    raise exc
