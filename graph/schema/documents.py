"""Each query text parsed, limit-checked and validated once, in time linear in its size.

A `Prepared` document holds what every later request with the same text needs: the parsed
document, the refusal if it breaks a limit, its validation errors, each operation's cost program
and (filled by the executor) its compiled plans. `DocumentCache` keeps them per application,
bounded in bytes, and prepares new texts on a small thread pool so that the event loop never
parses or validates: a heavy document delays its own request, not the probes and requests of
others. Only authenticated requests reach it (the edge refuses the others before reading a
query), so only they can fill it.

The limit checks walk each fragment once (memoised) and refuse cycles, so a document whose
fragments spread the previous one twice costs what its text costs, not 2^n. Beyond the usual
ceilings (tokens, depth, aliases, cost) they bound what makes graphql-core's validation
quadratic: the fields a document expands to, and how often one response key is selected in one
selection set. A text whose preparation still takes more than `check_budget_ms` of CPU is refused.

Costs follow GitHub's GraphQL API: every object a query can return counts one, and a field with
a `first`/`last` argument multiplies what it selects by that page size (its default when not
given), `predictBatch` by its inputs; JSON-valued fields count `JSON_COST` and lists of scalars
one, since their size is not bounded by the selection.
"""

import asyncio
import hashlib
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLSyntaxError,
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
    parse,
    specified_rules,
    validate,
)
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule

from graph.errors import ErrorCode, FailcastError
from graph.runtime.strings import has_control_characters
from graph.settings import Limits

JSON_COST = 5
PAGE_ARGUMENTS = ("first", "last")
BATCH_ARGUMENT = "inputs"
# Bytes an entry holds per byte of query text and per token (parsed nodes, locations and the
# token list they keep), measured with tracemalloc and rounded up; see tests/unit/test_documents.
BYTES_PER_CHARACTER = 2
BYTES_PER_TOKEN = 700
ENTRY_OVERHEAD_BYTES = 4096


@dataclass(frozen=True)
class _Field:
    """A field that costs: `weight` plus its selection, times its multiplier."""

    weight: int
    child: "_CostSet | None"
    literal: int = 1  # the multiplier when no variable decides it
    variable: str | None = None  # a variable holding a page size or the batch
    batch: bool = False  # the variable is a list whose length multiplies


@dataclass(frozen=True)
class _CostSet:
    fields: tuple[_Field, ...]
    spreads: tuple[str, ...]


@dataclass(frozen=True)
class OperationFacts:
    """One operation of a document."""

    node: OperationDefinitionNode
    cost: _CostSet

    @property
    def kind(self) -> str:
        """query, mutation or subscription."""
        return self.node.operation.value

    @property
    def name(self) -> str | None:
        """The operation's name, if it has one."""
        return self.node.name.value if self.node.name else None


@dataclass
class Prepared:
    """A query text, checked once: what every request with this text reuses."""

    query: str
    sha256: str
    size: int
    document: DocumentNode | None = None
    refusal: FailcastError | None = None
    syntax_error: GraphQLError | None = None
    errors: list[GraphQLError] = field(default_factory=list)
    operations: list[OperationFacts] = field(default_factory=list)
    fragments: Mapping[str, _CostSet] = field(default_factory=dict)
    plans: dict[str | None, Any] = field(default_factory=dict)  # the executor's, by op name

    def operation(self, name: str | None) -> OperationFacts:
        """The operation a request runs; BAD_REQUEST when the name does not pick exactly one."""
        if name is not None:
            for operation in self.operations:
                if operation.name == name:
                    return operation
            message = "operationName does not name an operation of the document"
            raise FailcastError(ErrorCode.BAD_REQUEST, message)
        if len(self.operations) != 1:
            message = "the document must hold exactly one operation, or give operationName"
            raise FailcastError(ErrorCode.BAD_REQUEST, message)
        return self.operations[0]

    def cost(self, operation: OperationFacts, variables: Mapping[str, Any], ceiling: int) -> int:
        """The operation's cost with these variables (counting stops just past `ceiling`)."""
        return _evaluate(operation.cost, self.fragments, variables, {}, ceiling)


def query_sha256(query: str) -> str:
    """The fingerprint of a query text the audit trail keeps."""
    return hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()


class DocumentCache:
    """Prepared documents by query text, least recently used first out, bounded in bytes."""

    def __init__(
        self,
        schema: GraphQLSchema,
        limits: Limits,
        introspection: bool = True,
        hide_suggestions: bool = False,
        max_bytes: int = 32 * 1024 * 1024,
        threads: int = 2,
    ) -> None:
        self.schema, self.limits, self.max_bytes = schema, limits, max_bytes
        self.hide_suggestions = hide_suggestions
        rules: list[type[ASTValidationRule]] = list(specified_rules)
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self.rules = tuple(rules)
        self._items: OrderedDict[str, Prepared] = OrderedDict()
        self._bytes = 0
        self._pending: dict[str, asyncio.Future[Prepared]] = {}
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="failcast-documents")

    @property
    def bytes(self) -> int:
        """The estimated memory the cached entries hold."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    async def get(self, query: str) -> Prepared:
        """The prepared document of a query text (prepared off the event loop on first sight)."""
        found = self._items.get(query)
        if found is not None:
            self._items.move_to_end(query)
            return found
        pending = self._pending.get(query)
        if pending is None:  # one preparation per text, however many requests wait for it
            loop = asyncio.get_running_loop()
            pending = asyncio.ensure_future(loop.run_in_executor(self._pool, self.prepare, query))
            self._pending[query] = pending
            pending.add_done_callback(lambda _: self._pending.pop(query, None))
        prepared = await asyncio.shield(pending)
        self._keep(prepared)
        return prepared

    def prepare(self, query: str) -> Prepared:
        """Parse, check and validate a query text (blocking; runs on the pool)."""
        budget_ms = self.limits.check_budget_ms
        for _ in range(2):  # a garbage-collection pause can land in any one run: measure twice
            started = time.thread_time()
            prepared = _prepare(self, query)
            spent_ms = (time.thread_time() - started) * 1000
            if prepared.refusal is not None or spent_ms <= budget_ms:
                return prepared
        message = f"the document took {spent_ms:.0f} ms to check (at most {budget_ms:.0f} ms)"
        return _refused(query, FailcastError(ErrorCode.QUERY_TOO_COMPLEX, message))

    def _keep(self, prepared: Prepared) -> None:
        if prepared.query in self._items or prepared.size > self.max_bytes:
            return
        self._items[prepared.query] = prepared
        self._bytes += prepared.size
        while self._bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= evicted.size

    def close(self) -> None:
        """Stop the preparation threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _refused(query: str, refusal: FailcastError) -> Prepared:
    size = ENTRY_OVERHEAD_BYTES + BYTES_PER_CHARACTER * len(query)
    return Prepared(query, query_sha256(query), size, refusal=refusal)


