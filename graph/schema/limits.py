"""The limits every document is held to, checked in one walk linear in its size.

Each fragment is walked once (memoised) and cycles are refused, so a document whose fragments
spread the previous one twice costs what its text costs, not 2^n. Beyond the usual ceilings
(depth, aliases, cost) the walk bounds what makes graphql-core's validation quadratic: the fields
a document expands to, fragment spreads, and repeated fields: graphql-core compares every pair
of fields selected under one response key, and their sub-selections pair by pair, so the walk
counts those comparisons and refuses a document that would need too many. String literals with
control characters are refused here too.

Costs follow GitHub's GraphQL API: every object a query can return counts one, and a field with
a `first`/`last` argument multiplies what it selects by that page size (its default when not
given), `predictBatch` by its inputs, and a list bounded otherwise (`Limits.list_bounds`:
`predictionStats` by FAILCAST_MAX_STATS_ROWS, the explanations of a `predictColumns` answer by
FAILCAST_MAX_BATCH_SIZE) by its bound; JSON-valued fields count
`JSON_COST` and lists of leaves one, since their size is not bounded by the selection. The
walk compiles each operation into a cost program that `evaluate` runs per request with its
variables, each fragment once.
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    get_named_type,
)

from graph.errors import ErrorCode, FailcastError
from graph.runtime.strings import has_control_characters
from graph.settings import Limits

JSON_COST = 5
PAGE_ARGUMENTS = ("first", "last")
BATCH_ARGUMENT = "inputs"
DEFAULT_PAGE = 20  # the page size of a connection asked for without `first` or `last`


@dataclass(frozen=True)
class _Field:
    """A field that costs: `weight` plus its selection, times its multiplier."""

    weight: int
    child: "CostSet | None"
    literal: int = 1  # the multiplier when no variable decides it
    variable: str | None = None  # a variable holding a page size or the batch
    batch: bool = False  # the variable is a list whose length multiplies


@dataclass(frozen=True)
class CostSet:
    """The cost program of a selection set: its fields, and the fragments it spreads."""

    fields: tuple[_Field, ...]
    spreads: tuple[str, ...]


@dataclass
class _Summary:
    """What a selection set (or fragment) adds up to, fragments expanded."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0
    keys: Counter[str] = field(default_factory=Counter)  # response keys at this level
    inner: dict[str, "_Summary"] = field(default_factory=dict)  # key -> its widest selection
    pairs: int = 0  # field pairs validation compares in this set and below


@dataclass(frozen=True)
class Checked:
    """A document within its limits: its programs, and how many nodes it holds."""

    operations: list[tuple[OperationDefinitionNode, CostSet]]
    fragments: dict[str, CostSet]
    nodes: int  # fields, arguments, directives, spreads and values, as written


def check_document(schema: GraphQLSchema, document: DocumentNode, limits: Limits) -> Checked:
    """Each operation's cost program and each fragment's, or FailcastError over a limit."""
    checker = _Checker(schema, document, limits)
    operations = checker.check()
    return Checked(operations, dict(checker.programs), checker.nodes)


