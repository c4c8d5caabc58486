"""Domain errors, and every error code a client can receive.

`schema/` maps each domain error to a typed GraphQL `UserError` in one place; its `code` is one
of `ErrorCode`. Errors of the request itself (a bad token, a field outside the scope, a
subscription ended by the server) are top-level GraphQL errors whose `extensions.code` is one
of `RequestErrorCode`. Both lists are printed in the SDL."""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """`UserError.code`: an expected business outcome that is not a success."""

    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    CONFLICT = "CONFLICT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    MISSING_BILLING_PROFILE = "MISSING_BILLING_PROFILE"
    GENERATION_FAILED = "GENERATION_FAILED"
    AMOUNT_EXCEEDED = "AMOUNT_EXCEEDED"
    OVERPAYMENT = "OVERPAYMENT"
    REFUND_EXCEEDS_PAYMENT = "REFUND_EXCEEDS_PAYMENT"
    INVOICE_PAID = "INVOICE_PAID"
    SUB_ACCOUNT_TAKEN = "SUB_ACCOUNT_TAKEN"
    INVALID_COST_FILE = "INVALID_COST_FILE"
    NOT_EXPORTABLE = "NOT_EXPORTABLE"
    NOTHING_TO_EXPORT = "NOTHING_TO_EXPORT"
    LOGIN_THROTTLED = "LOGIN_THROTTLED"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    INVITATION_INVALID = "INVITATION_INVALID"
    LAST_OWNER = "LAST_OWNER"
    CHECKS_UNACKNOWLEDGED = "CHECKS_UNACKNOWLEDGED"
    CREDIT_EXCEEDS_INVOICE = "CREDIT_EXCEEDS_INVOICE"
    CREDIT_EXCEEDS_BALANCE = "CREDIT_EXCEEDS_BALANCE"
    XERO_NOT_CONNECTED = "XERO_NOT_CONNECTED"
    COST_SOURCE_UNREADABLE = "COST_SOURCE_UNREADABLE"
    DATA_INCOMPLETE = "DATA_INCOMPLETE"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_PROGRESS = "IDEMPOTENCY_KEY_IN_PROGRESS"
    TEMPLATE_REJECTED = "TEMPLATE_REJECTED"


ERROR_CODE_MEANINGS: dict[ErrorCode, str] = {
    ErrorCode.INVALID: "an input is malformed or out of range",
    ErrorCode.NOT_FOUND: "the object does not exist or is not visible to you",
    ErrorCode.INVALID_TRANSITION: "the object's state does not allow the operation",
    ErrorCode.CONFLICT: "it collides with existing data or a concurrent change",
    ErrorCode.UNAUTHENTICATED: "the credentials were not accepted",
    ErrorCode.MISSING_BILLING_PROFILE: "the managed account has no billing profile",
    ErrorCode.GENERATION_FAILED: "generation cannot succeed until something is changed",
    ErrorCode.AMOUNT_EXCEEDED: "an amount is more than may be paid or refunded",
    ErrorCode.OVERPAYMENT: "a payment is more than the amount due",
    ErrorCode.REFUND_EXCEEDS_PAYMENT: "a refund is more than what is left of the payment",
    ErrorCode.INVOICE_PAID: "the invoice keeps payments: refund them first",
    ErrorCode.SUB_ACCOUNT_TAKEN: "another managed account already claims the sub-account",
    ErrorCode.INVALID_COST_FILE: "the cost file cannot be imported as it is",
    ErrorCode.NOT_EXPORTABLE: "an invoice of the request cannot be exported",
    ErrorCode.NOTHING_TO_EXPORT: "no approved invoice matches the export",
    ErrorCode.LOGIN_THROTTLED: "too many sign-in attempts: wait the seconds the message gives, then try again",
    ErrorCode.EMAIL_TAKEN: "a user with this e-mail address already exists",
    ErrorCode.INVITATION_INVALID: "the invitation link is unknown, expired or already used: ask for a new one",
    ErrorCode.LAST_OWNER: "the organization's last active owner cannot be demoted or deactivated",
    ErrorCode.CHECKS_UNACKNOWLEDGED: "the invoice has warnings (`Invoice.checks`) the approval did not acknowledge",
    ErrorCode.CREDIT_EXCEEDS_INVOICE: "a credit note is more than is left to credit on the invoice (or on a line)",
    ErrorCode.CREDIT_EXCEEDS_BALANCE: "more than the credit note's remaining credit is refunded or applied",
    ErrorCode.XERO_NOT_CONNECTED: "Xero is not connected (or not set up), or its connection must be renewed",
    ErrorCode.COST_SOURCE_UNREADABLE: "the cost source cannot be read: credentials refused, bucket missing, "
    "endpoint unreachable or refused (`problem` says which)",
    ErrorCode.DATA_INCOMPLETE: "a cost source's data of the month is not complete yet (`BillingPeriod.completeness`): "
    "close it with `force: true` to invoice it as it is",
    ErrorCode.IDEMPOTENCY_KEY_REUSED: "the idempotency key was used before with another input: use a new key",
    ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS: "the first request with this idempotency key is still working: "
    "retry in a moment to receive its answer",
    ErrorCode.TEMPLATE_REJECTED: "an invoice template does not compile, or rendering an invoice with it fails "
    "(`line` and `reason` say where and why); nothing was stored",
}


