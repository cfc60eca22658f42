"""One GraphQL operation, from query text to result: prepared document, checks, plan or executor.

Two paths answer an operation, and only two: a compiled plan (graph/schema/plans.py) for the
predict documents it knows, or graphql-core's executor running the strawberry schema, whose
resolvers carry their declared permission classes. Both run under the same checks before
(document limits, operation choice, method, validation, cost, control characters) and the same
time limit after.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any

import strawberry
from graphql import ExecutionResult, execute, subscribe
from strawberry.execution.is_awaitable import optimized_is_awaitable

from graph.errors import ErrorCode, FailcastError, bad_input
from graph.runtime.deadlines import TimeLimit
from graph.runtime.strings import control_character_path
from graph.schema.context import GraphContext
from graph.schema.cursors import CursorCodec
from graph.schema.documents import DocumentCache, OperationFacts, Prepared
from graph.schema.plans import PredictPlan, compile_plan
from graph.settings import Limits, Settings

OVER_WEBSOCKET = (
    "subscriptions are served over WebSocket at /graphql, with the graphql-transport-ws protocol"
)
ONLY_SUBSCRIPTIONS = "only subscriptions run over WebSocket: send queries and mutations to /graphql"


@dataclass(frozen=True)
class OperationRequest:
    """What a client asked for: the query text, its variables, and which operation."""

    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = None


@dataclass(frozen=True)
class Executed:
    """An operation's result and the cost it was charged."""

    result: ExecutionResult
    cost: int | None


