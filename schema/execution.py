"""How operations are executed: graphql-core's executor, with a short path for plain values.

A list page holds thousands of scalar values (an invoice's lines, their amounts), and for
each graphql-core builds a resolve info, calls the resolver, checks for an awaitable and walks
the type before it serializes. A field that only reads an attribute, with no arguments, no
resolver and no extension (so no permission check), and whose type is a scalar or an enum,
needs none of that: its value is read and serialized directly. Anything else, and any value
that is missing or does not serialize, takes graphql-core's own path, errors included."""

from __future__ import annotations

from typing import Any, NamedTuple

from graphql import GraphQLField, GraphQLLeafType, GraphQLNonNull, GraphQLObjectType, is_leaf_type
from graphql.pyutils import Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter


class _PlainLeaf(NamedTuple):
    type: GraphQLLeafType
    required: bool


# Per field of the (one, immutable) schema: its plain leaf, or None when it is not one.
_plain_leaves: dict[int, _PlainLeaf | None] = {}


def _plain_leaf(field: GraphQLField) -> _PlainLeaf | None:
    key = id(field)
    if key not in _plain_leaves:
        definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
        required = isinstance(field.type, GraphQLNonNull)
        inner = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        basic = definition is not None and definition.is_basic_field and not field.args
        _plain_leaves[key] = _PlainLeaf(inner, required) if basic and is_leaf_type(inner) else None
    return _plain_leaves[key]


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def execute_field(
        self, parent_type: GraphQLObjectType, source: Any, field_details_list: Any, path: Any,
        position_context: Any,
    ) -> Any:
        field = parent_type.fields.get(field_details_list[0].node.name.value)
        # Schema extensions that wrap resolvers (middleware) must see every field.
        middlewares = self.middleware_manager.middlewares if self.middleware_manager is not None else ()
        leaf = _plain_leaf(field) if field is not None and not middlewares else None
        if leaf is not None:
            value = field.resolve(source, None)
            if value is None and not leaf.required:
                return None
            try:
                serialized = leaf.type.coerce_output_value(value) if value is not None else None
            except Exception:  # reported by graphql-core's path below, located at this field
                serialized = None
            if serialized is not None and serialized is not Undefined:
                return serialized
        return super().execute_field(parent_type, source, field_details_list, path, position_context)
