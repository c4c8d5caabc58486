"""What a request may ask for, checked after parsing and before validation or any resolver.

One walk over the document measures its depth, its aliases and its cost, expanding every
fragment spread: each fragment is measured once and its figures reused, so a document that
spreads a fragment many times (or fragments spreading fragments) costs its size to measure,
not the size of its expansion. Aliases inside fragments count once per spread, as if written
out. The cost is the number of objects the answer may hold: a connection's `first`/`last` (or
the default page) multiplies what is asked of each node. Introspection (`__schema`, `__type`)
is bounded by the schema itself and left out of depth and cost; in production it is only for
an authenticated MSP user (the committed SDL serves code generators) and errors never suggest
field names. A document that passed validation once is not validated again (`ValidDocuments`),
nor is a text parsed again (`ParsedDocuments`)."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_leaf_type,
)
from strawberry.extensions import SchemaExtension

from models.errors import RequestErrorCode
from schema.core.pagination import DEFAULT_PAGE_SIZE

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
# graphql-core's validation messages end with "Did you mean 'x' or 'y'?": a map of the schema
# for whoever cannot introspect it.
_SUGGESTION = re.compile(r"\s*Did you mean .*\?$")


@dataclass(frozen=True)
class Measure:
    depth: int = 0
    aliases: int = 0
    cost: int = 0
    introspection: bool = False

    def __add__(self, other: Measure) -> Measure:
        return Measure(
            max(self.depth, other.depth), self.aliases + other.aliases, self.cost + other.cost,
            self.introspection or other.introspection,
        )


class _Walk:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any], page_cap: int):
        self.schema = schema
        self.variables = variables
        self.page_cap = page_cap
        self.fragments = {
            node.name.value: node for node in document.definitions if isinstance(node, FragmentDefinitionNode)
        }
        self.measured: dict[str, Measure] = {}
        self.open: set[str] = set()

    def operation(self, operation: OperationDefinitionNode) -> Measure:
        root = self.schema.get_root_type(operation.operation)
        return self.selections(operation.selection_set, root) if root else Measure()

    def selections(self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None) -> Measure:
        total = Measure()
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                total = total + self.field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total = total + self.selections(selection.selection_set, inner)
            elif isinstance(selection, FragmentSpreadNode):
                total = total + self.fragment(selection.name.value)
        return total

    def fragment(self, name: str) -> Measure:
        if name in self.measured:
            return self.measured[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.open:
            return Measure()  # unknown or cyclic: validation reports it
        self.open.add(name)
        measure = self.selections(definition.selection_set, self.schema.get_type(definition.type_condition.name.value))
        self.open.discard(name)
        self.measured[name] = measure
        return measure

    def field(self, node: FieldNode, parent: GraphQLNamedType | None) -> Measure:
        aliases = 1 if node.alias else 0
        if node.name.value in INTROSPECTION_FIELDS:
            return Measure(aliases=aliases, introspection=True)
        fields = getattr(parent, "fields", None) or {}
        definition = fields.get(node.name.value)
        named = get_named_type(definition.type) if definition else None
        if named is None or is_leaf_type(named):
            return Measure(depth=1, aliases=aliases)
        inner = self.selections(node.selection_set, named)
        return Measure(
            depth=inner.depth + 1, aliases=aliases + inner.aliases,
            cost=self.multiplier(node) * (1 + inner.cost), introspection=inner.introspection,
        )

    def multiplier(self, node: FieldNode) -> int:
        """How many objects one selection of the field may answer: a page of a connection,
        the ids of `nodes`; other fields answer one object (or a list bounded by its parent)."""
        arguments = {argument.name.value: argument.value for argument in node.arguments or ()}
        for name in ("first", "last"):
            if name in arguments:
                return self._page(arguments[name])
        if "ids" in arguments:
            ids = arguments["ids"]
            if isinstance(ids, ListValueNode):
                return min(len(ids.values), self.page_cap)
            return self.page_cap
        return 1

    def _page(self, value: Any) -> int:
        if isinstance(value, VariableNode):
            value = self.variables.get(value.name.value)
        elif isinstance(value, IntValueNode):
            value = int(value.value)
        if not isinstance(value, int) or value < 0:
            return min(DEFAULT_PAGE_SIZE, self.page_cap)
        return min(value, self.page_cap)


def measure(schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any], page_cap: int) -> Measure:
    """Depth, aliases and cost of the document's operations (the largest depth, the sums)."""
    walk = _Walk(schema, document, variables, page_cap)
    total = Measure()
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            total = total + walk.operation(definition)
    return total


def _refused(message: str, code: RequestErrorCode = RequestErrorCode.QUERY_TOO_COMPLEX) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code.value})


