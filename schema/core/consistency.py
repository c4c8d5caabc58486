"""One answer, one moment: a query's reads all see the database as it was at its first read.

A query reads in several statements (the invoice, then its payments through a dataloader, then
its timeline...). Under READ COMMITTED each statement sees what committed before it began, so
a payment recorded between two of them showed in the answer beside its invoice's old amount due
and status, although the payment and the invoice's amounts commit in one transaction
(models/payments/ledger.py). Queries therefore run in one REPEATABLE READ transaction (the
reads share its connection). Mutations keep their own transactions (their effects follow
commits); subscriptions run each event's answer as an operation of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from infra import db


class ConsistentReads(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        if self.execution_context.operation_type is not OperationType.QUERY:
            yield
            return
        async with db.snapshot():
            yield
