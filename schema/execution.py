"""How operations are executed: graphql-core's executor, with short paths for plain values.

A list page holds thousands of scalar values (an invoice's lines, their amounts), and for
each graphql-core builds a resolve info, calls the resolver, checks for an awaitable and walks
the type before it serializes. A field that only reads an attribute, with no arguments, no
resolver and no extension (so no permission check), and whose type is a scalar or an enum,
needs none of that: its value is read and serialized directly. Anything else, and any value
that is missing or does not serialize, takes graphql-core's own path, errors included.

A list of objects of which only such plain fields are asked (an invoice's lines, each with
its amount and description) goes one step further: each item's answer is built in one loop,
without completing each item as an object of its own (a path, a field collection lookup and a
field execution per value). One item that does not complete that way (a null where one may
not be, a value that does not serialize) sends the whole list back to graphql-core's path,
so errors are graphql-core's own, at their places.

Both rely on methods of graphql-core's executor that are not its public API (`execute_field`,
`complete_list_value`, `collect_subfields`, `get_stream_usage`); tests/test_execution.py
compares their answers with graphql-core's own and fails when an upgrade changes them."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, NamedTuple

from graphql import GraphQLField, GraphQLLeafType, GraphQLList, GraphQLNonNull, GraphQLObjectType, is_leaf_type
from graphql.pyutils import Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter


class _PlainLeaf(NamedTuple):
    type: GraphQLLeafType
    required: bool
    # Reads the value from the source: the attribute itself where strawberry's resolver for a
    # field without one (`StrawberryField.get_result`) would read it with `getattr`.
    read: Callable[[Any], Any]


# Per field of the (one, immutable) schema: its plain leaf, or None when it is not one.
_plain_leaves: dict[int, _PlainLeaf | None] = {}


def _plain_leaf(field: GraphQLField) -> _PlainLeaf | None:
    key = id(field)
    if key not in _plain_leaves:
        definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
        required = isinstance(field.type, GraphQLNonNull)
        inner = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        basic = definition is not None and definition.is_basic_field and not field.args
        _plain_leaves[key] = _PlainLeaf(inner, required, _reader(definition, field)) if basic and is_leaf_type(inner) else None
    return _plain_leaves[key]


def _reader(definition: Any, field: GraphQLField) -> Callable[[Any], Any]:
    if definition.default_resolver is getattr and definition.base_resolver is None:
        return attrgetter(definition.python_name)
    resolve = field.resolve
    assert resolve is not None, "strawberry gives every field a resolver"
    return lambda source: resolve(source, None)


class _PlainObject(NamedTuple):
    """How to answer one object of a list: (response name, resolver or None for __typename,
    leaf type, required) per field, the object type's name, and whether items may be null."""

    fields: tuple[tuple[str, Any, GraphQLLeafType | None, bool], ...]
    typename: str
    nullable_items: bool


def _plain_object(item_type: Any, grouped_field_set: Any) -> _PlainObject | None:
    nullable_items = not isinstance(item_type, GraphQLNonNull)
    object_type = item_type if nullable_items else item_type.of_type
    if not isinstance(object_type, GraphQLObjectType) or object_type.is_type_of is not None:
        return None
    plan: list[tuple[str, Any, GraphQLLeafType | None, bool]] = []
    for response_name, field_details_list in grouped_field_set.items():
        name = field_details_list[0].node.name.value
        if name == "__typename":
            plan.append((response_name, None, None, True))
            continue
        field = object_type.fields.get(name)
        leaf = _plain_leaf(field) if field is not None else None
        if leaf is None:
            return None
        plan.append((response_name, leaf.read, leaf.type, leaf.required))
    return _PlainObject(tuple(plan), object_type.name, nullable_items)


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    _plain_lists: dict[int, tuple[Any, _PlainObject | None]]

    def complete_list_value(
        self, return_type: GraphQLList, field_details_list: Any, info: Any, path: Any, result: Any,
        position_context: Any,
    ) -> Any:
        if type(result) is list and (self.middleware_manager is None or not self.middleware_manager.middlewares):
            plan = self._plain_list(return_type.of_type, field_details_list, path)
            if plan is not None:
                completed = _complete_plain(plan, result)
                if completed is not None:
                    return completed
        return super().complete_list_value(return_type, field_details_list, info, path, result, position_context)

    def _plain_list(self, item_type: Any, field_details_list: Any, path: Any) -> _PlainObject | None:
        """The plan for a list field's items when they are objects asked only plain fields;
        memoized per field as graphql-core memoizes its collected subfields (the list is kept
        alive with the entry, so that its id is not reused)."""
        try:
            plans = self._plain_lists
        except AttributeError:
            plans = self._plain_lists = {}
        key = id(field_details_list)
        entry = plans.get(key)
        if entry is None:
            plan = None
            inner = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
            plain_nodes = all(not details.node.directives for details in field_details_list)
            if isinstance(inner, GraphQLObjectType) and plain_nodes and self.get_stream_usage(field_details_list, path) is None:
                collected = self.collect_subfields(inner, field_details_list)
                if not collected.new_defer_usages and not collected.forbidden_directive_instances:
                    plan = _plain_object(item_type, collected.grouped_field_set)
            entry = plans[key] = (field_details_list, plan)
        return entry[1]

    def execute_field(
        self, parent_type: GraphQLObjectType, source: Any, field_details_list: Any, path: Any,
        position_context: Any,
    ) -> Any:
        field = parent_type.fields.get(field_details_list[0].node.name.value)
        # Schema extensions that wrap resolvers (middleware) must see every field.
        middlewares = self.middleware_manager.middlewares if self.middleware_manager is not None else ()
        leaf = _plain_leaf(field) if field is not None and not middlewares else None
        if leaf is not None:
            value = leaf.read(source)
            if value is None and not leaf.required:
                return None
            try:
                serialized = leaf.type.coerce_output_value(value) if value is not None else None
            except Exception:  # reported by graphql-core's path below, located at this field
                serialized = None
            if serialized is not None and serialized is not Undefined:
                return serialized
        return super().execute_field(parent_type, source, field_details_list, path, position_context)


def _complete_plain(plan: _PlainObject, items: list) -> list | None:
    """The list's answer, or None when an item needs graphql-core's own path."""
    completed: list[Any] = []
    append = completed.append
    fields, typename = plan.fields, plan.typename
    plain_type: type | None = None
    for item in items:
        if item is None:
            if not plan.nullable_items:
                return None
            append(None)
            continue
        if type(item) is not plain_type:
            # Asked of the class, once per class: an item that is an error or awaitable is
            # graphql-core's to complete.
            if isinstance(item, Exception) or hasattr(type(item), "__await__"):
                return None
            plain_type = type(item)
        row: dict[str, Any] = {}
        for response_name, resolve, leaf_type, required in fields:
            if resolve is None:
                row[response_name] = typename
                continue
            value = resolve(item)
            if value is None:
                if required:
                    return None
                row[response_name] = None
                continue
            try:
                serialized = leaf_type.coerce_output_value(value)  # type: ignore[union-attr]
            except Exception:  # reported by graphql-core's path, at its place
                return None
            if serialized is None or serialized is Undefined:
                return None
            row[response_name] = serialized
        append(row)
    return completed
