"""The API's one HTTP path, answered without Starlette's router.

Nearly every request goes to `/graphql`, whose endpoint takes every method and answers each
itself (graph/edge/graphql.py). Through Starlette it would pass the exception middleware, the
router's route matching, the route's method check and `request_response`'s second exception
layer: about 5% of a one-row `predict`'s event loop time, for nothing those layers could do
there (the endpoint raises no HTTPException; any other error reaches the audit middleware,
which answers 500, as before). This layer sits innermost, inside the audit middleware, so the
request is identified, audited and held exactly as on any other path; the other paths, and
WebSocket connections to `/graphql`, go on through the router.
"""

from collections.abc import Awaitable, Callable

from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class DirectRoute:
    """Pure ASGI: HTTP requests to `path` (any method) straight to `endpoint`."""

    def __init__(self, app: ASGIApp, path: str, endpoint: Endpoint) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and get_route_path(scope) == self.path:
            response = await self.endpoint(Request(scope, receive, send))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
