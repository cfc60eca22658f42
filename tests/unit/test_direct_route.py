"""graph.edge.direct: `/graphql` over HTTP straight to its endpoint, everything else onward."""

import asyncio

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from graph.edge.direct import DirectRoute


class _Inner:
    """The app behind the layer (the router): records what reached it."""

    def __init__(self) -> None:
        self.paths: list[tuple[str, str]] = []

    async def __call__(self, scope, receive, send) -> None:
        self.paths.append((scope["type"], scope["path"]))
        if scope["type"] == "http":
            await PlainTextResponse("router")(scope, receive, send)


async def _endpoint(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"endpoint {request.method} {body.decode()}", status_code=201)


def _call(app, scope_type: str, path: str, method: str = "POST", root_path: str = ""):
    sent: list[dict] = []
    scope = {
        "type": scope_type,
        "path": path,
        "root_path": root_path,
        "method": method,
        "headers": [],
        "query_string": b"",
    }

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _body(sent: list[dict]) -> tuple[int, bytes]:
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_http_requests_to_the_path_reach_the_endpoint_with_their_method_and_body():
    inner = _Inner()
    app = DirectRoute(inner, "/graphql", _endpoint)
    for method in ("POST", "GET", "HEAD", "DELETE"):  # the endpoint answers every method itself
        assert _body(_call(app, "http", "/graphql", method)) == (
            201,
            f"endpoint {method} {{}}".encode(),
        )
    assert inner.paths == []


def test_other_paths_and_websockets_go_on_to_the_router():
    inner = _Inner()
    app = DirectRoute(inner, "/graphql", _endpoint)
    assert _body(_call(app, "http", "/predict")) == (200, b"router")
    assert _body(_call(app, "http", "/graphql/")) == (200, b"router")  # exact path only
    _call(app, "websocket", "/graphql")
    assert inner.paths == [("http", "/predict"), ("http", "/graphql/"), ("websocket", "/graphql")]


def test_the_path_is_matched_below_the_root_path_as_the_router_matches_it():
    inner = _Inner()
    app = DirectRoute(inner, "/graphql", _endpoint)
    sent = _call(app, "http", "/api/graphql", root_path="/api")
    assert _body(sent) == (201, b"endpoint POST {}")
    assert _body(_call(app, "http", "/api/predict", root_path="/api")) == (200, b"router")
