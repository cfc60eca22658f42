"""Compiled plans for the predict mutations: the executor's answers, computed column by column.

graphql-core spends most of a 1,000-row `predictBatch` coercing 8,000 input floats one call at
a time and completing 1,000 result objects field by field (and a `predictColumns` answer's
lists value by value). A document of a known shape (one `predict`, `predictBatch` or
`predictColumns` field fed by one variable, selecting fields of `Prediction` or of
`PredictColumnsPayload`) gets a plan, compiled once per query text and operation, that does the
same work in bulk:

- the variable is decoded by the one telemetry decoder (each column of `predictColumns` as one
  numpy array); a value it cannot prove well typed is left to the executor, which gives the
  standard coercion error, so no error is re-implemented;
- the root field's permission (`authorize` with FIELD_SCOPES), the shape checks and the use
  case run exactly as in the resolver;
- the result is built column by column from the prediction block, each leaf put through its
  GraphQL type's own serializer (values already in their output form are passed as they are).

The leaves are derived from the schema: every field of `Prediction` must have a source in
`SOURCES`, every field of `PredictColumnsPayload` a field of `Prediction` in `COLUMNS` (whose
source it lists, or gives once when every row shares it), every field of `Metrics` and
`MetricsColumns` a metric column, and every field of `ModelVersion` and `Explanation` (and the
objects under them) must be a plain attribute. Explanations are served from the JSON the model
computed (its keys are the GraphQL field names), and computed only when the document selects
`explanation`, as the resolver does. A field added to one of these types without a way to
serve it here makes every plan decline (a slowdown), and `tests/unit/test_plan_coverage.py`
fails naming this module. The one exception is
`EXECUTOR_ONLY`: fields that read more rows than the registry row (a version's evaluation runs),
which a predict answer has no business asking for with every prediction; a plan declines a
document that selects one, and the executor answers it. Any other document goes through the
executor: a plan only ever declines, never guesses; `tests/e2e/test_plans.py` runs every shape
both ways.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
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
from graph.runtime.telemetry import (
    Columns,
    Telemetry,
    TelemetryTypeError,
    decode_columns,
    decode_telemetry,
)
from graph.runtime.usecases import Layout
from graph.schema.context import GraphContext
from graph.schema.permissions import FIELD_SCOPES
from graph.schema.types import FailureClassEnum, ModelVersionType
from model import DEVICE_FEATURES
from model.compiled import CheckedRows
from persistence import ModelVersion, PredictionBlock

_LABELS = {True: FailureClassEnum.FAILURE, False: FailureClassEnum.NON_FAILURE}
# Fields under ModelVersion with resolvers of their own, left to the executor (see above).
EXECUTOR_ONLY = frozenset({"ModelVersion.evaluations"})


@dataclass(frozen=True)
class _Source:
    """What a plan renders: the block a call made, and the registry row of the model that did."""

    block: PredictionBlock
    version: ModelVersion
    subject: str | None  # who asked: the request's
    request_id: uuid.UUID  # the request's (its audit event's id)


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
    "warnings": Leaf(lambda s: _each_or_empty(s.block.warnings, len(s.block))),
    "input": "metrics",
    "modelVersion": "registry",
    "explanation": "explanation",
}
EXPLANATION = "explanation"
# Each field of `PredictColumnsPayload` and the field of `Prediction` it gives for every row: a
# list of its values, or its one value when the source is shared (one per block). `requestId`
# is the payload's own.
COLUMNS: dict[str, str] = {
    "predictionId": "id",
    "createdAt": "createdAt",
    "observedAt": "observedAt",
    "deviceId": "deviceId",
    "label": "label",
    "failureProbability": "failureProbability",
    "threshold": "threshold",
    "input": "input",
    "warnings": "warnings",
    "explanation": "explanation",
    "modelVersion": "modelVersion",
    "subject": "subject",
}
REQUEST_ID = "requestId"


def _each_or_empty(values: Sequence[Any] | None, count: int) -> Sequence[Any]:
    return [v or () for v in values] if values is not None else [()] * count


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
    if _is_list(kind):
        convert = _value(kind, None)
        return lambda source: [convert(v) for v in leaf.values(source)]
    serialize = _serializer(kind)
    named = get_named_type(kind)
    if leaf.shared:
        return lambda source: [_or_none(serialize, leaf.values(source))] * len(source.block)
    builtin = specified_scalar_types.get(named.name) is named

    def column(source: _Source) -> Sequence[Any]:
        values = leaf.values(source)
        if builtin and _already_serialized(named.name, values):
            return values  # type: ignore[no-any-return]
        if named.name == "ID" and set(map(type, values)) == {uuid.UUID}:
            return _uuid_texts(values)  # prediction ids: all distinct, a memo would only cost
        memo: dict[Any, Any] = {}
        return [
            memo[v] if v in memo else memo.setdefault(v, _or_none(serialize, v)) for v in values
        ]

    return column


# The Python type of each built-in scalar's output form.
_OUTPUT_TYPE = {"Float": float, "String": str, "ID": str, "Boolean": bool, "Int": int}
_OUTPUT_TYPES = {name: frozenset({kind, type(None)}) for name, kind in _OUTPUT_TYPE.items()}


def _is_list(kind: GraphQLOutputType) -> bool:
    return isinstance(kind.of_type if isinstance(kind, GraphQLNonNull) else kind, GraphQLList)


def _already_serialized(scalar: str, values: Sequence[Any]) -> bool:
    return set(map(type, values)) <= _OUTPUT_TYPES[scalar]


def _uuid_texts(values: Sequence[uuid.UUID]) -> list[str]:
    """`str(value)` of each UUID (8-4-4-4-12 lower-case hex), without UUID.__str__'s call: a
    1,000-row batch's ids in 1.3 ms rather than 1.6 (2.5 through the memo of repeated values)."""
    texts = []
    for value in values:
        h = "%032x" % value.int  # noqa: UP031 (the form UUID.__str__ itself uses)
        texts.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return texts


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
        elif source == EXPLANATION:
            columns.append(_explanations(_value(field.type, node.selection_set, keyed=True)))
        elif isinstance(source, Leaf) and node.selection_set is None:
            columns.append(_serialized_column(field.type, source))
        else:
            raise Declined
        keys.append(key)
    return _Selection(tuple(keys), tuple(columns))


