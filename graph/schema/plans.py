"""Compiled plans for the predict mutations: the executor's answers, computed column by column.

graphql-core spends most of a 1,000-row `predictBatch` coercing 8,000 input floats one call at
a time and completing 1,000 result objects field by field. A document of a known shape (one
`predict` or `predictBatch` field fed by one variable, selecting fields of `Prediction`) gets a
plan, compiled once per query text and operation, that does the same work in bulk:

- the variable is decoded by the one telemetry decoder; a value it cannot prove well typed is
  left to the executor, which gives the standard coercion error, so no error is re-implemented;
- the root field's permission (`authorize` with FIELD_SCOPES) and the use case run exactly as
  in the resolver;
- the result is built column by column from the prediction block, each leaf put through its
  GraphQL type's own serializer (values already in their output form are passed as they are).

The leaves are derived from the schema: every field of `Prediction` must have a source in
`SOURCES`, every field of `Metrics` a metric column, and every field of `ModelVersion` (and the
objects under it) must be a plain attribute. A field added to one of these types without a way
to serve it here makes every plan decline (a slowdown), and `tests/unit/test_plan_coverage.py`
fails naming this module. Any other document goes through the executor: a plan only ever
declines, never guesses; `tests/e2e/test_plans.py` runs every shape both ways.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLEnumType,
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
    get_named_type,
    located_error,
    print_ast,
    specified_scalar_types,
)

from graph.runtime import usecases
from graph.runtime.access import authorize
from graph.runtime.strings import has_control_characters
from graph.runtime.telemetry import Telemetry, TelemetryTypeError, decode_telemetry
from graph.schema.context import GraphContext
from graph.schema.permissions import FIELD_SCOPES
from graph.schema.types import FailureClassEnum, ModelVersionType
from model import DEVICE_FEATURES
from persistence import ModelVersion, PredictionBlock

_LABELS = {True: FailureClassEnum.FAILURE, False: FailureClassEnum.NON_FAILURE}


@dataclass(frozen=True)
class _Source:
    """What a plan renders: the block a call made, and the registry row of the model that did."""

    block: PredictionBlock
    version: ModelVersion
    subject: str | None  # who asked: the request's


@dataclass(frozen=True)
class Leaf:
    """Where a field's raw values come from: one per prediction, or one for the whole block."""

    values: Callable[[_Source], Any]
    shared: bool = False


# The raw value of each field of `Prediction`, before its GraphQL type's serializer; `input` and
# `modelVersion` are objects, served from the metric columns and the registry row.
SOURCES: dict[str, Leaf | str] = {
    "id": Leaf(lambda s: [str(i) for i in s.block.ids]),
    "createdAt": Leaf(lambda s: s.block.created_at, shared=True),
    "observedAt": Leaf(lambda s: s.block.observed_at),
    "deviceId": Leaf(lambda s: s.block.device_ids),
    "label": Leaf(lambda s: [_LABELS[bool(f)] for f in s.block.is_failure]),
    "failureProbability": Leaf(lambda s: s.block.failure_probability),
    "threshold": Leaf(lambda s: s.block.threshold, shared=True),
    "subject": Leaf(lambda s: s.subject, shared=True),
    "input": "metrics",
    "modelVersion": "registry",
}

Column = Callable[[_Source], Sequence[Any]]


class Declined(Exception):
    """The document (or the variable's value) is not one a plan serves: use the executor."""


def _fields(selection_set: SelectionSetNode | None) -> list[tuple[str, FieldNode]]:
    """(response key, node) of plain fields: no fragments, directives, arguments or merging."""
    if selection_set is None:
        raise Declined
    found: list[tuple[str, FieldNode]] = []
    for node in selection_set.selections:
        if not isinstance(node, FieldNode) or node.directives or node.arguments:
            raise Declined
        key = node.alias.value if node.alias else node.name.value
        if key in (k for k, _ in found):
            raise Declined  # merged fields: leave them to the executor
        found.append((key, node))
    return found


def _serializer(kind: GraphQLOutputType) -> Callable[[Any], Any]:
    named = get_named_type(kind)
    if not isinstance(named, GraphQLScalarType | GraphQLEnumType):
        raise Declined
    return named.serialize


