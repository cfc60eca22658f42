"""Liveness and readiness probes (not audited: they are not API calls)."""

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from graph.http import json_response
from persistence import PersistenceError, ping


async def healthz(request: Request) -> Response:
    """The process is up and its event loop answers."""
    return json_response({"status": "ok"})


async def metrics_route(request: Request) -> Response:
    """Prometheus metrics of this process."""
    body = request.app.state.services.metrics.exposition()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


async def readyz(request: Request) -> Response:
    """Ready when the database answers and an active model is loaded."""
    services = request.app.state.services
    problems = []
    try:
        await asyncio.wait_for(asyncio.to_thread(ping, services.engine), timeout=3)
    except (PersistenceError, TimeoutError) as error:
        problems.append(f"database: {error or 'timed out'}")
    loaded = services.models.current
    if loaded is None:
        problems.append(f"model: {services.models.last_error or 'not loaded'}")
    body = {
        "status": "not ready" if problems else "ready",
        "problems": problems,
        "modelVersion": loaded.version if loaded else None,
    }
    return json_response(body, 503 if problems else 200)
