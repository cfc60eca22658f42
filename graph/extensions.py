"""Schema extensions: stable codes for pre-execution errors, and what the audit needs."""

import hashlib
from collections.abc import Iterator

from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from graph.errors import BAD_USER_INPUT


def _tag(errors: list[GraphQLError] | None, code: str) -> None:
    for error in errors or []:
        if error.extensions is None:
            error.extensions = {}
        error.extensions.setdefault("code", code)


class AuditExtension(SchemaExtension):
    """Names the operation in the request's audit and gives validation errors their code."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        audit = getattr(context.context, "audit", None)
        if audit is not None and context.query is not None:
            audit.query_sha256 = hashlib.sha256(context.query.encode()).hexdigest()
        yield  # syntax errors get their code where errors are formatted (graph.errors)

    def on_validate(self) -> Iterator[None]:
        yield
        _tag(self.execution_context.pre_execution_errors, "GRAPHQL_VALIDATION_FAILED")

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