class RequestErrorCode(str, Enum):
    """`extensions.code` of a top-level GraphQL error: the request itself was refused."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    FELL_BEHIND = "FELL_BEHIND"
    EVENTS_MISSED = "EVENTS_MISSED"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


REQUEST_ERROR_CODE_MEANINGS: dict[RequestErrorCode, str] = {
    RequestErrorCode.UNAUTHENTICATED: "no token, or one that is malformed, expired or revoked",
    RequestErrorCode.FORBIDDEN: "the field needs another scope",
    RequestErrorCode.NOT_FOUND: "a required object does not exist or is not visible",
    RequestErrorCode.BAD_USER_INPUT: "the document or its variables are malformed, or an argument is out of range",
    RequestErrorCode.FELL_BEHIND: "a subscriber left too many events unread: re-query, then subscribe again",
    RequestErrorCode.EVENTS_MISSED: "the server lost its event stream: re-query, then subscribe again",
    RequestErrorCode.SHUTTING_DOWN: "the server is restarting: re-query, then subscribe again",
    RequestErrorCode.QUERY_TOO_COMPLEX: "the document is past a limit (tokens, depth, aliases, or cost in objects)",
    RequestErrorCode.PAYLOAD_TOO_LARGE: "the request body is past its route's limit (answered with HTTP 413)",
    RequestErrorCode.INTERNAL_SERVER_ERROR: "an unexpected failure; `extensions.requestId` finds it in the server's log",
}


class DomainError(Exception):
    """Base of every expected business outcome that is not a success."""

    code: ErrorCode = ErrorCode.INVALID

    def __init__(self, message: str, *, field: str | None = None, code: ErrorCode | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class NotFound(DomainError):
    """The object does not exist, or the viewer may not see it (the two look the same)."""

    code = ErrorCode.NOT_FOUND


class ValidationFailed(DomainError):
    """An input is malformed; nothing was written."""

    code = ErrorCode.INVALID


class CostFileRejected(ValidationFailed):
    """The cost delivery cannot be imported as it is; nothing was written.

    `line` is the 1-based CSV line (the header is line 1) where the problem starts, `row` the
    1-based data row (Parquet has rows, not lines), both None when the problem is the file
    as a whole; `column` names the FOCUS column concerned; `file` names the part file of a
    delivery of several (and is in the message then, with `name_file`). A check that does
    not know where it reads is `placed` by the reader that does, and raised on as it is.
    """

    code = ErrorCode.INVALID_COST_FILE

    def __init__(
        self, message: str, *, line: int | None = None, column: str | None = None,
        row: int | None = None, file: str | None = None, name_file: bool = False,
    ):
        super().__init__(message, field="file")
        self.reason = message
        self.column = column
        self.placed(line=line, row=row, file=file, name_file=name_file)

    def placed(
        self, *, line: int | None = None, row: int | None = None, file: str | None = None, name_file: bool = False,
    ) -> CostFileRejected:
        """This refusal at `line` or `row` of `file` (named in the message with `name_file`)."""
        self.line, self.row, self.file = line, row, file
        where = [file] if file and name_file else []
        if line is not None:
            where.append(f"line {line}")
        elif row is not None:
            where.append(f"row {row}")
        self.message = f"{', '.join(where)}: {self.reason}" if where else self.reason
        self.args = (self.message,)
        return self


class InvalidTransition(DomainError):
    """The object is not in a state that allows the operation."""

    code = ErrorCode.INVALID_TRANSITION


class Conflict(DomainError):
    """The operation collides with existing data (a duplicate, a concurrent change)."""

    code = ErrorCode.CONFLICT


class AuthenticationFailed(DomainError):
    """Wrong credentials, or an expired or revoked token."""

    code = ErrorCode.UNAUTHENTICATED


class MissingBillingProfile(InvalidTransition):
    """An invoice cannot be generated for an account without a billing profile."""

    code = ErrorCode.MISSING_BILLING_PROFILE


class GenerationFailed(DomainError):
    """Generation cannot succeed until a person changes something (the message says what)."""

    code = ErrorCode.GENERATION_FAILED


class AmountExceeded(ValidationFailed):
    """An amount is more than may be paid or refunded; `maximum` is what may be."""

    code = ErrorCode.AMOUNT_EXCEEDED

    def __init__(self, message: str, *, maximum, field: str | None = None, code: ErrorCode | None = None):
        super().__init__(message, field=field, code=code)
        self.maximum = maximum


class EmailTaken(Conflict):
    """Another user already signs in with this e-mail address."""

    code = ErrorCode.EMAIL_TAKEN


class InvitationInvalid(DomainError):
    """An invitation token that is unknown, expired, withdrawn or already used (all alike)."""

    code = ErrorCode.INVITATION_INVALID


class LastOwner(InvalidTransition):
    """The change would leave the organization without an active owner."""

    code = ErrorCode.LAST_OWNER


class CreditExceeded(AmountExceeded):
    """A credit is more than is left to credit on the invoice, or more than a credit note's
    remaining credit; `maximum` is what may be credited or used."""

    code = ErrorCode.CREDIT_EXCEEDS_INVOICE


class TemplateRejected(ValidationFailed):
    """An invoice template cannot be used: it does not compile, or printing an invoice with it
    fails. `line` is the 1-based line of the template where the problem is (None when no line of
    it is at fault), `reason` what is wrong there; nothing was stored."""

    code = ErrorCode.TEMPLATE_REJECTED

    def __init__(self, reason: str, *, line: int | None = None):
        message = f"line {line}: {reason}" if line is not None else reason
        super().__init__(message, field="source")
        self.reason, self.line = reason, line
