"""The executor's short path for plain values answers exactly as graphql-core's own path:
the same values, the same errors at the same places, and every permission still checked."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from types import SimpleNamespace

import pytest
import strawberry

from schema.execution import ExecutionContext
from schema.permissions import OWNERS, requires


@strawberry.enum
class Colour(Enum):
    RED = "RED"


@strawberry.type
class Item:
    name: str
    note: str | None
    colour: Colour
    price: Decimal
    secret: str = strawberry.field(extensions=requires(*OWNERS))


ITEMS = [
    Item(name="fine", note=None, colour=Colour.RED, price=Decimal("1.50"), secret="s"),
    Item(name=None, note="null in a non-null field", colour=Colour.RED, price=Decimal(2), secret="s"),
    Item(name="bad enum", note=None, colour="BLUE", price=Decimal(3), secret="s"),
]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return ITEMS


@pytest.mark.parametrize("query", [
    "{ items { name note colour price } }",
    "{ items { name secret } }",
    "{ items { __typename alias: price ... on Item { note } } }",
])
def test_the_short_path_answers_as_graphql_core_does(query):
    context = SimpleNamespace(principal=None, auth_error=None)
    expected = strawberry.Schema(query=Query).execute_sync(query, context_value=context)
    result = strawberry.Schema(query=Query, execution_context_class=ExecutionContext).execute_sync(
        query, context_value=context
    )
    assert result.data == expected.data
    assert [(e.message, e.path) for e in result.errors or []] == [(e.message, e.path) for e in expected.errors or []]
    if "secret" in query:
        refused = [e.extensions.get("code") for e in result.errors if e.path[-1] == "secret"]
        assert refused and set(refused) == {"UNAUTHENTICATED"}