Value = Callable[[_Source], Any]


@dataclass(frozen=True)
class _Payload:
    """A `PredictColumnsPayload` selection: each key's value, a whole column or a shared one."""

    keys: tuple[str, ...]
    values: "tuple[Value | _Payload, ...]"

    def render(self, source: _Source) -> dict[str, Any]:
        return {
            key: value.render(source) if isinstance(value, _Payload) else value(source)
            for key, value in zip(self.keys, self.values, strict=True)
        }


def _payload(schema: GraphQLSchema, selection_set: SelectionSetNode | None) -> _Payload:
    payload = _object_type(schema, "PredictColumnsPayload")
    keys: list[str] = []
    values: list[Value | _Payload] = []
    for key, node in _fields(selection_set):
        name = node.name.value
        field = payload.fields.get(name)
        if name == "__typename":
            values.append(_constant(payload.name))
        elif field is None:
            raise Declined
        elif name == REQUEST_ID and node.selection_set is None:
            values.append(_shared(field.type, lambda s: str(s.request_id)))
        else:
            values.append(_column_value(field.type, name, node))
        keys.append(key)
    return _Payload(tuple(keys), tuple(values))


def _column_value(kind: GraphQLOutputType, name: str, node: FieldNode) -> "Value | _Payload":
    """A payload field's value, from the source of the Prediction field it gives: a list of
    the rows' values, or the one value every row shares."""
    source = SOURCES.get(COLUMNS.get(name, ""))
    listed = _is_list(kind)
    if source == "metrics" and not listed:
        return _metric_columns(kind, node.selection_set)
    if source == "registry" and not listed:
        return _version(_value(kind, node.selection_set))
    if source == EXPLANATION and listed:
        return _explanations(_value(_item(kind), node.selection_set, keyed=True))
    if not isinstance(source, Leaf) or node.selection_set is not None:
        raise Declined
    if source.shared and not listed:
        return _shared(kind, source.values)
    if not source.shared and listed:
        return _serialized_column(_item(kind), source)
    raise Declined


