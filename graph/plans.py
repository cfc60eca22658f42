"""Compiled plans for the predict mutations: the executor's answers, computed column by column.

graphql-core spends most of a 1,000-row `predictBatch` coercing 8,000 input floats one call at
a time and completing 1,000 result objects field by field. A document of a known shape (one
`predict` or `predictBatch` field fed by a variable, selecting fields of `Prediction`, of its
`input` and of its `modelVersion`) gets a plan, compiled once per query text, that does the
same work in bulk:

- the variable is type-checked as a whole; a value the plan cannot prove well typed is left to
  the executor, which gives the standard coercion error, so no error message is re-implemented;
- the root field's permission and the use case run exactly as in the resolver;
- the result is built column by column from the prediction block.

Any other document, or a shape the plan does not know (a fragment, a directive, a field added
to `Prediction` later), goes through the executor: a plan only ever declines, never guesses.
`tests/e2e/test_plans.py` runs every shape both ways and compares the answers.
"""

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    located_error,
    print_ast,
    validate,
)

from graph import services
from graph.context import GraphContext
from graph.extensions import parsed, query_sha256
from graph.permissions import FIELD_SCOPES, ScopeRequired
from graph.types import FailureClassEnum, ModelVersionType
from model import DEVICE_FEATURES
from persistence import ModelVersion, PredictionBlock

CACHE_SIZE = 1024
_INPUT_KEYS = frozenset({"deviceId", *DEVICE_FEATURES})
_NUMBER_TYPES = frozenset({int, float})
_DEVICE_ID_TYPES = frozenset({str, type(None)})
_LABELS = (FailureClassEnum.NON_FAILURE.value, FailureClassEnum.FAILURE.value)


@dataclass(frozen=True)
class _Source:
    """What a plan renders: the block a call made, and the registry row of the model that did."""

    block: PredictionBlock
    version: ModelVersion


Column = Callable[[_Source], Sequence[Any]]


def _constant(value: Any) -> Column:
    return lambda source: [value] * len(source.block)


def _metric(name: str) -> Column:
    return lambda source: source.block.metrics[name]


# Each leaf of `Prediction` and `Metrics` a plan can serve, as one column of a block, already in
# the form graphql-core's serializers give (ID -> str, DateTime -> isoformat, enum -> its name).
_PREDICTION_LEAVES: dict[str, Column] = {
    "__typename": _constant("Prediction"),
    "id": lambda source: [str(i) for i in source.block.ids],
    "createdAt": lambda source: [source.block.created_at.isoformat()] * len(source.block),
    "deviceId": lambda source: source.block.device_ids,
    "label": lambda source: [_LABELS[bool(f)] for f in source.block.is_failure],
    "failureProbability": lambda source: source.block.failure_probability,
    "threshold": lambda source: [source.block.threshold] * len(source.block),
}
_METRICS_LEAVES: dict[str, Column] = {
    "__typename": _constant("Metrics"),
    **{name: _metric(name) for name in DEVICE_FEATURES},
}


class _Declined(Exception):
    """The document (or the variable's value) is not one a plan serves: use the executor."""


@dataclass(frozen=True)
class _Selection:
    keys: tuple[str, ...]
    columns: "tuple[Column | _Selection, ...]"

    def render(self, source: _Source) -> list[dict[str, Any]]:
        columns = [
            c.render(source) if isinstance(c, _Selection) else c(source) for c in self.columns
        ]
        keys = self.keys
        return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]


def _fields(selection_set: SelectionSetNode | None) -> list[tuple[str, FieldNode]]:
    """(response key, node) of plain fields: no fragments, directives, arguments or merging."""
    if selection_set is None:
        raise _Declined
    found: list[tuple[str, FieldNode]] = []
    for node in selection_set.selections:
        if not isinstance(node, FieldNode) or node.directives or node.arguments:
            raise _Declined
        key = node.alias.value if node.alias else node.name.value
        if key in (k for k, _ in found):
            raise _Declined  # merged fields: leave them to the executor
        found.append((key, node))
    return found


