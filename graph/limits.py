"""Abuse limits checked before execution: tokens, depth, aliases and cost.

The facts of a document are computed once per distinct query text (cached); only the cost,
which depends on the variables (page sizes, batch length), is evaluated per request. Costs
follow GitHub's GraphQL API: every object a query can return counts one, and a field with a
`first` argument multiplies what it selects by that page size; `predictBatch` by its inputs.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    parse,
)

DEFAULT_PAGE = 20


@dataclass(frozen=True)
class Limits:
    """The ceilings a request must stay under."""

    max_tokens: int = 2000
    max_depth: int = 10
    max_aliases: int = 15
    max_cost: int = 10_000


class LimitExceeded(Exception):
    """A document breaks a limit; `code` says which."""

    def __init__(self, code: str, message: str, cost: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.cost = cost


@dataclass(frozen=True)
class _Facts:
    document: DocumentNode | None
    fragments: Mapping[str, FragmentDefinitionNode]
    error: LimitExceeded | None


def check_document(query: str, limits: Limits) -> DocumentNode | None:
    """Raise LimitExceeded for a document over the token, depth or alias limits."""
    facts = _facts(query, limits)
    if facts.error is not None:
        raise facts.error
    return facts.document


@lru_cache(maxsize=1024)
def _facts(query: str, limits: Limits) -> _Facts:
    try:
        document = parse(query, max_tokens=limits.max_tokens)
    except GraphQLSyntaxError as error:
        if "tokens" in error.message and "aborted" in error.message:
            message = f"the document has more than {limits.max_tokens} tokens"
            return _Facts(None, {}, LimitExceeded("TOO_MANY_TOKENS", message))
        return _Facts(None, {}, None)  # a plain syntax error: execution reports it
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return _Facts(document, fragments, _shape_error(document, fragments, limits))


def _shape_error(
    document: DocumentNode, fragments: Mapping[str, FragmentDefinitionNode], limits: Limits
) -> LimitExceeded | None:
    for operation in _operations(document):
        depth = _depth(operation.selection_set, fragments, frozenset())
        if depth > limits.max_depth:
            return LimitExceeded("QUERY_TOO_DEEP", f"depth {depth} exceeds {limits.max_depth}")
        aliases = _aliases(operation.selection_set, fragments, frozenset())
        if aliases > limits.max_aliases:
            message = f"{aliases} aliases exceed {limits.max_aliases}"
            return LimitExceeded("TOO_MANY_ALIASES", message)
    return None


def _operations(document: DocumentNode) -> list[OperationDefinitionNode]:
    return [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]


def _fields(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    seen: frozenset[str],
) -> list[tuple[FieldNode, frozenset[str]]]:
    """The fields of a selection set with fragments expanded (cycles cut, not followed)."""
    found: list[tuple[FieldNode, frozenset[str]]] = []
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            found.append((selection, seen))
        elif isinstance(selection, InlineFragmentNode):
            found += _fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:
                found += _fields(fragments[name].selection_set, fragments, seen | {name})
    return found


def _depth(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    seen: frozenset[str],
) -> int:
    depths = [
        1 + _depth(field.selection_set, fragments, inner)
        for field, inner in _fields(selection_set, fragments, seen)
        if not field.name.value.startswith("__")  # introspection nests deep by design
    ]
    return max(depths, default=0)


def _aliases(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    seen: frozenset[str],
) -> int:
    return sum(
        (1 if field.alias else 0) + _aliases(field.selection_set, fragments, inner)
        for field, inner in _fields(selection_set, fragments, seen)
    )


def query_cost(
    document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any] | None
) -> int:
    """The cost of the operation that will run, given its variables."""
    operations = _operations(document)
    chosen = [o for o in operations if o.name and o.name.value == operation_name]
    operation = chosen[0] if chosen else (operations[0] if len(operations) == 1 else None)
    if operation is None:
        return 0  # execution reports the missing or ambiguous operation
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return _cost(operation.selection_set, fragments, frozenset(), variables or {})


def _cost(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    seen: frozenset[str],
    variables: Mapping[str, Any],
) -> int:
    total = 0
    for field, inner in _fields(selection_set, fragments, seen):
        if field.selection_set is None:
            continue  # scalars are free
        multiplier = _multiplier(field, variables)
        total += multiplier * (1 + _cost(field.selection_set, fragments, inner, variables))
    return total


def _multiplier(field: FieldNode, variables: Mapping[str, Any]) -> int:
    for argument in field.arguments or ():
        name, value = argument.name.value, argument.value
        if isinstance(value, VariableNode):
            resolved = variables.get(value.name.value)
            if name == "first" and isinstance(resolved, int):
                return max(resolved, 1)
            if name == "inputs" and isinstance(resolved, list):
                return max(len(resolved), 1)
        elif name == "first" and isinstance(value, IntValueNode):
            return max(int(value.value), 1)
        elif name == "inputs" and isinstance(value, ListValueNode):
            return max(len(value.values), 1)
    if field.name.value in ("predictions", "auditEvents"):
        return DEFAULT_PAGE
    return 1
