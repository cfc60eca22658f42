"""The composition root: builds every part from one Settings object and wires them together.

Nothing here runs on a request: `create_app` builds the runtime (graph.runtime), the GraphQL
executor (graph.schema) and the HTTP edge (graph.edge), hands each its parts explicitly, and the
lifespan starts and stops the background work (model refresh, recorder, sealing, heartbeats).
"""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from auth import TokenVerifier
from graph.edge.audit import UNAUDITED_PATHS, AuditMiddleware, request_state
from graph.edge.connections import RefusalCollector
from graph.edge.cors import CORSMiddleware
from graph.edge.direct import DirectRoute
from graph.edge.export import ExportEndpoint
from graph.edge.graphiql import GraphiQL
from graph.edge.graphql import GraphQLEndpoint
from graph.edge.health import HealthEndpoints
from graph.edge.idempotency import IdempotencyGate
from graph.edge.responses import error_response
from graph.edge.rest import PredictEndpoint
from graph.edge.subscriptions import SubscriptionEndpoint
from graph.errors import ErrorCode, FailcastError
from graph.runtime import Runtime, looplag
from graph.runtime.alerts import Alerts
from graph.runtime.export import EXPORT_READERS, EXPORT_SQLITE_CACHE_KIB
from graph.runtime.gcpauses import GcPauses
from graph.runtime.histories import DeviceHistories
from graph.runtime.logs import configure_logging
from graph.runtime.metrics import Metrics
from graph.runtime.models import ModelService
from graph.runtime.monitoring import active_drift
from graph.runtime.ratelimit import Rate, RateLimiter, keep_share
from graph.runtime.recorder import AsyncWriter, Recorder, in_thread
from graph.runtime.tally import RefusalTally
from graph.runtime.webhooks import Deliveries, DeliverySettings, TargetPolicy, write_outbox
from graph.runtime.writers import WriterProcesses
from graph.schema import build_schema
from graph.schema.execution import GraphQLExecutor
from graph.settings import Settings
from persistence import (
    PersistenceError,
    WalCheckpoints,
    create_db_engine,
    idempotency,
    is_sqlite,
    seal_pending,
    session_scope,
    write_records,
)

log = logging.getLogger("failcast.app")
# A young collection every 20,000 allocations rather than Python's 700 while serving: a request
# allocates hundreds of objects that reference counting frees, and each young collection walked
# the survivors again (3% of a `predict` server's time, one every ~10 ms). In-process, 32
# concurrent `predict`s: 644 -> 591 us CPU per request (median of 5 alternated runs each).
GC_YOUNG_THRESHOLD = 20_000
# The modules whose classes a request's records carry (its effects), imported once by the fork
# server that writer processes are forked from, rather than by every writer it forks.
WRITER_PRELOAD = ("graph.runtime.alerts", "graph.runtime.webhooks")