def _item(kind: GraphQLOutputType) -> GraphQLOutputType:
    """The type of a list's items."""
    inner = kind.of_type if isinstance(kind, GraphQLNonNull) else kind
    if not isinstance(inner, GraphQLList):
        raise Declined
    item: GraphQLOutputType = inner.of_type
    return item


def _shared(kind: GraphQLOutputType, values: Callable[[_Source], Any]) -> Value:
    """A value every row shares, serialized once by its type."""
    convert = _value(kind, None)
    return lambda source: convert(values(source))


def _metric_columns(kind: GraphQLOutputType, selection_set: SelectionSetNode | None) -> _Payload:
    """PredictColumnsPayload.metrics: one list per selected counter."""
    return _Payload(*_metric_fields(kind, selection_set, _constant, _item))


def _metrics(
    schema: GraphQLSchema, kind: GraphQLOutputType, selection_set: SelectionSetNode | None
) -> _Selection:
    """Prediction.metrics: each row's selected counters."""
    return _Selection(*_metric_fields(kind, selection_set, _typename, lambda field: field))


def _metric_fields(
    kind: GraphQLOutputType,
    selection_set: SelectionSetNode | None,
    typename: Callable[[str], Any],
    serialized_as: Callable[[GraphQLOutputType], GraphQLOutputType],
) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The keys and values of a selection on a metrics type: its `__typename` by `typename`,
    each counter by its column, serialized as `serialized_as(its type)`."""
    metrics = get_named_type(kind)
    if not isinstance(metrics, GraphQLObjectType):
        raise Declined
    keys: list[str] = []
    values: list[Any] = []
    for key, node in _fields(selection_set):
        name = node.name.value
        field = metrics.fields.get(name)
        if name == "__typename":
            values.append(typename(metrics.name))
        elif field is None or node.selection_set is not None:
            raise Declined
        else:
            values.append(_serialized_column(serialized_as(field.type), _metric_leaf(name)))
        keys.append(key)
    return tuple(keys), tuple(values)


def _metric_leaf(name: str) -> Leaf:
    def values(source: _Source) -> Sequence[float]:
        if name not in source.block.metrics:
            raise KeyError(f"no metric column {name}")
        return source.block.metrics[name]

    return Leaf(values)


def _registry(serialize: Callable[[Any], Any]) -> Column:
    # The same for every prediction of a block: serialized once, as the executor would each time.
    version = _version(serialize)
    return lambda source: [version(source)] * len(source.block)


def _version(serialize: Callable[[Any], Any]) -> Value:
    """The registry row of the block's model, serialized and kept while the same row (the
    serving model's) is rendered."""
    last: list[Any] = [None, None]  # (row, its serialized value)

    def value(source: _Source) -> Any:
        if last[0] is not source.version:
            last[:] = [source.version, serialize(ModelVersionType.from_row(source.version))]
        return last[1]

    return value


def _explanations(serialize: Callable[[Any], Any]) -> Column:
    def column(source: _Source) -> Sequence[Any]:
        found = source.block.explanations
        return [serialize(e) for e in found] if found is not None else [None] * len(source.block)

    return column


