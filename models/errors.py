"""Domain errors. `schema/` maps each one to a typed GraphQL `UserError`."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every expected business outcome that is not a success."""

    code = "ERROR"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class NotFound(DomainError):
    """The object does not exist, or the viewer may not see it (the two look the same)."""

    code = "NOT_FOUND"


class ValidationFailed(DomainError):
    """An input is malformed; nothing was written."""

    code = "INVALID"


class InvalidTransition(DomainError):
    """The object is not in a state that allows the operation."""

    code = "INVALID_TRANSITION"


class Conflict(DomainError):
    """The operation collides with existing data (a duplicate, a concurrent change)."""

    code = "CONFLICT"


class AuthenticationFailed(DomainError):
    """Wrong credentials, or an expired or revoked token."""

    code = "UNAUTHENTICATED"


class MissingBillingProfile(InvalidTransition):
    """An invoice cannot be generated for an account without a billing profile."""

    code = "MISSING_BILLING_PROFILE"


class GenerationFailed(DomainError):
    """Generation cannot succeed until a person changes something (the message says what)."""

    code = "GENERATION_FAILED"


class AmountExceeded(ValidationFailed):
    """An amount is more than may be paid or refunded; `maximum` is what may be."""

    code = "AMOUNT_EXCEEDED"

    def __init__(self, message: str, *, maximum, field: str | None = None, code: str | None = None):
        super().__init__(message, field=field, code=code)
        self.maximum = maximum