def build_runtime(settings: Settings) -> Runtime:
    """Construct (not start) the parts of the service."""
    settings.check_startable()
    engine = create_db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        statement_timeout_ms=settings.db_statement_timeout_ms or None,
    )
    # Exports read through a pool of their own: however many run and however slowly their
    # clients read, they never hold a connection the API needs, and their long scans fill no
    # page cache of the connections that keep the writers' hot index pages (SQLite).
    exports = create_db_engine(
        settings.database_url,
        pool_size=EXPORT_READERS,
        statement_timeout_ms=settings.db_statement_timeout_ms or None,
        sqlite_cache_kib=EXPORT_SQLITE_CACHE_KIB,
    )
    # The group commits write through an engine of their own on SQLite: one connection, which
    # every commit reuses (SQLite has one writer), so its page cache keeps the indexes' hot
    # pages. Taking whichever pooled connection was free, a commit mostly found a cache SQLite
    # had emptied, since a connection's cache goes when another one has written after it.
    # With `writer_processes` (FAILCAST_WRITER_PROCESS=true), the commits are written by
    # processes of their own instead (graph/runtime/writers.py), each with one connection: a
    # thread of this process has to win the GIL back from the busy loop after each statement.
    writes = engine
    processes = None
    write: AsyncWriter
    if settings.writer_processes:
        processes = WriterProcesses(
            settings.database_url,
            engine,
            settings.writer_processes,
            preload=WRITER_PRELOAD,
            statement_timeout_ms=settings.db_statement_timeout_ms or None,
            sqlite_cache_kib=settings.sqlite_writer_cache_mib * 1024,
        )
        write = processes.write
    else:
        if is_sqlite(settings.database_url):
            writes = create_db_engine(
                settings.database_url,
                pool_size=settings.writers,
                sqlite_cache_kib=settings.sqlite_writer_cache_mib * 1024,
            )
        write = in_thread(partial(write_records, writes))
    metrics = Metrics(engine)
    limiter = RateLimiter({s: Rate(*r) for s, r in settings.rate_limits.items()})
    limiter.on_refusal = lambda scope: metrics.rate_limited.labels(scope).inc()
    anonymous = RateLimiter({"anonymous": Rate(*settings.anonymous_rate_limit)})
    deliveries = Deliveries(
        engine,
        TargetPolicy(settings.webhook_allowed_hosts),
        DeliverySettings(
            max_attempts=settings.webhook_max_attempts,
            retry_base_seconds=settings.webhook_retry_base_seconds,
            retry_max_seconds=settings.webhook_retry_max_seconds,
            timeout_seconds=settings.webhook_timeout_seconds,
            poll_seconds=settings.webhook_poll_seconds,
        ),
        counted=lambda outcome: metrics.webhook_attempts.labels(outcome).inc(),
    )
    histories = DeviceHistories(engine, settings.history_cache_devices)
    models = ModelService(engine, settings.model_refresh_seconds, on_swap=metrics.serving)
    metrics.count_model_calls(models.scoring.calls)
    return Runtime(
        settings=settings,
        engine=engine,
        exports=exports,
        writes=writes,
        verifier=TokenVerifier(settings.auth_config()),
        models=models,
        recorder=Recorder(write, writers=settings.writers, timed=metrics.observe_group_commit),
        writer_processes=processes,
        limiter=limiter,
        anonymous=anonymous,
        tally=RefusalTally(settings.refusal_tally_max_addresses),
        metrics=metrics,
        alerts=Alerts(
            engine,
            outbox=write_outbox,
            on_enqueued=deliveries.wake,
            on_foreign=histories.foreign_block,
        ),
        deliveries=deliveries,
        histories=histories,
    )


