"""The floor: an empty Starlette endpoint, i.e. what uvicorn + Starlette cost on their own."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def empty(request: Request) -> Response:
    """Answer 200 with an empty body (the request body is not even read)."""
    return Response(b"")


def create_app() -> Starlette:
    """The floor app (a uvicorn factory)."""
    return Starlette(
        routes=[
            Route("/predict", empty, methods=["POST"]),
            Route("/readyz", empty, methods=["GET"]),
        ]
    )