def _selection(
    schema: GraphQLSchema, selection_set: SelectionSetNode | None, leaves: dict[str, Column]
) -> _Selection:
    keys: list[str] = []
    columns: list[Column | _Selection] = []
    for key, node in _fields(selection_set):
        name = node.name.value
        if name in leaves and node.selection_set is None:
            columns.append(leaves[name])
        elif leaves is _PREDICTION_LEAVES and name == "input":
            columns.append(_selection(schema, node.selection_set, _METRICS_LEAVES))
        elif leaves is _PREDICTION_LEAVES and name == "modelVersion":
            version_type = schema.type_map["ModelVersion"]
            assert isinstance(version_type, GraphQLObjectType)
            columns.append(_model_version(_object(version_type, node.selection_set)))
        else:
            raise _Declined
        keys.append(key)
    return _Selection(tuple(keys), tuple(columns))


def _model_version(serialize: Callable[[Any], Any]) -> Column:
    # The same for every prediction of a block: serialized once, as the executor would each time.
    def column(source: _Source) -> Sequence[Any]:
        return [serialize(ModelVersionType.from_row(source.version))] * len(source.block)

    return column


def _object(object_type: GraphQLObjectType, selection_set: SelectionSetNode | None) -> Any:
    """A serializer of an object whose selected fields are plain attributes (no resolvers)."""
    parts: list[tuple[str, str | None, Callable[[Any], Any]]] = []
    for key, node in _fields(selection_set):
        name = node.name.value
        if name == "__typename":
            parts.append((key, None, _typename(object_type.name)))
            continue
        field = object_type.fields.get(name)
        definition = (field.extensions or {}).get("strawberry-definition") if field else None
        if field is None or definition is None or definition.base_resolver is not None:
            raise _Declined
        parts.append((key, definition.python_name, _value(field.type, node.selection_set)))

    def serialize(value: Any) -> dict[str, Any]:
        return {
            key: convert(getattr(value, attr) if attr else None) for key, attr, convert in parts
        }

    return serialize


def _typename(name: str) -> Callable[[Any], str]:
    return lambda _: name


def _value(kind: GraphQLOutputType, selection_set: SelectionSetNode | None) -> Any:
    """graphql-core's completion of one value of this type, for plain (resolver-less) data."""
    if isinstance(kind, GraphQLNonNull):
        inner = _value(kind.of_type, selection_set)

        def non_null(value: Any) -> Any:
            if value is None:
                raise TypeError("a non-null field of the model registry holds null")
            return inner(value)

        return non_null
    if isinstance(kind, GraphQLList):
        item = _value(kind.of_type, selection_set)
        return lambda value: None if value is None else [item(v) for v in value]
    if isinstance(kind, GraphQLScalarType | GraphQLEnumType):
        leaf = kind.serialize
        return lambda value: None if value is None else leaf(value)
    if isinstance(kind, GraphQLObjectType):
        nested = _object(kind, selection_set)
        return lambda value: None if value is None else nested(value)
    raise _Declined  # interfaces and unions


_ROOT_FIELDS = {
    # root field -> (its argument, the variable type it must be declared with, batch?)
    "predict": ("input", "PredictInput!", False),
    "predictBatch": ("inputs", "[PredictInput!]!", True),
}


