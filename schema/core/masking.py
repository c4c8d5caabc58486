"""Every error a client receives carries a listed `extensions.code`, and none carries the text
of an unexpected failure in production.

A failure inside a resolver that is not a GraphQL error (a bug, a lost connection) is logged
with a request id and answered as INTERNAL_SERVER_ERROR with that id; in production its message
is replaced, since it may quote a database or a library. Errors about the document or its
variables (syntax, validation, coercion) come before execution, have no path, and are
BAD_USER_INPUT.

Errors are logged without the document: a GraphQL error's text (`str(error)`) quotes the lines
of the document around it, arguments and all, and a password written inline in a login would
reach the log with them. An error about the document is logged by its code and place alone (its
message may quote a value); an error of a field by its code, path and message (the server's
words)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from infra import log_context
from models.errors import DomainError, NotFound, RequestErrorCode

log = logging.getLogger(__name__)
MASKED_MESSAGE = "Unexpected error; the server's log has it under this request id."


def _unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        production = self.execution_context.context.settings.environment == "production"
        result.errors = [coded(error, production) for error in result.errors]


def coded(error: GraphQLError, production: bool) -> GraphQLError:
    """The error as a client receives it: with its code, and masked if unexpected in production."""
    original = error.original_error
    if isinstance(original, DomainError):
        # Raised under a query (mutations answer it in their payload): a bad argument, or an
        # object that is not there.
        code = RequestErrorCode.NOT_FOUND if isinstance(original, NotFound) else RequestErrorCode.BAD_USER_INPUT
        return GraphQLError(
            original.message, nodes=error.nodes, path=error.path,
            extensions={"code": code.value, **({"field": original.field} if original.field else {})},
        )
    if _unexpected(error):
        request_id = log_context.get("request_id") or uuid.uuid4().hex
        log.error("unexpected error (request %s) at %s", request_id, error.path, exc_info=error.original_error)
        return GraphQLError(
            MASKED_MESSAGE if production else error.message,
            nodes=error.nodes, path=error.path, original_error=None if production else error.original_error,
            extensions={"code": RequestErrorCode.INTERNAL_SERVER_ERROR.value, "requestId": request_id},
        )
    if not (error.extensions or {}).get("code") and error.path is None:
        error.extensions = {**(error.extensions or {}), "code": RequestErrorCode.BAD_USER_INPUT.value}
    return error


class Schema(strawberry.Schema):
    """strawberry's Schema, logging its errors without the document they came from."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        for error in errors:
            code = (error.extensions or {}).get("code", "")
            where = [f"{location.line}:{location.column}" for location in error.locations or []]
            if _unexpected(error):
                log.error("GraphQL error at %s: %s", error.path, error.message, exc_info=error.original_error)
            elif error.path is None:
                log.warning("GraphQL document refused (%s) at %s", code or RequestErrorCode.BAD_USER_INPUT.value, where)
            else:
                log.info("GraphQL error %s at %s: %s", code, error.path, error.message)