class _Checker:
    """The linear walk: limits, cycles, control characters, and each operation's cost program."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, limits: Limits) -> None:
        self.schema, self.limits = schema, limits
        self.definitions = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.operations = [
            d for d in document.definitions if isinstance(d, OperationDefinitionNode)
        ]
        self.summaries: dict[str, _Summary] = {}
        self.programs: dict[str, CostSet] = {}
        self.visiting: list[str] = []
        self.spreads = 0
        self.nodes = len(self.definitions) + len(self.operations)
        self.list_bounds = dict(limits.list_bounds)

    def check(self) -> list[tuple[OperationDefinitionNode, CostSet]]:
        """Refuse (FailcastError) a document over a limit; each operation's cost program."""
        for name, definition in self.definitions.items():
            self._fragment(name, definition)
        programs = []
        for operation in self.operations:
            self._check_values(operation.variable_definitions or (), "variable defaults")
            root = self.schema.get_root_type(operation.operation)
            summary, program = self._selection_set(operation.selection_set, root)
            self._check_summary(summary)
            programs.append((operation, program))
        return programs

    def _check_summary(self, summary: _Summary) -> None:
        limits = self.limits
        if summary.depth > limits.max_depth:
            message = f"depth {summary.depth} exceeds {limits.max_depth}"
            raise FailcastError(ErrorCode.QUERY_TOO_DEEP, message)
        if summary.aliases > limits.max_aliases:
            message = f"{summary.aliases} aliases exceed {limits.max_aliases}"
            raise FailcastError(ErrorCode.TOO_MANY_ALIASES, message)
        if summary.fields > limits.max_fields:
            message = (
                f"the document expands to {summary.fields} fields (at most {limits.max_fields})"
            )
            raise FailcastError(ErrorCode.QUERY_TOO_COMPLEX, message)

    def _fragment(self, name: str, definition: FragmentDefinitionNode) -> _Summary:
        found = self.summaries.get(name)
        if found is not None:
            return found
        if name in self.visiting:
            cycle = " -> ".join([*self.visiting[self.visiting.index(name) :], name])
            message = f"fragment {name} spreads itself ({cycle})"
            raise FailcastError(ErrorCode.GRAPHQL_VALIDATION_FAILED, message)
        self.visiting.append(name)
        condition = self.schema.get_type(definition.type_condition.name.value)
        summary, program = self._selection_set(definition.selection_set, condition)
        self.visiting.pop()
        self.summaries[name], self.programs[name] = summary, program
        self._check_summary(summary)  # early: a bomb stops at its first level over a limit
        return summary

    def _selection_set(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None
    ) -> tuple[_Summary, CostSet]:
        summary = _Summary()
        fields: list[_Field] = []
        spreads: list[str] = []
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                self._add_field(selection, parent, summary, fields)
            elif isinstance(selection, InlineFragmentNode):
                self._check_directives(selection)
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                part, program = self._selection_set(selection.selection_set, inner)
                _merge(summary, part, 1)
                fields.extend(program.fields)
                spreads.extend(program.spreads)
            elif isinstance(selection, FragmentSpreadNode):
                self._add_spread(selection, summary, spreads)
        self._check_repeats(summary)
        return summary, CostSet(tuple(fields), tuple(spreads))

    def _add_field(
        self,
        node: FieldNode,
        parent: GraphQLNamedType | None,
        summary: _Summary,
        fields: list[_Field],
    ) -> None:
        self._check_directives(node)
        self._check_values(node.arguments or (), f"arguments of {node.name.value}")
        definition = (
            parent.fields.get(node.name.value) if isinstance(parent, GraphQLObjectType) else None
        )
        kind = definition.type if definition is not None else None
        child_type = get_named_type(kind) if kind is not None else None
        inner, program = self._selection_set(node.selection_set, child_type)
        introspection = node.name.value.startswith("__")  # introspection nests deep by design
        summary.depth = max(summary.depth, 0 if introspection else 1 + inner.depth)
        summary.aliases += (1 if node.alias else 0) + inner.aliases
        summary.fields += 1 + inner.fields
        key = node.alias.value if node.alias else node.name.value
        summary.keys[key] += 1
        summary.inner[key] = _widest(summary.inner.get(key), inner)
        weight = _weight(kind)
        if weight or program.fields or program.spreads:
            bound = self.list_bounds.get(f"{getattr(parent, 'name', '')}.{node.name.value}")
            entry = _multiplied(node, definition, weight, program)
            fields.append(entry if bound is None else _Field(weight, program, bound))

    def _add_spread(self, node: FragmentSpreadNode, summary: _Summary, spreads: list[str]) -> None:
        self._check_directives(node)
        self.spreads += 1
        if self.spreads > self.limits.max_fragment_spreads:
            message = f"more than {self.limits.max_fragment_spreads} fragment spreads"
            raise FailcastError(ErrorCode.QUERY_TOO_COMPLEX, message)
        name = node.name.value
        definition = self.definitions.get(name)
        if definition is None:
            return  # validation reports the unknown fragment
        _merge(summary, self._fragment(name, definition), 1)
        spreads.append(name)

    def _check_repeats(self, summary: _Summary) -> None:
        """Refuse repeated fields whose pairwise comparison (by validation) would be costly."""
        summary.pairs = sum(
            _pairs(count, summary.inner.get(key)) for key, count in summary.keys.items()
        )
        if summary.pairs > self.limits.max_field_pairs:
            key = max(summary.keys, key=lambda k: summary.keys[k])
            most = self.limits.max_field_pairs
            message = (
                f"repeated fields ('{key}' {summary.keys[key]} times in one selection set) would "
                f"be compared {summary.pairs} times by validation (at most {most})"
            )
            raise FailcastError(ErrorCode.QUERY_TOO_COMPLEX, message)

    def _check_directives(self, node: Any) -> None:
        self.nodes += 1  # the field, fragment or spread the directives belong to
        for directive in node.directives or ():
            self.nodes += 1
            self._check_values(directive.arguments or (), f"@{directive.name.value}")

    def _check_values(self, nodes: Sequence[Any], where: str) -> None:
        for node in nodes:
            value = node.value if isinstance(node, ArgumentNode) else node.default_value
            self.nodes += 1 + (_size(value) if value is not None else 0)
            if value is not None and _has_control_string(value):
                message = f"a string in the {where} contains control characters"
                raise FailcastError(ErrorCode.BAD_USER_INPUT, message, field="query")