@dataclass(frozen=True)
class PredictPlan:
    """How to answer one predict or predictBatch document without the executor."""

    field_node: FieldNode
    response_key: str
    operation_name: str | None
    variable: str
    batch: bool
    selection: _Selection

    @property
    def field(self) -> str:
        """The root field: predict or predictBatch."""
        return self.field_node.name.value

    def execute(
        self, context: GraphContext, query: str, variables: dict[str, Any] | None
    ) -> ExecutionResult | None:
        """The operation's result, or None when the executor must answer instead."""
        try:
            matrix, device_ids = self._typed(variables)
        except _Declined:
            return None
        audit = context.audit
        audit.query_sha256 = query_sha256(query)
        audit.operation_type, audit.operation_name = "mutation", self.operation_name
        try:
            ScopeRequired(FIELD_SCOPES[self.field]).check(context, len(device_ids))
            if self.batch:
                services.check_batch_size(len(device_ids), context.services.settings.max_batch_size)
            predicted = services.predict_matrix(
                context.services.models, audit, matrix, device_ids, self.batch
            )
        except Exception as error:  # the executor's treatment of a failing non-null root field
            located = located_error(error, [self.field_node], [self.response_key])
            return ExecutionResult(data=None, errors=[located])
        rows = self.selection.render(_Source(predicted.block, predicted.model.info))
        return ExecutionResult(data={self.response_key: rows if self.batch else rows[0]})

    def _typed(self, variables: dict[str, Any] | None) -> tuple[np.ndarray, list[str | None]]:
        value = (variables or {}).get(self.variable)
        items = value if self.batch else [value]
        if not isinstance(items, list) or not items:
            raise _Declined
        try:
            values = [item[name] for item in items for name in DEVICE_FEATURES]
            device_ids = [item.get("deviceId") for item in items]
        except (TypeError, KeyError, AttributeError) as error:
            raise _Declined from error
        if not set(map(type, values)) <= _NUMBER_TYPES:
            raise _Declined  # strings, booleans, nulls, lists...: the executor explains
        if not set(map(type, device_ids)) <= _DEVICE_ID_TYPES:
            raise _Declined
        if not all(type(item) is dict and item.keys() <= _INPUT_KEYS for item in items):
            raise _Declined  # unknown input fields
        try:
            matrix = np.array(values, dtype=float).reshape(len(items), len(DEVICE_FEATURES))
        except OverflowError as error:  # an integer beyond a double
            raise _Declined from error
        if not np.isfinite(matrix).all():
            raise _Declined
        return matrix, device_ids


def compile_plan(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> PredictPlan:
    """The plan of a valid document's operation; raises _Declined when it has none."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        raise _Declined
    operation = operations[0]
    if operation.operation is not OperationType.MUTATION or operation.directives:
        raise _Declined
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        raise _Declined
    node = selections[0]
    arguments = node.arguments or ()
    if node.name.value not in _ROOT_FIELDS or node.directives or len(arguments) != 1:
        raise _Declined
    argument_name, variable_type, batch = _ROOT_FIELDS[node.name.value]
    argument = arguments[0]
    if argument.name.value != argument_name or not isinstance(argument.value, VariableNode):
        raise _Declined
    variable = argument.value.name.value
    declared = {d.variable.name.value: d for d in operation.variable_definitions or ()}
    definition = declared.get(variable)
    if definition is None or definition.default_value is not None or definition.directives:
        raise _Declined
    if print_ast(definition.type) != variable_type:
        raise _Declined
    return PredictPlan(
        field_node=node,
        response_key=node.alias.value if node.alias else node.name.value,
        operation_name=operation.name.value if operation.name else None,
        variable=variable,
        batch=batch,
        selection=_selection(schema, node.selection_set, _PREDICTION_LEAVES),
    )


class PlanCache:
    """(query text, operation name) -> its plan, or None; least recently used first out."""

    def __init__(self, schema: GraphQLSchema, size: int = CACHE_SIZE, enabled: bool = True) -> None:
        self.schema = schema
        self.size = size
        self.enabled = enabled
        self._items: OrderedDict[tuple[str, str | None], PredictPlan | None] = OrderedDict()

    def get(self, query: str, operation_name: str | None) -> PredictPlan | None:
        """The plan for this operation, compiled on first sight; None if it has none."""
        if not self.enabled:
            return None
        key = (query, operation_name)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        plan = self._compile(query, operation_name)
        self._items[key] = plan
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return plan

    def _compile(self, query: str, operation_name: str | None) -> PredictPlan | None:
        try:
            document = parsed(query)
        except GraphQLError:
            return None
        # Not graph.extensions' validation cache: it is keyed by query text for strawberry's own
        # rules, and an entry made here with the standard rules would be handed back to it.
        # This runs once per query text (the plan is cached), off every later request.
        if validate(self.schema, document):
            return None
        try:
            return compile_plan(self.schema, document, operation_name)
        except _Declined:
            return None