def _prepare(cache: DocumentCache, query: str) -> Prepared:
    limits = cache.limits
    if len(query) > limits.max_query_bytes or len(query.encode()) > limits.max_query_bytes:
        message = f"the query text exceeds {limits.max_query_bytes} bytes"
        return _refused(query, FailcastError(ErrorCode.REQUEST_TOO_LARGE, message))
    try:
        document = parse(
            query, max_lexical_tokens=limits.max_tokens, max_comments=limits.max_tokens
        )
    except GraphQLSyntaxError as error:
        if "Parsing aborted" in error.message:
            message = f"the document has more than {limits.max_tokens} tokens or comments"
            return _refused(query, FailcastError(ErrorCode.TOO_MANY_TOKENS, message))
        prepared = _refused(query, FailcastError(ErrorCode.GRAPHQL_PARSE_FAILED, error.message))
        prepared.refusal, prepared.syntax_error = None, error
        return prepared
    tokens = _token_count(document)
    size = ENTRY_OVERHEAD_BYTES + BYTES_PER_CHARACTER * len(query) + BYTES_PER_TOKEN * tokens
    prepared = Prepared(query, query_sha256(query), size, document)
    try:
        _Checker(cache.schema, document, limits).check(prepared)
    except FailcastError as refusal:
        return _refused(query, refusal)
    found = validate(cache.schema, document, cache.rules, hide_suggestions=cache.hide_suggestions)
    for invalid in found:
        invalid.extensions = {**(invalid.extensions or {}), "code": "GRAPHQL_VALIDATION_FAILED"}
    prepared.errors = found
    return prepared


def _token_count(document: DocumentNode) -> int:
    token, count = document.loc.start_token if document.loc else None, 0
    while token is not None:
        count, token = count + 1, token.next
    return count


@dataclass
class _Summary:
    """What a selection set (or fragment) adds up to, fragments expanded."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0
    keys: Counter[str] = field(default_factory=Counter)  # response keys at this level


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
        self.programs: dict[str, _CostSet] = {}
        self.visiting: list[str] = []
        self.spreads = 0

    def check(self, prepared: Prepared) -> None:
        """Refuse (FailcastError) a document over a limit; fill in its operations' programs."""
        for name, definition in self.definitions.items():
            self._fragment(name, definition)
        for operation in self.operations:
            self._check_values(operation.variable_definitions or (), "variable defaults")
            root = self.schema.get_root_type(operation.operation)
            summary, program = self._selection_set(operation.selection_set, root)
            self._check_summary(summary)
            prepared.operations.append(OperationFacts(operation, program))
        prepared.fragments = dict(self.programs)

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
    ) -> tuple[_Summary, _CostSet]:
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
        self._check_repeats(summary.keys)
        return summary, _CostSet(tuple(fields), tuple(spreads))

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
        summary.keys[node.alias.value if node.alias else node.name.value] += 1
        weight = _weight(kind)
        if weight or program.fields or program.spreads:
            fields.append(_multiplied(node, definition, weight, program))

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

    def _check_repeats(self, keys: Counter[str]) -> None:
        if not keys:
            return
        key, times = keys.most_common(1)[0]
        most = self.limits.max_repeats
        if times > most:
            message = f"'{key}' is selected {times} times in one selection set (at most {most})"
            raise FailcastError(ErrorCode.QUERY_TOO_COMPLEX, message)

    def _check_directives(self, node: Any) -> None:
        for directive in node.directives or ():
            self._check_values(directive.arguments or (), f"@{directive.name.value}")

    def _check_values(self, nodes: Sequence[Any], where: str) -> None:
        for node in nodes:
            value = node.value if isinstance(node, ArgumentNode) else node.default_value
            if value is not None and _has_control_string(value):
                message = f"a string in the {where} contains control characters"
                raise FailcastError(ErrorCode.BAD_USER_INPUT, message, field="query")


def _merge(summary: _Summary, part: _Summary, times: int) -> None:
    summary.depth = max(summary.depth, part.depth)
    summary.aliases += part.aliases * times
    summary.fields += part.fields * times
    for key, count in part.keys.items():
        summary.keys[key] += count * times


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


def _multiplied(node: FieldNode, definition: Any, weight: int, program: _CostSet) -> _Field:
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
    if definition is None:
        return 1
    for name in PAGE_ARGUMENTS:
        argument = definition.args.get(name)
        if argument is not None and isinstance(argument.default_value, int):
            return max(argument.default_value, 1)
    return 1


def _evaluate(
    program: _CostSet,
    fragments: Mapping[str, _CostSet],
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