def create_app(settings: Settings) -> Starlette:
    """The ASGI application for these settings."""
    runtime = build_runtime(settings)
    runtime.metrics.registry.register(RefusalCollector())
    executor = GraphQLExecutor(build_schema(), settings)
    graphiql = GraphiQL() if settings.graphiql else None
    idempotency = IdempotencyGate(runtime)
    graphql = GraphQLEndpoint(runtime, executor, idempotency, graphiql)
    health = HealthEndpoints(runtime)
    routes: list[BaseRoute] = [
        # HTTP /graphql never reaches the router: `DirectRoute` (in `_middleware`) hands every
        # method to the endpoint, which takes GET and POST only (Starlette would let HEAD
        # through as GET, and HEAD must never run a mutation).
        # failureAlerts: the same path, over WebSocket (graphql-transport-ws); audited there.
        WebSocketRoute("/graphql", SubscriptionEndpoint(runtime, executor).handle),
        Route("/predict", PredictEndpoint(runtime, idempotency).handle, methods=["POST"]),
        Route("/exports/predictions.csv", ExportEndpoint(runtime).predictions_csv, methods=["GET"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
    ]
    unaudited = UNAUDITED_PATHS
    if graphiql is not None:  # its static files, like the health probes, are not API calls
        routes += graphiql.routes()
        unaudited |= graphiql.paths
    app = Starlette(
        routes=routes,
        middleware=_middleware(runtime, unaudited, graphql.handle),
        exception_handlers={HTTPException: _http_exception},
        lifespan=partial(_lifespan, runtime, executor),
    )
    app.state.runtime = runtime  # for tests and tools; request handlers get theirs explicitly
    app.state.executor = executor
    return app


def _middleware(
    runtime: Runtime, unaudited: frozenset[str], graphql: Callable[[Request], Awaitable[Response]]
) -> list[Middleware]:
    """Outermost first: CORS (when origins are set) answers preflights before any audit; then
    the audit; innermost, HTTP `/graphql` straight to its endpoint (graph/edge/direct.py)."""
    audit = Middleware(AuditMiddleware, runtime=runtime, unaudited=unaudited)
    direct = Middleware(DirectRoute, path="/graphql", endpoint=graphql)
    origins = runtime.settings.cors_origins
    inner = [audit, direct]
    return [Middleware(CORSMiddleware, origins=origins), *inner] if origins else inner


async def _http_exception(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405, as JSON errors with codes (and audited like any answer)."""
    assert isinstance(exc, HTTPException)
    code = ErrorCode.NOT_FOUND if exc.status_code == 404 else ErrorCode.METHOD_NOT_ALLOWED
    if exc.status_code not in (404, 405):
        code = ErrorCode.BAD_REQUEST
    error = FailcastError(code, str(exc.detail))
    audit, _ = request_state(request.scope)
    audit.answered_with([code])
    response = error_response(error, audit.id)
    response.status_code = exc.status_code
    if exc.headers:
        response.headers.update(exc.headers)
    return response


@contextlib.asynccontextmanager
async def _lifespan(
    runtime: Runtime, executor: GraphQLExecutor, app: Starlette
) -> AsyncIterator[None]:
    if runtime.writer_processes is not None:
        await runtime.writer_processes.start()
    runtime.recorder.start()
    try:
        await runtime.models.refresh()
    except PersistenceError as error:  # start anyway: /readyz reports it, the poller retries
        runtime.models.last_error = f"registry unreachable: {error}"
        log.warning("no model loaded at start-up: %s", error)
    tasks = _background(runtime)
    # Everything built so far (schema, model, modules) lives as long as the process: moved out
    # of the collector's reach, a full collection no longer walks it, so the pauses it causes
    # on whichever thread triggers it (the event loop included) stay short.
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    pauses = GcPauses(runtime.metrics.observe_gc_pause)
    pauses.install()
    try:
        yield
    finally:
        pauses.remove()
        gc.set_threshold(*thresholds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runtime.recorder.stop()
        if runtime.writer_processes is not None:
            await runtime.writer_processes.stop()
        await asyncio.to_thread(_flush_tally, runtime)
        executor.close()
        runtime.verifier.close()
        runtime.histories.close()
        runtime.engine.dispose()
        runtime.exports.dispose()
        runtime.writes.dispose()


def _background(runtime: Runtime) -> list["asyncio.Task[None]"]:
    """Model refresh, alerts from other processes, webhook deliveries, audit sealing, SQLite
    checkpoints, refusal tallies, heartbeats, drift."""
    settings, engine = runtime.settings, runtime.engine
    seal = partial(seal_pending, engine, settings.audit_seal_lag_seconds)
    work = [
        runtime.models.keep_fresh(),
        looplag.watch(runtime.metrics.observe_loop_lag),
        runtime.models.follow_switches(),
        runtime.alerts.follow(),
        runtime.deliveries.run(),
        _every(settings.audit_seal_interval_seconds, "audit sealing", seal),
        _every(settings.refusal_tally_seconds, "refusal tally", partial(_flush_tally, runtime)),
        _every(600.0, "idempotency key purge", partial(_purge_keys, runtime)),
        keep_share([runtime.limiter, runtime.anonymous], engine, settings.heartbeat_seconds),
        _keep_drift_gauges(runtime),
    ]
    if is_sqlite(settings.database_url):  # keeps SQLite's WAL short off the request path
        work.append(_every(2.0, "WAL checkpoint", WalCheckpoints(engine)))
    return [asyncio.create_task(coroutine) for coroutine in work]


def _purge_keys(runtime: Runtime) -> None:
    with session_scope(runtime.engine) as session:
        idempotency.purge(session, datetime.now(UTC))


def _flush_tally(runtime: Runtime) -> None:
    try:
        runtime.tally.flush(runtime.engine)
    except PersistenceError as error:  # kept in memory for the next turn
        log.warning("refusal tally not written: %s", error)


async def _keep_drift_gauges(runtime: Runtime) -> None:
    """Measure the active version's drift every FAILCAST_DRIFT_REFRESH_SECONDS, off the loop.

    A measurement under way when the server stops is waited for (the database's statement
    timeout bounds it), so no read outlives the engine it uses.
    """
    while True:
        await asyncio.sleep(runtime.settings.drift_refresh_seconds)
        work = asyncio.ensure_future(
            asyncio.to_thread(active_drift, runtime.engine, runtime.settings)
        )
        try:
            runtime.metrics.drift.show(await asyncio.shield(work))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await work
            raise
        except (PersistenceError, FailcastError) as error:
            log.warning("drift gauges not refreshed: %s", error)


async def _every(seconds: float, what: str, work: Callable[[], object]) -> None:
    """Run blocking database `work` off the loop every `seconds`; a failure only skips a turn."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await asyncio.to_thread(work)
        except PersistenceError as error:
            log.warning("%s skipped: %s", what, error)


def create_app_from_env() -> Starlette:
    """uvicorn factory: settings from the FAILCAST_* environment, logging configured."""
    settings = Settings()
    configure_logging(settings.json_logs, settings.log_level)
    return create_app(settings)