def _object(
    object_type: GraphQLObjectType, selection_set: SelectionSetNode | None, keyed: bool = False
) -> Any:
    """A serializer of an object whose selected fields are plain attributes (no resolvers): of
    the strawberry object, or `keyed`, of a JSON object keyed by the GraphQL field names."""
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
        convert = _value(field.type, node.selection_set, keyed)
        parts.append((key, name if keyed else python_name, convert))

    def serialize(value: Any) -> dict[str, Any]:
        return {
            key: convert(getattr(value, attr) if attr else None) for key, attr, convert in parts
        }

    def serialize_keyed(value: dict[str, Any]) -> dict[str, Any]:
        return {key: convert(value.get(attr) if attr else None) for key, attr, convert in parts}

    return serialize_keyed if keyed else serialize


def _plain_rows(
    kind: GraphQLOutputType, selection_set: SelectionSetNode | None
) -> Callable[[Sequence[Any]], list[dict[str, Any]] | None] | None:
    """For a list of non-null JSON objects whose selected fields are all non-null String, ID,
    Float or Boolean (an explanation's path and contributions): the list's answer in one pass,
    its values checked column by column, or None (falsy: the item-by-item serializer answers,
    and refuses what it refuses) when a value is not already in its output form (a string, a
    bool, a finite float). None here: the selection has other fields. Rows the model checked
    when it made them (model.compiled.CheckedRows) for exactly the selection's keys and types are
    the answer as they are, unchecked here."""
    if not isinstance(kind, GraphQLNonNull) or not isinstance(kind.of_type, GraphQLObjectType):
        return None
    pairs: list[tuple[str, str]] = []
    checks: list[tuple[str, type]] = []
    for key, node in _fields(selection_set):
        field = kind.of_type.fields.get(node.name.value)
        if field is None or _plain_attribute(field) is None:
            return None
        leaf = field.type.of_type if isinstance(field.type, GraphQLNonNull) else None
        name = getattr(leaf, "name", "Int")  # (an Int's range is its serializer's to check)
        if name == "Int" or specified_scalar_types.get(name) is not leaf:
            return None
        pairs.append((key, node.name.value))
        checks.append((key, _OUTPUT_TYPE[name]))

    # the answer's keys, when the selection asks for the JSON's own keys (no alias)
    shape = tuple(key for key, _ in pairs) if all(k == n for k, n in pairs) else None
    # rows checked when made, for exactly these keys and types, are their own answer
    checked = tuple(checks) if shape is not None else None

    def rows(values: Sequence[Any]) -> list[dict[str, Any]] | None:
        if type(values) is CheckedRows and values.columns == checked:
            return values
        if set(map(type, values)) != {dict}:
            return None  # (an empty list too: the serializer's answer is the same)
        if set(map(tuple, values)) == {shape}:  # each already is its answer: served as it is
            out = values if isinstance(values, list) else list(values)
        else:
            out = [{key: value.get(name) for key, name in pairs} for value in values]
        for key, output in checks:
            column = list(map(itemgetter(key), out))
            if set(map(type, column)) != {output}:
                return None
            # a sum of finite floats is finite or overflows: NaN and infinities never pass
            total = sum(column) if output is float else 0.0
            if total - total != 0.0:
                return None
        return out

    return rows


def _constant(value: str) -> Callable[[Any], str]:
    return lambda _: value


def _plain_attribute(field: Any) -> str | None:
    """The Python attribute behind a resolver-less strawberry field, else None."""
    definition = (field.extensions or {}).get("strawberry-definition") if field else None
    if definition is None or definition.base_resolver is not None:
        return None
    return str(definition.python_name)


