"""Typed user errors: expected business outcomes, returned in mutation payload unions.

Domain operations raise `models.errors.DomainError`s; `user_error()` is the one place that
turns them into GraphQL types (`schema.core.mutations.mutation` calls it for every mutation)."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from models import errors
from models.cost_sources import CostSourceUnreadable, SourceProblem
from models.errors import CostFileRejected, TemplateRejected


def _listed(meanings: dict) -> str:
    return "; ".join(f"{code.value}: {meaning}" for code, meaning in meanings.items())


# Printed in the SDL: the SPA developer's list of every code, kept in `models/errors.py`.
CODE_DESCRIPTION = (
    f"Stable machine-readable code, one of: {_listed(errors.ERROR_CODE_MEANINGS)}. Errors of the "
    f"request itself are top-level GraphQL errors whose `extensions.code` is one of: "
    f"{_listed(errors.REQUEST_ERROR_CODE_MEANINGS)}."
)


@strawberry.interface(description="An expected failure of a mutation; nothing was written.")
class UserError:
    code: str = strawberry.field(description=CODE_DESCRIPTION)
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


@strawberry.type(
    description="A credit is more than is left to credit on the invoice or one of its lines (code "
    "CREDIT_EXCEEDS_INVOICE), or more than a credit note's remaining credit (code "
    "CREDIT_EXCEEDS_BALANCE); nothing was written."
)
class CreditExceededError(UserError):
    maximum: Decimal = strawberry.field(description="The most that may be credited (or used of the credit) now.")


@strawberry.type(description="The credentials were not accepted.")
class AuthenticationError(UserError):
    pass


@strawberry.type(description="The invitation link is unknown, expired or already used (all "
                 "alike); nothing changed. Ask an owner for a new invitation.")
class InvitationInvalidError(UserError):
    pass


@strawberry.type(description="The cost file cannot be imported as it is; nothing was written.")
class CostFileRejectedError(UserError):
    line: int | None = strawberry.field(
        description="The CSV line where the problem is (the header is line 1); null when it "
        "is the file as a whole."
    )
    column: str | None = strawberry.field(description="The FOCUS column concerned, when one is.")


@strawberry.type(
    description="The invoice template cannot be used (code TEMPLATE_REJECTED): it does not compile, or printing "
    "an invoice with it fails; nothing was stored."
)
class TemplateRejectedError(UserError):
    line: int | None = strawberry.field(
        description="The line of the template where the problem is; null when no line of it is at fault."
    )
    reason: str = strawberry.field(description="What is wrong there.")


CostSourceProblem = SourceProblem
strawberry.enum(
    CostSourceProblem, name="CostSourceProblem",
    description="Why a cost source cannot be read: ACCESS_DENIED (the credentials are refused or may not list "
    "and read the location), BUCKET_NOT_FOUND, UNREACHABLE (the endpoint or region does not answer), "
    "ENDPOINT_REFUSED (its host is on a loopback, private or link-local address), TOO_LARGE (a delivery is "
    "larger than MAX_UPLOAD_BYTES, or than the room left of MAX_STORED_DELIVERY_BYTES), NOT_AVAILABLE (a kind "
    "not yet available).",
)


@strawberry.type(description="The cost source cannot be read (code COST_SOURCE_UNREADABLE); nothing changed.")
class CostSourceUnreadableError(UserError):
    problem: CostSourceProblem = strawberry.field(description="Which problem it is.")


_TYPES: dict[type[errors.DomainError], type[UserError]] = {
    CostFileRejected: CostFileRejectedError,
    TemplateRejected: TemplateRejectedError,
    CostSourceUnreadable: CostSourceUnreadableError,
    errors.CreditExceeded: CreditExceededError,
    errors.AmountExceeded: AmountExceededError,
    errors.InvitationInvalid: InvitationInvalidError,
    errors.ValidationFailed: ValidationError,
    errors.NotFound: NotFoundError,
    errors.InvalidTransition: InvalidTransitionError,
    errors.Conflict: ConflictError,
    errors.AuthenticationFailed: AuthenticationError,
}


def user_error(exc: errors.DomainError) -> UserError:
    for domain_type in type(exc).__mro__:
        if domain_type in _TYPES:
            return _TYPES[domain_type](code=exc.code.value, message=exc.message, field=exc.field, **_extra(exc))
    raise exc


def _extra(exc: errors.DomainError) -> dict:
    """The fields an error type has beyond `UserError`'s."""
    if isinstance(exc, errors.AmountExceeded):
        return {"maximum": exc.maximum}
    if isinstance(exc, CostFileRejected):
        return {"line": exc.line, "column": exc.column}
    if isinstance(exc, TemplateRejected):
        return {"line": exc.line, "reason": exc.reason}
    if isinstance(exc, CostSourceUnreadable):
        return {"problem": exc.problem}
    return {}
