"""Every error a client receives carries a listed `extensions.code`, and none carries the text
of an unexpected failure in production.

A failure inside a resolver that is not a GraphQL error (a bug, a lost connection) is logged
with a request id and answered as INTERNAL_SERVER_ERROR with that id; in production its message
is replaced, since it may quote a database or a library. Errors about the document or its
variables (syntax, validation, coercion) come before execution, have no path, and are
BAD_USER_INPUT."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

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
        request_id = uuid.uuid4().hex
        log.error("unexpected error (request %s) at %s", request_id, error.path, exc_info=error.original_error)
        return GraphQLError(
            MASKED_MESSAGE if production else error.message,
            nodes=error.nodes, path=error.path, original_error=None if production else error.original_error,
            extensions={"code": RequestErrorCode.INTERNAL_SERVER_ERROR.value, "requestId": request_id},
        )
    if not (error.extensions or {}).get("code") and error.path is None:
        error.extensions = {**(error.extensions or {}), "code": RequestErrorCode.BAD_USER_INPUT.value}
    return error
