"""One schema extension for every request: cached parse and validation, and the audit's facts.

One extension rather than three (strawberry's ParserCache, ValidationCache and ours): strawberry
builds a context manager per extension per stage on every request. Validation results are
cached by query text, not by document: hashing a document walks the whole tree.
"""

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema, OperationDefinitionNode, parse
from graphql import validate as validate_document
from strawberry.extensions import SchemaExtension

from graph.errors import BAD_USER_INPUT

CACHE_SIZE = 1024


def _tag(errors: list[GraphQLError] | None, code: str) -> None:
    for error in errors or []:
        if error.extensions is None:
            error.extensions = {}
        error.extensions.setdefault("code", code)


@lru_cache(maxsize=CACHE_SIZE)
def parsed(query: str) -> DocumentNode:
    """The document of a query text (cached); raises GraphQLSyntaxError."""
    return parse(query)


def query_sha256(query: str) -> str:
    """The fingerprint of a query text the audit trail keeps."""
    return hashlib.sha256(query.encode()).hexdigest()


class _ValidationCache:
    """query text -> validation errors, least recently used first out."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[int, str], list[GraphQLError]] = OrderedDict()

    def errors(self, schema: GraphQLSchema, query: str, document: DocumentNode, rules: Any) -> Any:
        key = (id(schema), query)
        found = self._items.get(key)
        if found is None:
            found = self._items[key] = validate_document(schema, document, rules)
            _tag(found, "GRAPHQL_VALIDATION_FAILED")
            if len(self._items) > CACHE_SIZE:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return found


_VALIDATION = _ValidationCache()


class RequestExtension(SchemaExtension):
    """Parses and validates through caches, and names the operation in the request's audit."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            audit = getattr(context.context, "audit", None)
            if audit is not None:
                audit.query_sha256 = query_sha256(context.query)
            # Syntax errors propagate; graph.errors gives them GRAPHQL_PARSE_FAILED.
            context.graphql_document = parsed(context.query)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.query is not None and context.graphql_document is not None
        context.pre_execution_errors = _VALIDATION.errors(
            context.schema._schema,
            context.query,
            context.graphql_document,
            tuple(context.validation_rules),
        )
        yield

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        audit = getattr(context.context, "audit", None)
        if audit is not None:
            audit.operation_type = context.operation_type.value
            audit.operation_name = context.operation_name or _document_operation_name(context)
        yield
        result = context.result
        # Errors with no path are variable-coercion failures: the caller's input is wrong.
        errors = getattr(result, "errors", None) or []
        _tag([e for e in errors if not e.path], BAD_USER_INPUT)


def _document_operation_name(context: object) -> str | None:
    document = getattr(context, "graphql_document", None)
    if document is None:
        return None
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and definition.name:
            return definition.name.value
    return None