def _value(
    kind: GraphQLOutputType, selection_set: SelectionSetNode | None, keyed: bool = False
) -> Any:
    """graphql-core's completion of one value of this type, for plain (resolver-less) data;
    `keyed`: objects are JSON objects keyed by field name (see `_object`)."""
    if isinstance(kind, GraphQLNonNull):
        if isinstance(kind.of_type, GraphQLScalarType | GraphQLEnumType):
            return _leaf(kind.of_type, _non_null)
        inner = _value(kind.of_type, selection_set, keyed)
        return lambda value: inner(_non_null(_same, value))
    if isinstance(kind, GraphQLList):
        item = _value(kind.of_type, selection_set, keyed)
        rows = _plain_rows(kind.of_type, selection_set) if keyed else None
        if rows is not None:
            return lambda value: None if value is None else rows(value) or [item(v) for v in value]
        return lambda value: None if value is None else [item(v) for v in value]
    if isinstance(kind, GraphQLScalarType | GraphQLEnumType):
        return _leaf(kind, _or_none)
    if isinstance(kind, GraphQLObjectType):
        nested = _object(kind, selection_set, keyed)
        return lambda value: None if value is None else nested(value)
    raise Declined  # interfaces and unions


Serialized = Callable[[Callable[[Any], Any], Any], Any]


def _leaf(kind: GraphQLScalarType | GraphQLEnumType, slow: Serialized) -> Callable[[Any], Any]:
    """A leaf's serializer (`slow`: with null allowed or not). A value of a built-in scalar
    already in its output form (a finite float, a string, a bool) is passed as it is, as its
    serializer would give it back."""
    serialize = kind.serialize
    if specified_scalar_types.get(kind.name) is not kind or kind.name == "Int":
        return lambda v: slow(serialize, v)
    if kind.name == "Float":
        # v - v is 0.0 for finite floats only: NaN and infinities go to the serializer (refused)
        return lambda v: v if type(v) is float and v - v == 0.0 else slow(serialize, v)
    output = bool if kind.name == "Boolean" else str
    return lambda v: v if type(v) is output else slow(serialize, v)


def _non_null(serialize: Callable[[Any], Any], value: Any) -> Any:
    if value is None:
        raise TypeError("a non-null field holds null")
    return serialize(value)


def _same(value: Any) -> Any:
    return value


def _object_type(schema: GraphQLSchema, name: str) -> GraphQLObjectType:
    found = schema.type_map[name]
    assert isinstance(found, GraphQLObjectType)
    return found


# root field -> (its argument, the variable type it must be declared with, its layout)
_ROOT_FIELDS = {
    "predict": ("input", "PredictInput!", Layout.ONE),
    "predictBatch": ("inputs", "[PredictInput!]!", Layout.ROWS),
    "predictColumns": ("input", "PredictColumnsInput!", Layout.COLUMNS),
}
Decoded = Telemetry | Columns  # the variable, decoded: rows of telemetry, or columns


