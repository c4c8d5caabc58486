"""Each GraphQL operation, seen from outside: timed and counted by type, name and outcome
(`infra.metrics`), and its name and organization written on the log lines it causes
(`infra.log_context`)."""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from infra import log_context, metrics


class Observed(SchemaExtension):
    """First of the schema's extensions, so that its time and outcome are the whole operation's
    (a subscription's: until it ends)."""

    def on_operation(self) -> Iterator[None]:
        timer = metrics.Timer()
        context = self.execution_context
        principal = getattr(context.context, "principal", None)
        name = context.operation_name
        with log_context.bound(
            operation=name[:100] if name else None,
            organization_id=principal.organization_id if principal else None,
        ):
            try:
                yield
            finally:
                # Also when the operation is cut short: a subscription whose client went away.
                self._count(timer.seconds)

    def _count(self, seconds: float) -> None:
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except RuntimeError:  # no document: it did not parse
            kind = "unknown"
        outcome = "error" if context.result is not None and context.result.errors else "ok"
        metrics.GRAPHQL_OPERATIONS.labels(kind, metrics.operation_label(context.operation_name), outcome).observe(seconds)
