"""CORS for browser apps: preflights answered here, answers to allowed origins made readable.

Pure ASGI middleware, outside the audit middleware, installed only when FAILCAST_CORS_ORIGINS
lists origins. A preflight (OPTIONS with Access-Control-Request-Method) is the browser asking
whether it may send the real request: it is not an API call, so it needs no token and leaves
no audit row, like the health probes. Only the API routes are shared, and only with the listed
origins; everything else gets no Access-Control-* header at all. No Allow-Credentials: clients
send a bearer token in Authorization, never cookies.
"""

from collections.abc import Awaitable, Callable, Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.edge.audit import SECURITY_HEADERS
from graph.edge.identity import header
from graph.settings import ANY_ORIGIN
from persistence import new_id

CORS_PATHS = frozenset({"/graphql", "/predict", "/exports/predictions.csv"})
ALLOW_METHODS = b"GET, POST"
# What a GraphQL client sends beyond the CORS-safelisted headers.
ALLOW_HEADERS = b"Authorization, Content-Type, X-Request-ID, Idempotency-Key"
EXPOSE_HEADERS = b"X-Request-ID, Retry-After, WWW-Authenticate"
MAX_AGE_SECONDS = 600  # short: an origin removed from the list stops working within minutes
VARY_ORIGIN = (b"vary", b"Origin")


class AllowedOrigins:
    """FAILCAST_CORS_ORIGINS: the browser apps' origins (`*`: every origin, development only)."""

    def __init__(self, origins: Collection[str]) -> None:
        self.any_origin = ANY_ORIGIN in origins
        self.origins = frozenset(origins) - {ANY_ORIGIN}

    def allowed_origin(self, origin: str | None) -> str | None:
        """The request's Origin when it is one of the allowed origins, else None."""
        if origin is None or not (self.any_origin or origin in self.origins):
            return None
        return origin


class CORSMiddleware(AllowedOrigins):
    """Answer preflights; mark the API's answers to allowed origins as readable by them."""

    def __init__(
        self, app: ASGIApp, origins: Collection[str], paths: Collection[str] = CORS_PATHS
    ) -> None:
        super().__init__(origins)
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        shared = scope["path"] in self.paths
        origin = self.allowed_origin(header(scope, b"origin")) if shared else None
        if _is_preflight(scope):
            await _answer_preflight(send, origin)
        elif shared:
            await self.app(scope, receive, _marked(send, origin))
        else:
            await self.app(scope, receive, send)


def _is_preflight(scope: Scope) -> bool:
    """OPTIONS asking for another method: a browser's preflight, never an API call."""
    method_asked = header(scope, b"access-control-request-method")
    return scope["method"] == "OPTIONS" and method_asked is not None


async def _answer_preflight(send: Send, origin: str | None) -> None:
    """204; the allow headers only for an allowed origin on a shared path."""
    headers = [*SECURITY_HEADERS, (b"x-request-id", str(new_id()).encode()), VARY_ORIGIN]
    if origin is not None:
        headers += [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-max-age", str(MAX_AGE_SECONDS).encode()),
        ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _marked(send: Send, origin: str | None) -> Callable[[Message], Awaitable[None]]:
    """`send`, adding Vary: Origin (the answer depends on it) and, if allowed, the CORS headers."""

    async def marked(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), VARY_ORIGIN]
            if origin is not None:
                headers += [
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-expose-headers", EXPOSE_HEADERS),
                ]
            message = {**message, "headers": headers}
        await send(message)

    return marked
