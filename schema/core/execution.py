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
from types import SimpleNamespace
from typing import Any, NamedTuple

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    is_leaf_type,
)
from graphql.pyutils import Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter


class _PlainLeaf(NamedTuple):
    type: GraphQLLeafType
    required: bool
    # Reads the value from the source: the attribute itself where strawberry's resolver for a
    # field without one (`StrawberryField.get_result`) would read it with `getattr`.
    read: Callable[[Any], Any]


# Per field of a schema: its plain leaf, or None when it is not one. The entry holds the field
# so that its id is not reused by another schema's field (tests build many schemas).
_plain_leaves: dict[int, tuple[GraphQLField, _PlainLeaf | None]] = {}


def _plain_leaf(field: GraphQLField) -> _PlainLeaf | None:
    entry = _plain_leaves.get(id(field))
    if entry is None:
        definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
        required = isinstance(field.type, GraphQLNonNull)
        inner = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        basic = definition is not None and definition.is_basic_field and not field.args
        leaf = _PlainLeaf(inner, required, _reader(definition, field)) if basic and is_leaf_type(inner) else None
        entry = _plain_leaves[id(field)] = (field, leaf)
    return entry[1]


def _reader(definition: Any, field: GraphQLField) -> Callable[[Any], Any]:
    if definition.default_resolver is getattr and definition.base_resolver is None:
        return attrgetter(definition.python_name)
    resolve = field.resolve
    assert resolve is not None, "strawberry gives every field a resolver"
    return lambda source: resolve(source, None)


_LEAF, _TYPENAME, _OBJECT, _LIST = range(4)
_MISSING = object()


class _Field(NamedTuple):
    """One field of a plain object: its response name, what it is, how it is read from the
    source, its leaf type (leaves), whether it is non-null, and the plan of the objects it
    holds (objects, lists of objects) with whether a list's items may be null."""

    name: str
    kind: int
    read: Callable[[Any], Any] | None
    leaf: GraphQLLeafType | None
    required: bool
    nested: _PlainObject | None = None
    nullable_items: bool = False


class _PlainObject(NamedTuple):
    fields: tuple[_Field, ...]
    typename: str
    is_type_of: Callable[[Any, Any], Any] | None
    # When every field asked is a plain leaf and the type has no `is_type_of`: (response
    # name, reader, serializer, non-null) per field, for the tight loop of `_complete_leaves`.
    leaves: tuple[tuple[str, Any, Any, bool], ...] | None = None


class _PlainList(NamedTuple):
    item: _PlainObject
    nullable_items: bool

    @property
    def typename(self) -> str:
        return self.item.typename