class GraphQLExecutor:
    """Runs operations against one schema, with one document cache, for one application."""

    def __init__(self, schema: strawberry.Schema, settings: Settings) -> None:
        self.schema = schema
        self.graphql_schema = schema._schema
        self.limits: Limits = settings.limits
        self.documents = DocumentCache(
            self.graphql_schema,
            self.limits,
            introspection=settings.introspection,
            hide_suggestions=settings.production,
            max_bytes=settings.document_cache_bytes,
            max_nodes=settings.document_cache_nodes,
        )
        self.cursors = CursorCodec(settings.cursor_key())
        self.plans_enabled = settings.compiled_plans
        self.timeout_s = settings.request_timeout_seconds
        self.production = settings.production

    async def execute(
        self, request: OperationRequest, context: GraphContext, allow_mutations: bool
    ) -> Executed:
        """Run one operation; raises FailcastError for a request refused before execution."""

        def allowed(kind: str) -> None:
            if kind == "subscription":
                raise FailcastError(ErrorCode.BAD_REQUEST, OVER_WEBSOCKET)
            if kind == "mutation" and not allow_mutations:
                raise FailcastError(ErrorCode.METHOD_NOT_ALLOWED, "mutations need POST")

        checked = await self._checked(request, context, allowed)
        if isinstance(checked, ExecutionResult):
            return Executed(checked, None)
        prepared, operation, variables, cost = checked
        return Executed(await self._run(prepared, operation, variables, context), cost)

    async def subscribe(
        self, request: OperationRequest, context: GraphContext
    ) -> AsyncIterator[ExecutionResult] | ExecutionResult:
        """Start a subscription: its stream of results, or the result carrying why it did not
        start; raises FailcastError for a request refused before execution."""

        def allowed(kind: str) -> None:
            if kind != "subscription":
                raise FailcastError(ErrorCode.BAD_REQUEST, ONLY_SUBSCRIPTIONS)

        checked = await self._checked(request, context, allowed)
        if isinstance(checked, ExecutionResult):
            return checked
        prepared, operation, variables, _ = checked
        _check_strings(variables)
        started = self._on_graphql(subscribe, prepared, operation, variables, context)
        if isawaitable(started):
            async with asyncio.timeout(self.timeout_s):  # the start, not the stream
                started = await started
        assert isinstance(started, ExecutionResult) or hasattr(started, "__anext__")
        result: AsyncIterator[ExecutionResult] | ExecutionResult = started
        return result

    async def _checked(
        self, request: OperationRequest, context: GraphContext, allowed: Callable[[str], None]
    ) -> tuple[Prepared, OperationFacts, dict[str, Any], int] | ExecutionResult:
        """The checks before execution: the operation, its kind, validation and cost."""
        prepared = await self.documents.get(request.query)
        audit = context.audit
        audit.describe(None, request.operation_name, prepared.sha256)
        if prepared.refusal is not None:
            raise prepared.refusal
        if prepared.syntax_error is not None:
            return ExecutionResult(None, [prepared.syntax_error])
        operation = prepared.operation(request.operation_name)
        audit.describe(operation.kind, operation.name, prepared.sha256)
        allowed(operation.kind)
        if prepared.errors:
            return ExecutionResult(None, prepared.errors)
        variables = request.variables or {}
        return prepared, operation, variables, self._checked_cost(prepared, operation, variables)

    def _checked_cost(
        self, prepared: Prepared, operation: OperationFacts, variables: dict[str, Any]
    ) -> int:
        maximum = self.limits.max_cost
        cost = prepared.cost(operation, variables, maximum)
        if cost > maximum:
            message = f"query cost exceeds {maximum}"
            raise FailcastError(
                ErrorCode.QUERY_TOO_COMPLEX, message, cost={"requested": cost, "maximum": maximum}
            )
        return cost

    async def _run(
        self,
        prepared: Prepared,
        operation: OperationFacts,
        variables: dict[str, Any],
        context: GraphContext,
    ) -> ExecutionResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        plan = self._plan(prepared, operation)
        decoded = plan.decode(variables) if plan is not None else None
        if decoded is None:  # a plan checks its own strings (device ids), and declines on these
            _check_strings(variables)
        try:
            with TimeLimit(deadline):
                if plan is not None and decoded is not None:
                    result = await plan.execute(context, decoded)
                else:
                    result = await self._execute(prepared, operation, variables, context)
        except TimeoutError:
            result = None
        if result is None or loop.time() > deadline:  # plans and sync resolvers cannot be cut
            message = f"the operation took longer than {self.timeout_s:g} s"
            raise FailcastError(ErrorCode.TIMEOUT, message)
        return result

    def _plan(self, prepared: Prepared, operation: OperationFacts) -> PredictPlan | None:
        if not self.plans_enabled or prepared.document is None:
            return None
        if operation.name not in prepared.plans:
            plan = compile_plan(self.graphql_schema, prepared.document, operation.node)
            prepared.plans[operation.name] = plan
        found: PredictPlan | None = prepared.plans[operation.name]
        return found

    async def _execute(
        self,
        prepared: Prepared,
        operation: OperationFacts,
        variables: dict[str, Any],
        context: GraphContext,
    ) -> ExecutionResult:
        result = self._on_graphql(
            execute, prepared, operation, variables, context, is_awaitable=optimized_is_awaitable
        )
        if isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        return result

    def _on_graphql(
        self,
        run: Callable[..., Any],
        prepared: Prepared,
        operation: OperationFacts,
        variables: dict[str, Any],
        context: GraphContext,
        **options: Any,
    ) -> Any:
        """graphql-core's execute or subscribe, on this schema, with strawberry's context."""
        assert prepared.document is not None
        return run(
            self.graphql_schema,
            prepared.document,
            context_value=context,
            variable_values=variables,
            operation_name=operation.name,
            executor_class=self.schema.execution_context_class,
            hide_suggestions=self.production,
            **options,
        )

    def close(self) -> None:
        """Stop the document cache's threads."""
        self.documents.close()


def _check_strings(variables: dict[str, Any]) -> None:
    """BAD_USER_INPUT naming the first string variable with a control character."""
    where = control_character_path(variables)
    if where is not None:
        raise bad_input(f"`{where}` must not contain control characters", where)