@dataclass(frozen=True)
class PredictPlan:
    """How to answer one predict, predictBatch or predictColumns operation without the
    executor."""

    field_node: FieldNode
    response_key: str
    variable: str
    layout: Layout
    selection: _Selection | _Payload
    explain: bool  # the answer selects `explanation`: compute (and store) it

    @property
    def field(self) -> str:
        """The root field: predict, predictBatch or predictColumns."""
        return self.field_node.name.value

    @property
    def batch(self) -> bool:
        """Whether the answer is a list of predictions (predictBatch)."""
        return self.layout is Layout.ROWS

    def decode(self, variables: dict[str, Any] | None) -> Decoded | None:
        """The telemetry of the variable, or None when the executor must answer instead."""
        value = (variables or {}).get(self.variable)
        if self.layout is Layout.COLUMNS:
            return _decoded_columns(value)
        items = value if self.batch else [value]
        if not isinstance(items, list) or not items or not all(type(i) is dict for i in items):
            return None
        try:
            telemetry = decode_telemetry(items)
        except TelemetryTypeError:
            return None  # the executor's coercion error explains it
        if _control_characters(telemetry.device_ids):
            return None  # the executor's check of every string variable explains it
        return telemetry

    async def execute(self, context: GraphContext, decoded: Decoded) -> ExecutionResult:
        """The operation's result, as the executor would give it."""
        runtime = context.runtime
        limit = runtime.settings.max_batch_size
        try:
            rows = decoded.rows if isinstance(decoded, Columns) else len(decoded)
            authorize(context.principal, FIELD_SCOPES[self.field], runtime.limiter, rows)
            if isinstance(decoded, Columns):
                telemetry = usecases.column_telemetry(decoded, limit)
            else:
                if self.batch:
                    usecases.check_batch_size(len(decoded), limit)
                telemetry = decoded
            predicted = await usecases.predict(
                runtime.models,
                runtime.histories,
                runtime.alerts,
                context.audit,
                telemetry,
                self.layout,
                self.explain,
            )
        except Exception as error:  # the executor's treatment of a failing non-null root field
            located = located_error(error, [self.field_node], [self.response_key])
            return ExecutionResult(data=None, errors=[located])
        audit = context.audit
        source = _Source(predicted.block, predicted.model.info, audit.subject, audit.id)
        if isinstance(self.selection, _Payload):
            return ExecutionResult(data={self.response_key: self.selection.render(source)})
        answers = self.selection.render(source)
        return ExecutionResult(data={self.response_key: answers if self.batch else answers[0]})


def _decoded_columns(value: Any) -> Columns | None:
    """The columns of a predictColumns variable, or None when the executor must answer."""
    if type(value) is not dict:
        return None
    try:
        columns = decode_columns(value)
    except TelemetryTypeError:
        return None  # the executor's coercion error explains it
    if columns.device_ids is not None and _control_characters(columns.device_ids):
        return None  # the executor's check of every string variable explains it
    return columns


def _control_characters(device_ids: Sequence[str | None]) -> bool:
    return has_control_characters("".join(d for d in device_ids if d is not None))


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
    argument_name, variable_type, layout = _ROOT_FIELDS[node.name.value]
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
    columns = layout is Layout.COLUMNS
    return PredictPlan(
        field_node=node,
        response_key=node.alias.value if node.alias else node.name.value,
        variable=variable,
        layout=layout,
        selection=(_payload if columns else _prediction)(schema, node.selection_set),
        explain=any(n.name.value == EXPLANATION for _, n in _fields(node.selection_set)),
    )


def unserved_fields(schema: GraphQLSchema) -> list[str]:
    """Fields a plan cannot serve (each makes every plan selecting it decline)."""
    missing = [
        f"Prediction.{n}" for n in _object_type(schema, "Prediction").fields if n not in SOURCES
    ]
    metrics = _object_type(schema, "Metrics")
    missing += [f"Metrics.{n}" for n in metrics.fields if n not in DEVICE_FEATURES]
    payload = _object_type(schema, "PredictColumnsPayload")
    missing += [
        f"PredictColumnsPayload.{n}"
        for n in payload.fields
        if n != REQUEST_ID and SOURCES.get(COLUMNS.get(n, "")) is None
    ]
    columns = _object_type(schema, "MetricsColumns")
    missing += [f"MetricsColumns.{n}" for n in columns.fields if n not in DEVICE_FEATURES]
    seen: set[str] = set()
    missing += _with_resolvers(_object_type(schema, "ModelVersion"), seen)
    return missing + _with_resolvers(_object_type(schema, "Explanation"), seen)


def _with_resolvers(object_type: GraphQLObjectType, seen: set[str]) -> list[str]:
    seen.add(object_type.name)
    found = []
    for name, field in object_type.fields.items():
        if f"{object_type.name}.{name}" in EXECUTOR_ONLY:
            continue
        if _plain_attribute(field) is None:
            found.append(f"{object_type.name}.{name}")
        nested = get_named_type(field.type)
        if isinstance(nested, GraphQLObjectType) and nested.name not in seen:
            found += _with_resolvers(nested, seen)
    return found
