"""The application factory: builds and wires every part from one Settings object."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from auth import TokenVerifier
from graph.audit import AuditMiddleware, RequestAudit
from graph.health import healthz, metrics_route, readyz
from graph.http import graphql_endpoint
from graph.limits import Limits
from graph.logs import configure_logging
from graph.metrics import Metrics
from graph.models import ModelService
from graph.plans import PlanCache
from graph.ratelimit import Rate, RateLimiter, keep_share
from graph.recorder import Recorder
from graph.rest import predict_route
from graph.schema import FailcastSchema, build_schema
from graph.settings import Settings
from persistence import (
    PersistenceError,
    RequestRecord,
    checkpoint,
    create_db_engine,
    is_sqlite,
    seal_pending,
    write_records,
)

log = logging.getLogger("failcast.app")
request_log = logging.getLogger("failcast.request")


@dataclass
class AppServices:
    """Everything a request handler needs, built once per application."""

    settings: Settings
    engine: Engine
    verifier: TokenVerifier
    schema: FailcastSchema
    models: ModelService
    recorder: Recorder
    limiter: RateLimiter
    metrics: Metrics
    limits: Limits
    plans: PlanCache
    tasks: list["asyncio.Task[None]"] = field(default_factory=list)

    async def record(self, record: RequestRecord) -> None:
        """Commit a request's rows (through the group-commit recorder)."""
        await self.recorder.record(record)

    def finished(self, audit: RequestAudit, record: RequestRecord, status: int) -> None:
        """Log the request's line and update the metrics, once its fate is known."""
        row = record.audit
        operation = audit.operation_type or "none"
        self.metrics.observe_request(operation, row["outcome"], row["duration_ms"] / 1000)
        loaded = self.models.current
        if record.predictions and loaded is not None:
            self.metrics.observe_predictions(loaded.version, record.predictions)
        fields = {
            "request_id": str(audit.id),
            "subject": audit.subject,
            "method": audit.method,
            "path": audit.path,
            "operation": operation,
            "operation_name": audit.operation_name,
            "outcome": row["outcome"],
            "status": status,
            "duration_ms": row["duration_ms"],
            "error_codes": row["error_codes"],
            "predictions": record.prediction_count,
        }
        request_log.info("request", extra=fields)


def build_services(settings: Settings) -> AppServices:
    """Construct (not start) the parts of the service."""
    settings.check_startable()
    engine = create_db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        statement_timeout_ms=settings.db_statement_timeout_ms or None,
    )
    metrics = Metrics(engine)
    limiter = RateLimiter({s: Rate(*r) for s, r in settings.rate_limits.items()})
    limiter.on_refusal = lambda scope: metrics.rate_limited.labels(scope).inc()
    schema = build_schema(introspection=settings.introspection)
    return AppServices(
        settings=settings,
        engine=engine,
        verifier=TokenVerifier(settings.auth_config()),
        schema=schema,
        models=ModelService(engine, settings.model_refresh_seconds, on_swap=metrics.serving),
        recorder=Recorder(partial(_write, engine), writers=settings.writers),
        limiter=limiter,
        metrics=metrics,
        limits=settings.limits,
        plans=PlanCache(schema._schema, enabled=settings.compiled_plans),
    )


def _write(engine: Engine, records: Sequence[RequestRecord]) -> None:
    write_records(engine, records)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    services: AppServices = app.state.services
    services.recorder.start()
    try:
        await services.models.refresh()
    except PersistenceError as error:  # start anyway: /readyz reports it, the poller retries
        services.models.last_error = f"registry unreachable: {error}"
        log.warning("no model loaded at start-up: %s", error)
    services.tasks.append(asyncio.create_task(services.models.keep_fresh()))
    settings, engine = services.settings, services.engine
    # Sealing: other processes may seal too, safely. Checkpoints keep SQLite's WAL short off the
    # request path (no request waits for one).
    seal = partial(seal_pending, engine, settings.audit_seal_lag_seconds)
    services.tasks.append(
        asyncio.create_task(_every(settings.audit_seal_interval_seconds, "audit sealing", seal))
    )
    if is_sqlite(settings.database_url):
        wal = partial(checkpoint, engine)
        services.tasks.append(asyncio.create_task(_every(2.0, "WAL checkpoint", wal)))
    beat = services.settings.heartbeat_seconds
    services.tasks.append(asyncio.create_task(keep_share(services.limiter, services.engine, beat)))
    try:
        yield
    finally:
        for task in services.tasks:
            task.cancel()
        await asyncio.gather(*services.tasks, return_exceptions=True)
        await services.recorder.stop()
        services.engine.dispose()


async def _every(seconds: float, what: str, work: Callable[[], object]) -> None:
    """Run blocking database `work` off the loop every `seconds`; a failure only skips a turn."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await asyncio.to_thread(work)
        except PersistenceError as error:
            log.warning("%s skipped: %s", what, error)


def create_app(settings: Settings) -> Starlette:
    """The ASGI application for these settings."""
    services = build_services(settings)
    routes = [
        Route("/graphql", graphql_endpoint, methods=["GET", "POST"]),
        Route("/predict", predict_route, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    middleware = [
        Middleware(
            AuditMiddleware,
            record=services.record,
            finished=services.finished,
            commit_timeout_s=settings.commit_timeout_seconds,
        )
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=_lifespan)
    app.state.services = services
    return app


def create_app_from_env() -> Starlette:
    """uvicorn factory: settings from the FAILCAST_* environment, logging configured."""
    settings = Settings()
    configure_logging(settings.json_logs, settings.log_level)
    return create_app(settings)
