"""Every mutation is declared through `mutation()`: its scope check, the one place where a
domain error becomes the typed `UserError` member of its payload union, and the unit of work
whose committed transitions are followed by their effects (jobs/effects.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from strawberry.extensions.field_extension import FieldExtension

from jobs.effects import following
from models.actors import Actor, acting
from models.base import Scope
from models.errors import DomainError
from models.text import ColumnValueError, out_of_range
from schema.core.arguments import CheckedArguments
from schema.core.errors import user_error
from schema.core.idempotency import Idempotent
from schema.core.permissions import requires


class DomainErrors(FieldExtension):
    """A domain error raised under a mutation (refused input, missing object, state that
    does not allow it) is answered as its payload's error; the domain wrote nothing. So is a
    value that Tortoise refuses to send to its column (`models.text.out_of_range`), as a
    last guard where a domain operation does not check the length itself."""

    def resolve(self, next_: Callable[..., Any], source: Any, info: Any, **kwargs: Any) -> Any:
        try:
            return next_(source, info, **kwargs)
        except DomainError as exc:
            return user_error(exc)
        except ColumnValueError as exc:
            return user_error(out_of_range(exc))

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Any, **kwargs: Any
    ) -> Any:
        try:
            return await next_(source, info, **kwargs)
        except DomainError as exc:
            return user_error(exc)
        except ColumnValueError as exc:
            return user_error(out_of_range(exc))


class AfterCommit(FieldExtension):
    """A mutation is a unit of work: the transitions it committed are announced and the work
    they call for queued once it has its answer, before the answer is sent. Its changes are
    made by the requester (`models.actors.acting`), as the audit log records them."""

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Any, **kwargs: Any
    ) -> Any:
        with acting(requester(info.context)):
            async with following(info.context.redis):
                return await next_(source, info, **kwargs)


def requester(context: Any) -> Actor:
    """Who asks: the user and the token it presented, from the request's client address (the
    proxy's, unless uvicorn was told to trust its `X-Forwarded-For`)."""
    client = getattr(context.request, "client", None)
    address = client.host if client else None
    principal = context.principal
    if principal is None:
        return Actor(label="anonymous", address=address)
    token = principal.token
    return Actor(user_id=principal.user.id, label=principal.user.email, token_id=token.id if token else None, address=address)


def mutation(
    *, description: str, scopes: tuple[Scope, ...] = (), resolver: Any = None, idempotent: bool = False
) -> Any:
    """`@mutation(description=..., scopes=OWNERS)` on a resolver of a `Mutation` type (no
    scopes: open to anyone, as `login` is). Its text arguments are checked (`schema.core.arguments`).
    `idempotent=True`: it takes an `idempotencyKey` (`schema.core.idempotency`), checked once
    the scope is, its payload naming `ConflictError`."""
    # The last extension of a field runs first: every error of the others becomes a payload.
    checks = requires(*scopes) if scopes else [CheckedArguments()]
    keyed: list[FieldExtension] = [Idempotent()] if idempotent else []
    extensions: list[FieldExtension] = [*keyed, *checks, DomainErrors(), AfterCommit()]
    if resolver is not None:
        return strawberry.mutation(resolver=resolver, description=description, extensions=extensions)
    return strawberry.mutation(description=description, extensions=extensions)
