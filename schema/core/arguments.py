"""The one check of every text argument, before any resolver runs.

PostgreSQL text cannot hold a NUL character, so no input that holds one can be stored or
matched: it is refused here, before it reaches a query (where the database would answer with
its own error). A query's text arguments (search terms, filter values, numbers, cursors) are
also capped at `MAX_QUERY_TEXT` characters, more than any value they are compared with.
Ids are not checked: a malformed id names nothing and is answered as such (null, not found).

A query answers a refused argument with a top-level BAD_USER_INPUT error naming it; a
mutation with its payload's `ValidationError`, whose `field` is the camelCase input (or, when
its payload has none, as a query does)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions.field_extension import FieldExtension
from strawberry.types.base import StrawberryList, StrawberryOptional, get_object_definition
from strawberry.types.union import StrawberryUnion
from strawberry.utils.str_converters import to_camel_case

from models.errors import RequestErrorCode, ValidationFailed

# Longer than any value a query's text is compared with: provider names and service
# categories (128 characters), invoice numbers, currencies, cursors; a search term is a part.
MAX_QUERY_TEXT = 128


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A text argument that cannot be used: where (camelCase path) and why."""

    path: str
    why: str

    def message(self, path: str) -> str:
        return f"`{path}` {self.why}."


def refusal(arguments: dict[str, Any], types: dict[str, Any], limit: int | None) -> Refusal | None:
    """The first text among `arguments` (python name -> value; `types` python name ->
    strawberry type) that holds a NUL character or, with a `limit`, is longer."""
    for name, value in arguments.items():
        found = _refusal(value, types.get(name), to_camel_case(name), limit)
        if found:
            return found
    return None


def _refusal(value: Any, type_: Any, path: str, limit: int | None) -> Refusal | None:
    while isinstance(type_, StrawberryOptional):
        type_ = type_.of_type
    if isinstance(value, str):
        if type_ is strawberry.ID:
            return None
        if "\x00" in value:
            return Refusal(path, "contains a NUL character")
        if limit is not None and len(value) > limit:
            return Refusal(path, f"has at most {limit} characters")
        return None
    if isinstance(value, (list, tuple)):
        item_type = type_.of_type if isinstance(type_, StrawberryList) else None
        return next((found for item in value if (found := _refusal(item, item_type, path, limit))), None)
    if isinstance(value, dict):  # a JSON value: its keys and texts are stored as they are
        return next((
            found for key, item in value.items()
            if (found := _refusal(key, None, path, limit) or _refusal(item, None, path, limit))
        ), None)
    definition = get_object_definition(value) if value is not None else None
    if definition is not None and definition.is_input:
        for field in definition.fields:
            name = field.graphql_name or to_camel_case(field.python_name)
            found = _refusal(getattr(value, field.python_name, None), field.type, f"{path}.{name}", limit)
            if found:
                return found
    return None


class CheckedArguments(FieldExtension):
    """Refuses a field's unusable text arguments (see the module) before its resolver runs.
    On a mutation it raises the domain's `ValidationFailed`, which the mutation's own error
    mapping (`schema.core.mutations.DomainErrors`, outside this one) answers as its payload."""

    def apply(self, field: Any) -> None:
        self.types = {argument.python_name: argument.type for argument in field.arguments}
        # A mutation whose payload has no `ValidationError` (it takes ids and a key, no text of
        # its own) refuses a bad argument as the request's input, as a query does.
        members = field.type.types if isinstance(field.type, StrawberryUnion) else ()
        self.in_payload = any(getattr(member, "__name__", "") == "ValidationError" for member in members)

    def _check(self, info: Any, kwargs: dict[str, Any]) -> None:
        if info.path.typename == "Mutation":
            found = refusal(kwargs, self.types, None)
            if found:
                # Payload errors name a field of a mutation's `input` without the prefix.
                field = found.path.removeprefix("input.")
                if not self.in_payload:
                    raise GraphQLError(
                        found.message(field), extensions={"code": RequestErrorCode.BAD_USER_INPUT.value, "field": field}
                    )
                raise ValidationFailed(found.message(field), field=field)
            return
        found = refusal(kwargs, self.types, MAX_QUERY_TEXT)
        if found:
            raise GraphQLError(found.message(found.path), extensions={"code": RequestErrorCode.BAD_USER_INPUT.value})

    def resolve(self, next_: Callable[..., Any], source: Any, info: Any, **kwargs: Any) -> Any:
        self._check(info, kwargs)
        return next_(source, info, **kwargs)

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Any, **kwargs: Any
    ) -> Any:
        self._check(info, kwargs)
        result = next_(source, info, **kwargs)
        # A subscription's resolver gives its event stream, which is iterated, not awaited.
        return result if inspect.isasyncgen(result) else await result