def _serialized_column(kind: GraphQLOutputType, leaf: Leaf) -> Column:
    """A leaf's column in the form graphql-core's completion gives (shared values once)."""
    serialize = _serializer(kind)
    named = get_named_type(kind)
    if leaf.shared:
        return lambda source: [_or_none(serialize, leaf.values(source))] * len(source.block)
    builtin = specified_scalar_types.get(named.name) is named

    def column(source: _Source) -> Sequence[Any]:
        values = leaf.values(source)
        if builtin and _already_serialized(named.name, values):
            return values  # type: ignore[no-any-return]
        memo: dict[Any, Any] = {}
        return [
            memo[v] if v in memo else memo.setdefault(v, _or_none(serialize, v)) for v in values
        ]

    return column


_OUTPUT_TYPES: dict[str, frozenset[type]] = {
    name: frozenset({kind, type(None)})
    for name, kind in (
        ("Float", float),
        ("String", str),
        ("ID", str),
        ("Boolean", bool),
        ("Int", int),
    )
}


def _already_serialized(scalar: str, values: Sequence[Any]) -> bool:
    return set(map(type, values)) <= _OUTPUT_TYPES[scalar]


def _or_none(serialize: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else serialize(value)


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


def _typename(name: str) -> Column:
    return lambda source: [name] * len(source.block)


def _prediction(schema: GraphQLSchema, selection_set: SelectionSetNode | None) -> _Selection:
    prediction = _object_type(schema, "Prediction")
    keys: list[str] = []
    columns: list[Column | _Selection] = []
    for key, node in _fields(selection_set):
        name = node.name.value
        field = prediction.fields.get(name)
        source = SOURCES.get(name)
        if name == "__typename":
            columns.append(_typename(prediction.name))
        elif field is None or source is None:
            raise Declined
        elif source == "metrics":
            columns.append(_metrics(schema, field.type, node.selection_set))
        elif source == "registry":
            columns.append(_registry(_value(field.type, node.selection_set)))
        elif isinstance(source, Leaf) and node.selection_set is None:
            columns.append(_serialized_column(field.type, source))
        else:
            raise Declined
        keys.append(key)
    return _Selection(tuple(keys), tuple(columns))


def _metrics(
    schema: GraphQLSchema, kind: GraphQLOutputType, selection_set: SelectionSetNode | None
) -> _Selection:
    metrics = get_named_type(kind)
    if not isinstance(metrics, GraphQLObjectType):
        raise Declined
    keys: list[str] = []
    columns: list[Column] = []
    for key, node in _fields(selection_set):
        name = node.name.value
        field = metrics.fields.get(name)
        if name == "__typename":
            columns.append(_typename(metrics.name))
        elif field is None or node.selection_set is not None:
            raise Declined
        else:
            columns.append(_serialized_column(field.type, _metric_leaf(name)))
        keys.append(key)
    return _Selection(tuple(keys), tuple(columns))


def _metric_leaf(name: str) -> Leaf:
    def values(source: _Source) -> Sequence[float]:
        if name not in source.block.metrics:
            raise KeyError(f"no metric column {name}")
        return source.block.metrics[name]

    return Leaf(values)


def _registry(serialize: Callable[[Any], Any]) -> Column:
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
            parts.append((key, None, _constant(object_type.name)))
            continue
        field = object_type.fields.get(name)
        python_name = _plain_attribute(field)
        if field is None or python_name is None:
            raise Declined
        parts.append((key, python_name, _value(field.type, node.selection_set)))

    def serialize(value: Any) -> dict[str, Any]:
        return {
            key: convert(getattr(value, attr) if attr else None) for key, attr, convert in parts
        }

    return serialize


def _constant(value: str) -> Callable[[Any], str]:
    return lambda _: value


def _plain_attribute(field: Any) -> str | None:
    """The Python attribute behind a resolver-less strawberry field, else None."""
    definition = (field.extensions or {}).get("strawberry-definition") if field else None
    if definition is None or definition.base_resolver is not None:
        return None
    return str(definition.python_name)


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
    raise Declined  # interfaces and unions


def _object_type(schema: GraphQLSchema, name: str) -> GraphQLObjectType:
    found = schema.type_map[name]
    assert isinstance(found, GraphQLObjectType)
    return found


# root field -> (its argument, the variable type it must be declared with, batch?)
_ROOT_FIELDS = {
    "predict": ("input", "PredictInput!", False),
    "predictBatch": ("inputs", "[PredictInput!]!", True),
}


@dataclass(frozen=True)
class PredictPlan:
    """How to answer one predict or predictBatch operation without the executor."""

    field_node: FieldNode
    response_key: str
    variable: str
    batch: bool
    selection: _Selection

    @property
    def field(self) -> str:
        """The root field: predict or predictBatch."""
        return self.field_node.name.value

    def decode(self, variables: dict[str, Any] | None) -> Telemetry | None:
        """The telemetry of the variable, or None when the executor must answer instead."""
        value = (variables or {}).get(self.variable)
        items = value if self.batch else [value]
        if not isinstance(items, list) or not items or not all(type(i) is dict for i in items):
            return None
        try:
            telemetry = decode_telemetry(items)
        except TelemetryTypeError:
            return None  # the executor's coercion error explains it
        if has_control_characters("".join(d for d in telemetry.device_ids if d is not None)):
            return None  # the executor's check of every string variable explains it
        return telemetry

    def execute(self, context: GraphContext, telemetry: Telemetry) -> ExecutionResult:
        """The operation's result, as the executor would give it."""
        runtime = context.runtime
        try:
            authorize(context.principal, FIELD_SCOPES[self.field], runtime.limiter, len(telemetry))
            if self.batch:
                usecases.check_batch_size(len(telemetry), runtime.settings.max_batch_size)
            predicted = usecases.predict(
                runtime.models, runtime.alerts, context.audit, telemetry, self.batch
            )
        except Exception as error:  # the executor's treatment of a failing non-null root field
            located = located_error(error, [self.field_node], [self.response_key])
            return ExecutionResult(data=None, errors=[located])
        source = _Source(predicted.block, predicted.model.info, context.audit.subject)
        rows = self.selection.render(source)
        return ExecutionResult(data={self.response_key: rows if self.batch else rows[0]})


def compile_plan(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> PredictPlan | None:
    """The plan of a valid document's operation, or None when it has none."""
    try:
        return _compile(schema, document, operation)
    except Declined:
        return None


def _compile(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> PredictPlan:
    if operation.operation is not OperationType.MUTATION or operation.directives:
        raise Declined
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        raise Declined
    node = selections[0]
    arguments = node.arguments or ()
    if node.name.value not in _ROOT_FIELDS or node.directives or len(arguments) != 1:
        raise Declined
    argument_name, variable_type, batch = _ROOT_FIELDS[node.name.value]
    argument = arguments[0]
    if argument.name.value != argument_name or not isinstance(argument.value, VariableNode):
        raise Declined
    variable = argument.value.name.value
    declared = {d.variable.name.value: d for d in operation.variable_definitions or ()}
    definition = declared.get(variable)
    if definition is None or definition.default_value is not None or definition.directives:
        raise Declined
    if print_ast(definition.type) != variable_type or len(declared) != 1:
        raise Declined
    return PredictPlan(
        field_node=node,
        response_key=node.alias.value if node.alias else node.name.value,
        variable=variable,
        batch=batch,
        selection=_prediction(schema, node.selection_set),
    )


def unserved_fields(schema: GraphQLSchema) -> list[str]:
    """Fields a plan cannot serve (each makes every plan selecting it decline)."""
    missing = [
        f"Prediction.{n}" for n in _object_type(schema, "Prediction").fields if n not in SOURCES
    ]
    metrics = _object_type(schema, "Metrics")
    missing += [f"Metrics.{n}" for n in metrics.fields if n not in DEVICE_FEATURES]
    return missing + _with_resolvers(_object_type(schema, "ModelVersion"), set())


def _with_resolvers(object_type: GraphQLObjectType, seen: set[str]) -> list[str]:
    seen.add(object_type.name)
    found = []
    for name, field in object_type.fields.items():
        if _plain_attribute(field) is None:
            found.append(f"{object_type.name}.{name}")
        nested = get_named_type(field.type)
        if isinstance(nested, GraphQLObjectType) and nested.name not in seen:
            found += _with_resolvers(nested, seen)
    return found
