"""Liveness, readiness and metrics (not audited: they are not API calls)."""

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from auth import AuthError, Scope
from graph.edge.responses import error_response, json_response
from graph.errors import MISSING_TOKEN, ErrorCode, FailcastError
from graph.runtime import Runtime
from persistence import PersistenceError, new_id, ping


class HealthEndpoints:
    """/healthz, /readyz and /metrics of one application."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def healthz(self, request: Request) -> Response:
        """The process is up and its event loop answers."""
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready when the database answers and a verified model is loaded (reasons: development)."""
        runtime = self.runtime
        problems = []
        try:
            await asyncio.wait_for(asyncio.to_thread(ping, runtime.engine), timeout=3)
        except (PersistenceError, TimeoutError) as error:
            problems.append(f"database: {error or 'timed out'}")
        loaded = runtime.models.current
        if loaded is None:
            problems.append(f"model: {runtime.models.last_error or 'not loaded'}")
        body: dict[str, object] = {"status": "not ready" if problems else "ready"}
        if not runtime.settings.production:  # details help an operator, and an attacker
            body |= {"problems": problems, "modelVersion": loaded.version if loaded else None}
        return json_response(body, 503 if problems else 200)

    async def metrics(self, request: Request) -> Response:
        """Prometheus metrics of this process (a metrics:read token when the settings ask)."""
        if self.runtime.settings.metrics_token:
            refusal = await self._refusal(request.headers.get("authorization"))
            if refusal is not None:
                return error_response(refusal, new_id())
        body = self.runtime.metrics.exposition()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def _refusal(self, authorization: str | None) -> FailcastError | None:
        if authorization is None:
            return FailcastError(ErrorCode.UNAUTHENTICATED, MISSING_TOKEN)
        try:
            principal = await self.runtime.verifier.authenticate_async(authorization)
        except AuthError as error:
            return FailcastError(ErrorCode.UNAUTHENTICATED, error.message)
        if principal is None or not principal.has(Scope.METRICS_READ):
            return FailcastError(ErrorCode.FORBIDDEN, "the token lacks the 'metrics:read' scope")
        return None
