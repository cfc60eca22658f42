"""Each query text parsed, limit-checked and validated once, and kept per application.

A `Prepared` document holds what every later request with the same text needs: the parsed
document, the refusal if it breaks a limit (graph/schema/limits.py), its validation errors, each
operation's cost program and (filled by the executor) its compiled plans. `DocumentCache` keeps
them per application, bounded in bytes, and prepares new texts on a small thread pool so that
the event loop never parses or validates: a heavy document delays its own request, not the
probes and requests of others. Only authenticated requests reach it (the edge refuses the others
before reading a query), so only they can fill it. A text whose preparation still takes more
than `check_budget_ms` of CPU is refused.
"""

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    parse,
    specified_rules,
    validate,
)
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule

from graph.errors import ErrorCode, FailcastError
from graph.schema.limits import CostSet, check_document, evaluate
from graph.settings import Limits

# Bytes an entry holds per byte of query text and per node, measured with tracemalloc and
# rounded up; see tests/unit/test_documents.py.
BYTES_PER_CHARACTER = 2
BYTES_PER_NODE = 1000
ENTRY_OVERHEAD_BYTES = 32 * 1024


@dataclass(frozen=True)
class OperationFacts:
    """One operation of a document."""

    node: OperationDefinitionNode
    cost: CostSet

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
    size: int  # bytes, estimated
    document: DocumentNode | None = None
    nodes: int = 0  # objects the garbage collector walks while the entry is cached
    refusal: FailcastError | None = None
    syntax_error: GraphQLError | None = None
    errors: list[GraphQLError] = field(default_factory=list)
    operations: list[OperationFacts] = field(default_factory=list)
    fragments: Mapping[str, CostSet] = field(default_factory=dict)
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
        return evaluate(operation.cost, self.fragments, variables, ceiling)


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
        max_nodes: int = 25_000,
        threads: int = 2,
    ) -> None:
        self.schema, self.limits = schema, limits
        self.max_bytes, self.max_nodes = max_bytes, max_nodes
        self.hide_suggestions = hide_suggestions
        rules: list[type[ASTValidationRule]] = list(specified_rules)
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self.rules = tuple(rules)
        self._items: OrderedDict[str, Prepared] = OrderedDict()
        self._bytes = self._nodes = 0
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

    @property
    def nodes(self) -> int:
        """The parsed nodes the cached entries hold."""
        return self._nodes

    def _keep(self, prepared: Prepared) -> None:
        if prepared.query in self._items:
            return
        if prepared.size > self.max_bytes or prepared.nodes > self.max_nodes:
            return
        self._items[prepared.query] = prepared
        self._bytes += prepared.size
        self._nodes += prepared.nodes
        while self._bytes > self.max_bytes or self._nodes > self.max_nodes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= evicted.size
            self._nodes -= evicted.nodes

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
        # Without locations: a third of the objects, which every full garbage collection walks
        # while the document is cached (validation errors then carry no `locations`).
        document = parse(
            query,
            no_location=True,
            max_lexical_tokens=limits.max_tokens,
            max_comments=limits.max_tokens,
        )
    except GraphQLSyntaxError as error:
        if "Parsing aborted" in error.message:
            message = f"the document has more than {limits.max_tokens} tokens or comments"
            return _refused(query, FailcastError(ErrorCode.TOO_MANY_TOKENS, message))
        prepared = _refused(query, FailcastError(ErrorCode.GRAPHQL_PARSE_FAILED, error.message))
        prepared.refusal, prepared.syntax_error = None, error
        return prepared
    size = ENTRY_OVERHEAD_BYTES + BYTES_PER_CHARACTER * len(query)
    prepared = Prepared(query, query_sha256(query), size, document)
    try:
        checked = check_document(cache.schema, document, limits)
    except FailcastError as refusal:
        return _refused(query, refusal)
    prepared.operations = [OperationFacts(node, cost) for node, cost in checked.operations]
    prepared.fragments, prepared.nodes = checked.fragments, checked.nodes
    prepared.size += BYTES_PER_NODE * checked.nodes
    found = validate(cache.schema, document, cache.rules, hide_suggestions=cache.hide_suggestions)
    for invalid in found:
        invalid.extensions = {**(invalid.extensions or {}), "code": "GRAPHQL_VALIDATION_FAILED"}
    prepared.errors = found
    return prepared