class ValidDocuments:
    """Documents that passed validation, by the SHA-256 of their text: the console sends the
    same few documents again and again, and validating one (every rule walks it) costs as much
    as executing a page of a list. Bounded; the oldest is forgotten first."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._keys: OrderedDict[bytes, None] = OrderedDict()

    @staticmethod
    def key(query: str | None) -> bytes | None:
        return hashlib.sha256(query.encode()).digest() if query else None

    def __contains__(self, key: bytes | None) -> bool:
        if key is None or key not in self._keys:
            return False
        self._keys.move_to_end(key)
        return True

    def add(self, key: bytes) -> None:
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)


VALID_DOCUMENTS = ValidDocuments()


class ParsedDocuments:
    """Parsed documents by their text and the token limit they were parsed under: parsing the
    console's few documents again on every request made garbage for the collector too (a
    document's tokens link to one another). graphql-core never changes a document; the limits
    and validation still run on every request. Bounded; the least recently used is forgotten
    first."""

    def __init__(self, size: int = 256):
        self.size = size
        self._documents: OrderedDict[tuple[str, int | None], DocumentNode] = OrderedDict()

    def get(self, key: tuple[str, int | None]) -> DocumentNode | None:
        document = self._documents.get(key)
        if document is not None:
            self._documents.move_to_end(key)
        return document

    def add(self, key: tuple[str, int | None], document: DocumentNode) -> None:
        self._documents[key] = document
        if len(self._documents) > self.size:
            self._documents.popitem(last=False)


PARSED_DOCUMENTS = ParsedDocuments()


class QueryLimits(SchemaExtension):
    """Refuses, before validation, a document past the limits of the settings (tokens,
    depth, aliases, cost), and in production introspection by anyone but an MSP user."""

    def on_operation(self) -> Iterator[None]:
        settings = self.execution_context.context.settings
        self.execution_context.parse_options["max_tokens"] = settings.max_query_tokens
        yield

    def on_parse(self) -> Iterator[None]:
        execution = self.execution_context
        key = (execution.query, execution.parse_options.get("max_tokens")) if execution.query else None
        if key is not None and execution.graphql_document is None:
            # Set before strawberry parses: it then takes this one.
            execution.graphql_document = PARSED_DOCUMENTS.get(key)
        yield
        if key is not None and execution.graphql_document is not None and not execution.pre_execution_errors:
            PARSED_DOCUMENTS.add(key, execution.graphql_document)
        # The parser's own error names no code; it is already in the answer, so it is
        # rewritten in place.
        for error in self.execution_context.pre_execution_errors or []:
            if "tokens" in error.message:
                limit = self.execution_context.context.settings.max_query_tokens
                error.message = f"The document has more than {limit:,} tokens."
                error.extensions = {"code": RequestErrorCode.QUERY_TOO_COMPLEX.value}

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context.context
        settings = context.settings
        document = self.execution_context.graphql_document
        known = None
        if document is not None:
            found = measure(
                self.execution_context.schema._schema, document, self.execution_context.variables or {},
                settings.max_page_size,
            )
            refusal = self._refusal(found, context)
            if refusal is not None:
                # Set before validation runs: strawberry then skips it.
                self.execution_context.pre_execution_errors = [refusal]
            elif self.execution_context.pre_execution_errors is None:
                known = VALID_DOCUMENTS.key(self.execution_context.query)
                if known in VALID_DOCUMENTS:
                    # Validated already: the same text against the same schema and rules (none of
                    # which reads the request) is valid again. Strawberry skips validation.
                    self.execution_context.pre_execution_errors = []
                    known = None
        yield
        if known is not None and self.execution_context.pre_execution_errors == []:
            VALID_DOCUMENTS.add(known)
        if settings.environment == "production" and self.execution_context.pre_execution_errors:
            for error in self.execution_context.pre_execution_errors:
                error.message = _SUGGESTION.sub("", error.message)

    @staticmethod
    def _refusal(found: Measure, context: Any) -> GraphQLError | None:
        settings = context.settings
        if found.depth > settings.max_query_depth:
            return _refused(f"The query is {found.depth} levels deep; at most {settings.max_query_depth}.")
        if found.aliases > settings.max_query_aliases:
            return _refused(f"The query has {found.aliases} aliases; at most {settings.max_query_aliases}.")
        if found.cost > settings.max_query_cost:
            return _refused(
                f"The query may answer {found.cost:,} objects (connections count their first/last); "
                f"at most {settings.max_query_cost:,}."
            )
        principal = context.principal
        if found.introspection and settings.environment == "production" and not (principal and principal.is_msp_user):
            return _refused(
                "Introspection is for signed-in MSP users; the schema is published as schema.graphql.",
                RequestErrorCode.FORBIDDEN,
            )
        return None
