"""The typed per-request context: who is asking, and fresh dataloaders."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from arq import ArqRedis
from strawberry.extensions import SchemaExtension
from strawberry.types import Info as StrawberryInfo

from infra.events import Hub
from infra.settings import Settings
from models.auth import Principal
from schema.core.loaders import Loaders


@dataclass
class Context:
    settings: Settings
    redis: ArqRedis
    request: Any = None
    response: Any = None
    principal: Principal | None = None
    # Why authentication failed, when a token was sent but not accepted.
    auth_error: str | None = None
    connection_params: dict[str, Any] = field(default_factory=dict)
    # On a WebSocket: the `authorization` value of connection_init, checked per operation.
    bearer: str | None = None
    # This process's live event relay (subscriptions).
    events: Hub | None = None
    loaders: Loaders = field(default_factory=Loaders)

    def authenticated(self) -> Principal:
        """The principal, where there must be one: under a field whose permission
        (`requires(...)`) refuses anonymous requests, and in the objects such fields return."""
        assert self.principal is not None, "an anonymous request got past a field's permission"
        return self.principal


Info = StrawberryInfo[Context, None]


class ReleaseLoaded(SchemaExtension):
    """Once an operation has its answer, its context's loaders forget what they loaded
    (`Loaders.clear`): freed then, not at the collector's next pass."""

    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        if isinstance(context, Context):
            context.loaders.clear()