def _merge(summary: _Summary, part: _Summary, times: int) -> None:
    summary.depth = max(summary.depth, part.depth)
    summary.aliases += part.aliases * times
    summary.fields += part.fields * times
    for key, count in part.keys.items():
        summary.keys[key] += count * times
        summary.inner[key] = _widest(summary.inner.get(key), part.inner[key])


def _widest(first: "_Summary | None", second: "_Summary") -> "_Summary":
    if first is None:
        return second
    return first if _width(first) + first.pairs >= _width(second) + second.pairs else second


def _width(summary: "_Summary") -> int:
    return sum(summary.keys.values())


def _pairs(count: int, inner: "_Summary | None") -> int:
    """Comparisons of `count` fields of one key: each pair, and their sub-selections."""
    below = (_width(inner) + inner.pairs) if inner is not None else 0
    return count * (count - 1) // 2 * (1 + below) + (count * inner.pairs if inner else 0)


def _size(value: ValueNode) -> int:
    if isinstance(value, ListValueNode):
        return 1 + sum(_size(item) for item in value.values)
    if isinstance(value, ObjectValueNode):
        return 1 + sum(1 + _size(item.value) for item in value.fields)
    return 1


def _has_control_string(value: ValueNode) -> bool:
    if isinstance(value, StringValueNode):
        return has_control_characters(value.value)
    if isinstance(value, ListValueNode):
        return any(_has_control_string(item) for item in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_has_control_string(item.value) for item in value.fields)
    return False


def _weight(kind: GraphQLOutputType | None) -> int:
    """What a field costs by itself: objects 1, JSON JSON_COST, lists of leaves 1, leaves 0."""
    if kind is None:
        return 0
    named, is_list = get_named_type(kind), _is_list(kind)
    if isinstance(named, GraphQLScalarType | GraphQLEnumType):
        if named.name == "JSON":
            return JSON_COST
        return 1 if is_list else 0
    return 1


def _is_list(kind: GraphQLOutputType) -> bool:
    inner = kind.of_type if isinstance(kind, GraphQLNonNull) else kind
    return isinstance(inner, GraphQLList)


def _multiplied(node: FieldNode, definition: Any, weight: int, program: CostSet) -> _Field:
    """The field's cost entry, with the argument (or default) that multiplies it."""
    arguments = {argument.name.value: argument.value for argument in node.arguments or ()}
    for name in (*PAGE_ARGUMENTS, BATCH_ARGUMENT):
        value = arguments.get(name)
        batch = name == BATCH_ARGUMENT
        if isinstance(value, VariableNode):  # the default counts when the variable is unset
            return _Field(weight, program, _page_default(definition), value.name.value, batch)
        if isinstance(value, IntValueNode) and not batch:
            return _Field(weight, program, max(int(value.value), 1))
        if isinstance(value, ListValueNode) and batch:
            return _Field(weight, program, max(len(value.values), 1))
    default = _page_default(definition)
    return _Field(weight, program, default)


def _page_default(definition: Any) -> int:
    """What a paged field returns when no page size is given: its default, else DEFAULT_PAGE."""
    if definition is None:
        return 1
    for name in PAGE_ARGUMENTS:
        argument = definition.args.get(name)
        if argument is not None:
            default = argument.default_value
            return max(default, 1) if isinstance(default, int) else DEFAULT_PAGE
    return 1


def evaluate(
    program: CostSet, fragments: Mapping[str, CostSet], variables: Mapping[str, Any], ceiling: int
) -> int:
    """The cost of a program with these variables (counting stops just past `ceiling`)."""
    return _evaluate(program, fragments, variables, {}, ceiling)


def _evaluate(
    program: CostSet,
    fragments: Mapping[str, CostSet],
    variables: Mapping[str, Any],
    memo: dict[str, int],
    ceiling: int,
) -> int:
    """The cost of a selection set; each fragment is evaluated once per request (memo)."""
    total = 0
    for entry in program.fields:
        child = _evaluate(entry.child, fragments, variables, memo, ceiling) if entry.child else 0
        total += _multiplier(entry, variables) * (entry.weight + child)
        if total > ceiling:
            return ceiling + 1
    for name in program.spreads:
        if name not in memo:
            memo[name] = _evaluate(fragments[name], fragments, variables, memo, ceiling)
        total += memo[name]
        if total > ceiling:
            return ceiling + 1
    return total


def _multiplier(entry: _Field, variables: Mapping[str, Any]) -> int:
    if entry.variable is None:
        return entry.literal
    value = variables.get(entry.variable)
    if entry.batch:
        return max(len(value), 1) if isinstance(value, list) else 1
    if isinstance(value, int) and not isinstance(value, bool):
        return max(value, 1)
    return entry.literal
