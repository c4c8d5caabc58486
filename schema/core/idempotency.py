"""Idempotency keys on the mutations that create money or send something: `mutation(...,
idempotent=True)` gives the field an optional `idempotencyKey` argument, and this extension
does the rest (`models.idempotency` keeps the keys).

The first request with a key does the work and its answer is kept; a retry with the key and the
same input gets that answer again, and nothing is done. The answer is kept as the payload's
shape: the objects it names (the payment, the invoice) by type and id, every other value as it
was. A replay reads those objects again through their scoped queries, so it shows them as they
are now (an invoice paid since shows as paid) and only to whom may see them."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import inspect
import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from graphql import GraphQLError
from strawberry import relay
from strawberry.annotation import StrawberryAnnotation
from strawberry.extensions.field_extension import FieldExtension
from strawberry.types.arguments import StrawberryArgument
from strawberry.types.base import get_object_definition
from strawberry.types.union import StrawberryUnion

from models import idempotency
from models.errors import DomainError, RequestErrorCode, ValidationFailed
from schema.core.errors import ConflictError, user_error

ARGUMENT = "idempotency_key"
DESCRIPTION = (
    "Makes a retry safe: the same key with the same input within 24 hours answers the first answer again "
    "and does nothing; with another input it is refused (IDEMPOTENCY_KEY_REUSED); while the first request "
    "is still working, a second one is refused (IDEMPOTENCY_KEY_IN_PROGRESS) and may retry in a moment. "
    "Keys are per user; 1 to 255 characters, a UUID is a good one."
)
# Where the classes of a kept answer may come from.
_KEPT_MODULES = ("schema.", "models.")
_PART = 1 << 20


class Idempotent(FieldExtension):
    """The `idempotencyKey` of a mutation field (see the module)."""

    def apply(self, field: Any) -> None:
        union = field.type
        assert isinstance(union, StrawberryUnion) and ConflictError in union.types, (
            f"{field.python_name}: an idempotent mutation's payload names ConflictError"
        )
        field.arguments = [
            *field.arguments,
            StrawberryArgument(
                python_name=ARGUMENT,
                graphql_name=None,
                type_annotation=StrawberryAnnotation(str | None),
                description=DESCRIPTION,
                default=None,
            ),
        ]

    async def resolve_async(self, next_: Callable[..., Awaitable[Any]], source: Any, info: Any, **kwargs: Any) -> Any:
        key = kwargs.pop(ARGUMENT, None)
        if key is None:
            return await _answer(next_(source, info, **kwargs))
        user = info.context.authenticated().user
        try:
            idempotency.check_key(key)
        except ValidationFailed as malformed:
            # An argument no payload of the mutation answers: refused as the request's input.
            raise GraphQLError(
                malformed.message, extensions={"code": RequestErrorCode.BAD_USER_INPUT.value, "field": "idempotencyKey"}
            ) from None
        mine = (user.organization_id, user.id, key)
        first, kept = await idempotency.claim(*mine, await _fingerprint(info.field_name, kwargs))
        if not first:
            return await _thawed(kept, info)
        done = asyncio.Event()
        holding = asyncio.create_task(idempotency.renew(*mine, done))
        try:
            answer = await _answer(next_(source, info, **kwargs))
        except BaseException:
            await idempotency.release(*mine)
            raise
        finally:
            done.set()
            await holding
        await idempotency.answered(*mine, _frozen(answer))
        return answer


async def _answer(work: Awaitable[Any]) -> Any:
    """The work's answer, a refusal included: a refused request is answered the same way again."""
    try:
        return await work
    except DomainError as exc:
        return user_error(exc)


async def _fingerprint(field_name: str, arguments: dict[str, Any]) -> str:
    """What makes two requests the same: the mutation and its input (an uploaded file by its bytes)."""
    digest = hashlib.sha256(field_name.encode())
    digest.update(json.dumps(await _plain(arguments), sort_keys=True, default=str).encode())
    return digest.hexdigest()


async def _plain(value: Any) -> Any:
    if hasattr(value, "read") and hasattr(value, "seek"):
        # An upload (spooled to disk past a size): by its bytes, read a part at a time.
        digest = hashlib.sha256()
        while part := await value.read(_PART):
            digest.update(part)
        await value.seek(0)
        return digest.hexdigest()
    if isinstance(value, dict):
        return {key: await _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [await _plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: await _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    return value


def _class_path(value: Any) -> str:
    return f"{type(value).__module__}:{type(value).__qualname__}"


def _frozen(value: Any) -> Any:
    """An answer as JSON keeps it (see the module)."""
    if isinstance(value, Enum):
        return {"$enum": _class_path(value), "name": value.name}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, UUID):
        return {"$uuid": str(value)}
    if isinstance(value, (list, tuple)):
        return [_frozen(item) for item in value]
    if isinstance(value, dict):
        return {"$dict": {str(key): _frozen(item) for key, item in value.items()}}
    if isinstance(value, relay.Node):
        return {"$node": _class_path(value), "id": str(getattr(value, type(value).resolve_id_attr()))}
    if get_object_definition(value) is not None:
        return {"$type": _class_path(value), "fields": {name: _frozen(item) for name, item in vars(value).items()}}
    raise TypeError(f"an idempotent answer cannot keep a {type(value).__name__}")


def _class(path: str) -> Any:
    module, name = path.split(":")
    assert module.startswith(_KEPT_MODULES), module
    found: Any = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


async def _thawed(kept: Any, info: Any) -> Any:
    """The kept answer again, its objects read as they are now."""
    if isinstance(kept, list):
        return [await _thawed(item, info) for item in kept]
    if not isinstance(kept, dict):
        return kept
    if "$enum" in kept:
        return _class(kept["$enum"])[kept["name"]]
    if "$decimal" in kept:
        return Decimal(kept["$decimal"])
    if "$datetime" in kept:
        return datetime.fromisoformat(kept["$datetime"])
    if "$date" in kept:
        return date.fromisoformat(kept["$date"])
    if "$uuid" in kept:
        return UUID(kept["$uuid"])
    if "$dict" in kept:
        return {key: await _thawed(item, info) for key, item in kept["$dict"].items()}
    if "$node" in kept:
        nodes = _class(kept["$node"]).resolve_nodes(info=info, node_ids=[kept["id"]], required=False)
        return list(await nodes if inspect.isawaitable(nodes) else nodes)[0]
    cls = _class(kept["$type"])
    value = cls.__new__(cls)
    value.__dict__.update({name: await _thawed(item, info) for name, item in kept["fields"].items()})
    return value
