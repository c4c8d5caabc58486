"""The executor's short paths for plain values answer exactly as graphql-core's own path:
the same values, the same errors at the same places, and every permission still checked.
They rely on methods of graphql-core's executor outside its public API (`execute_field`,
`complete_list_value`, `collect_subfields`, `get_stream_usage`): these tests fail when an
upgrade changes them, and also check that the short paths are taken at all."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from types import SimpleNamespace

import pytest
import strawberry

from schema.core.execution import ExecutionContext
from schema.core.permissions import OWNERS, requires


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
class Line:
    amount: Decimal
    note: str | None
    colour: Colour


LINES = [Line(amount=Decimal("1.10"), note=None, colour=Colour.RED), Line(amount=Decimal(2), note="x", colour=Colour.RED)]
BAD_LINES = {
    "null in a non-null field": [Line(amount=None, note=None, colour=Colour.RED)],
    "a value that does not serialize": [Line(amount=Decimal(1), note=None, colour="BLUE")],
    "a null item": [LINES[0], None],
}


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return ITEMS

    @strawberry.field
    def lines(self) -> list[Line]:
        return LINES

    @strawberry.field
    def maybe_lines(self) -> list[Line | None]:
        return LINES + [None]

    @strawberry.field
    def bad_lines(self, which: str) -> list[Line]:
        return BAD_LINES[which]


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


def _both(query: str, variables: dict | None = None):
    context = SimpleNamespace(principal=None, auth_error=None)
    expected = strawberry.Schema(query=Query).execute_sync(query, variable_values=variables, context_value=context)
    result = strawberry.Schema(query=Query, execution_context_class=ExecutionContext).execute_sync(
        query, variable_values=variables, context_value=context
    )
    return expected, result


@pytest.mark.parametrize("query", [
    "{ lines { amount note colour } }",
    "{ lines { __typename a: amount b: amount ... on Line { note } } }",
    "{ maybeLines { amount } }",
    "query($skip: Boolean!) { lines { amount note @skip(if: $skip) } }",
    '{ badLines(which: "null in a non-null field") { amount } }',
    '{ badLines(which: "a value that does not serialize") { amount colour } }',
    '{ badLines(which: "a null item") { amount } }',
])
def test_lists_of_plain_objects_answer_as_graphql_core_does(query, monkeypatch):
    from schema.core import execution

    taken = []
    original = execution._complete_plain
    monkeypatch.setattr(execution, "_complete_plain", lambda plan, items: taken.append(r := original(plan, items)) or r)
    expected, result = _both(query, {"skip": True})
    assert result.data == expected.data
    assert [(e.message, e.path) for e in result.errors or []] == [(e.message, e.path) for e in expected.errors or []]
    # The short path answered the good lists itself, and left the bad ones to graphql-core.
    assert taken and all((r is None) == ("bad" in query) for r in taken)


def test_a_field_of_another_schema_is_never_taken_for_one_seen_before():
    """Fields of schemas built and dropped one after another (as tests do) may come at the
    address of a field seen before; each is still planned as what it is."""
    from graphql import GraphQLField, GraphQLString

    from schema.core import execution

    plain = strawberry.Schema(query=Query)._schema.query_type.fields["lines"].type.of_type.of_type.of_type.fields["note"]
    for turn in range(2000):
        field = GraphQLField(plain.type, extensions=plain.extensions) if turn % 2 else GraphQLField(GraphQLString)
        assert (execution._plain_leaf(field) is not None) == bool(turn % 2), turn
        del field