class _Fallback(Exception):
    """A value that graphql-core's own path must complete (and report, if it is an error)."""


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    _plain_lists: dict[int, tuple[Any, _PlainList | None]]

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

    def _plain_list(self, item_type: Any, field_details_list: Any, path: Any) -> _PlainList | None:
        """The plan for a list field's items when they are objects asked only plain fields,
        objects and lists of them, and relations the page loaded; memoized per field as
        graphql-core memoizes its collected subfields (the list is kept alive with the entry,
        so that its id is not reused). Per request: a relation behind a scope is planned only
        when this request's principal has it."""
        try:
            plans = self._plain_lists
        except AttributeError:
            plans = self._plain_lists = {}
        key = id(field_details_list)
        entry = plans.get(key)
        if entry is None:
            plan = None
            inner = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
            if isinstance(inner, GraphQLObjectType) and self.get_stream_usage(field_details_list, path) is None:
                item = self._object_plan(inner, field_details_list, 0)
                if item is not None:
                    plan = _PlainList(item, not isinstance(item_type, GraphQLNonNull))
            entry = plans[key] = (field_details_list, plan)
        return entry[1]

    def _object_plan(self, object_type: GraphQLObjectType, field_details_list: Any, depth: int) -> _PlainObject | None:
        if depth > 3 or any(details.node.directives for details in field_details_list):
            return None
        collected = self.collect_subfields(object_type, field_details_list)
        if collected.new_defer_usages or collected.forbidden_directive_instances:
            return None
        fields = []
        for response_name, details in collected.grouped_field_set.items():
            name = details[0].node.name.value
            if name == "__typename":
                fields.append(_Field(response_name, _TYPENAME, None, None, True))
                continue
            field = object_type.fields.get(name)
            if field is None:
                return None
            leaf = _plain_leaf(field)
            if leaf is not None:
                fields.append(_Field(response_name, _LEAF, leaf.read, leaf.type, leaf.required))
                continue
            read = self._object_reader(field, name)
            if read is None or field.args:
                return None
            required = isinstance(field.type, GraphQLNonNull)
            inner = field.type.of_type if required else field.type
            if isinstance(inner, GraphQLList):
                nullable_items = not isinstance(inner.of_type, GraphQLNonNull)
                item_type = inner.of_type.of_type if not nullable_items else inner.of_type
                if not isinstance(item_type, GraphQLObjectType) or details[0].node.directives:
                    return None
                nested = self._object_plan(item_type, details, depth + 1)
                if nested is None:
                    return None
                fields.append(_Field(response_name, _LIST, read, None, required, nested, nullable_items))
            elif isinstance(inner, GraphQLObjectType):
                nested = self._object_plan(inner, details, depth + 1)
                if nested is None:
                    return None
                fields.append(_Field(response_name, _OBJECT, read, None, required, nested))
            else:
                return None
        leaves = None
        if object_type.is_type_of is None and all(field.kind == _LEAF for field in fields):
            leaves = tuple(
                (field.name, field.read, field.leaf.coerce_output_value, field.required)  # type: ignore[union-attr]
                for field in fields
            )
        return _PlainObject(tuple(fields), object_type.name, object_type.is_type_of, leaves)

    def _object_reader(self, field: GraphQLField, name: str) -> Callable[[Any], Any] | None:
        """How to read a field holding objects without its resolver: an attribute (a field
        with no resolver or extension), or a relation the page loaded (`PREFETCHED`) whose
        only extensions are scope checks this request passes (and the no-op check of
        arguments it has none of)."""
        definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if definition is None:
            return None
        if definition.is_basic_field:
            return _reader(definition, field)
        if not definition.metadata.get("prefetched") or not self._passes(definition.extensions):
            return None

        def related(source: Any) -> Any:
            loaded = getattr(source, "related", None)
            return loaded.get(name, _MISSING) if loaded is not None else _MISSING

        return related

    def _passes(self, extensions: list) -> bool:
        from strawberry.permission import PermissionExtension

        from schema.core.arguments import CheckedArguments
        from schema.core.permissions import RequiresScope

        for extension in extensions:
            if isinstance(extension, CheckedArguments):
                continue  # a field without arguments has nothing to check
            if not isinstance(extension, PermissionExtension) or extension.fail_silently:
                return False
            for permission in extension.permissions:
                # RequiresScope reads the request's principal alone, never the source.
                if type(permission) is not RequiresScope:
                    return False
                try:
                    if permission.has_permission(None, SimpleNamespace(context=self.context_value)) is not True:
                        return False
                except Exception:  # refused: graphql-core's path reports it, at its place
                    return False
        return True

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


def _complete_plain(plan: _PlainList, items: list) -> list | None:
    """The list's answer, or None when an item needs graphql-core's own path."""
    try:
        return _complete_items(plan.item, plan.nullable_items, items)
    except _Fallback:
        return None


def _complete_items(plan: _PlainObject, nullable_items: bool, items: list) -> list:
    if plan.leaves is not None:
        return _complete_leaves(plan.leaves, nullable_items, items)
    completed: list[Any] = []
    append = completed.append
    plain_type: type | None = None
    for item in items:
        if item is None:
            if not nullable_items:
                raise _Fallback
            append(None)
            continue
        if type(item) is not plain_type:
            # Asked of the class, once per class: an item that is an error or awaitable is
            # graphql-core's to complete.
            if isinstance(item, Exception) or hasattr(type(item), "__await__"):
                raise _Fallback
            plain_type = type(item)
        append(_complete_object(plan, item))
    return completed


def _complete_leaves(leaves: tuple, nullable_items: bool, items: list) -> list:
    """`_complete_items` for objects asked only plain leaves (an invoice's lines, each with its
    amount): the same answer and the same fallbacks, in one loop without a call per item."""
    completed: list[Any] = []
    append = completed.append
    plain_type: type | None = None
    for item in items:
        if item is None:
            if not nullable_items:
                raise _Fallback
            append(None)
            continue
        if type(item) is not plain_type:
            if isinstance(item, Exception) or hasattr(type(item), "__await__"):
                raise _Fallback
            plain_type = type(item)
        row: dict[str, Any] = {}
        for name, read, serialize, required in leaves:
            value = read(item)
            if value is None:
                if required:
                    raise _Fallback
                row[name] = None
                continue
            try:
                serialized = serialize(value)
            except Exception:  # reported by graphql-core's path, at its place
                raise _Fallback from None
            if serialized is None or serialized is Undefined:
                raise _Fallback
            row[name] = serialized
        append(row)
    return completed


def _complete_object(plan: _PlainObject, source: Any) -> dict[str, Any]:
    if plan.is_type_of is not None:
        try:
            if plan.is_type_of(source, None) is not True:
                raise _Fallback
        except _Fallback:
            raise
        except Exception:
            raise _Fallback from None
    row: dict[str, Any] = {}
    for field in plan.fields:
        kind = field.kind
        if kind == _TYPENAME:
            row[field.name] = plan.typename
            continue
        value = field.read(source)  # type: ignore[misc]
        if value is None:
            if field.required:
                raise _Fallback
            row[field.name] = None
            continue
        if value is _MISSING:
            raise _Fallback
        if kind == _LEAF:
            try:
                serialized = field.leaf.coerce_output_value(value)  # type: ignore[union-attr]
            except Exception:  # reported by graphql-core's path, at its place
                raise _Fallback from None
            if serialized is None or serialized is Undefined:
                raise _Fallback
            row[field.name] = serialized
        elif kind == _OBJECT:
            if isinstance(value, Exception) or hasattr(type(value), "__await__"):
                raise _Fallback
            row[field.name] = _complete_object(field.nested, value)  # type: ignore[arg-type]
        else:
            if type(value) is not list:
                raise _Fallback
            row[field.name] = _complete_items(field.nested, field.nullable_items, value)  # type: ignore[arg-type]
    return row


# `metadata=PREFETCHED` on a field whose resolver answers `self.related[field's GraphQL name]`
# when that is there (a relation the list loaded for its whole page).
PREFETCHED = {"prefetched": True}


def answer_prefetched(schema: GraphQLSchema) -> None:
    """Gives each field marked PREFETCHED a resolver that answers the loaded relation itself
    and calls strawberry's resolver (its Info, arguments and extension chain) only when it is
    not loaded: a page of a hundred invoices asks its relations three hundred times. Only
    for fields without arguments or extensions (no permission is ever skipped)."""
    for named in schema.type_map.values():
        if not isinstance(named, GraphQLObjectType):
            continue
        for name, field in named.fields.items():
            definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if definition is None or not definition.metadata.get("prefetched"):
                continue
            if definition.extensions or field.args:
                continue  # its checks run: graphql-core calls its resolver (a page's plan checks them once)
            field.resolve = _answering_prefetched(name, field.resolve)


def _answering_prefetched(name: str, resolve: Any) -> Callable[..., Any]:
    def answer(source: Any, info: Any) -> Any:
        related = getattr(source, "related", None)
        if related is not None and name in related:
            return related[name]
        return resolve(source, info)

    return answer
