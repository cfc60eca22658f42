"""GET /exports/predictions.csv: the predictions a filter matches, as CSV, streamed.

Query parameters are named like the fields of the GraphQL `PredictionFilter` and checked, all
of them, before any query runs. The token is checked as for the API (`predictions:read`, one
charge to its rate limit per export). The first batch is read before the answer starts, so a
database that is down gives the usual 503; the rest streams (graph/edge/audit.py commits the
audit row before the first byte, and breaks the transfer off if the database fails midway).
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from auth import Scope
from graph.edge.audit import request_state, stream_answer
from graph.edge.responses import error_response
from graph.errors import ErrorCode, FailcastError, bad_input, public_error
from graph.runtime import Runtime
from graph.runtime.access import authorize
from graph.runtime.export import (
    EXPORT_READERS,
    MAX_NAME,
    MEDIA_TYPE,
    PredictionsCsv,
    check_text,
    parse_probability,
    parse_time,
)
from graph.runtime.usecases import MAX_DEVICE_ID
from persistence import PersistenceError, PredictionFilter

LABELS = {"FAILURE": True, "NON_FAILURE": False}


def _text(limit: int) -> Callable[[str, str], Any]:
    return lambda value, name: check_text(value, name, limit)


def _label(value: str, name: str) -> bool:
    if value not in LABELS:
        raise bad_input(f"`{name}` must be FAILURE or NON_FAILURE", name)
    return LABELS[value]


# Parameter (named as in GraphQL's PredictionFilter) -> (PredictionFilter field, parser).
PARAMETERS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "deviceId": ("device_id", _text(MAX_DEVICE_ID)),
    "deviceIdPrefix": ("device_id_prefix", _text(MAX_DEVICE_ID)),
    "modelVersion": ("model_version", _text(MAX_NAME)),
    "label": ("is_failure", _label),
    "createdFrom": ("created_from", parse_time),
    "createdTo": ("created_to", parse_time),
    "observedFrom": ("observed_from", parse_time),
    "observedTo": ("observed_to", parse_time),
    "minProbability": ("min_probability", parse_probability),
    "maxProbability": ("max_probability", parse_probability),
    "subject": ("subject", _text(MAX_NAME)),
}


def export_filter(parameters: Sequence[tuple[str, str]]) -> PredictionFilter:
    """The filter the query parameters describe; BAD_USER_INPUT naming the first bad one."""
    given: dict[str, Any] = {}
    for name, value in parameters:
        if name not in PARAMETERS:
            known = ", ".join(PARAMETERS)
            raise bad_input(f"unknown parameter `{name[:64]}`; known: {known}", name[:64])
        field, parse = PARAMETERS[name]
        if field in given:
            raise bad_input(f"`{name}` is given more than once", name)
        given[field] = parse(value, name)
    return PredictionFilter(**given)


class ExportEndpoint:
    """The /exports routes of one application."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # Reads run on the default thread pool, which the other routes' database work shares,
        # and hold the GIL while they encode: beyond this many, exports take turns, batch by
        # batch (as many as the export pool has connections), rather than crowd the rest out.
        self._reads = asyncio.Semaphore(EXPORT_READERS)

    async def predictions_csv(self, request: Request) -> Response:
        """Stream the predictions the query parameters select, oldest first, as CSV."""
        audit, caller = request_state(request.scope)
        audit.describe("export", "predictions.csv", None)
        runtime = self.runtime
        try:
            if request.method != "GET":  # Starlette lets HEAD in with GET; it would read rows
                raise FailcastError(ErrorCode.METHOD_NOT_ALLOWED, "use GET")
            authorize(caller.principal, Scope.PREDICTIONS_READ, runtime.limiter, 1, caller.refusal)
            where = export_filter(request.query_params.multi_items())
            export = PredictionsCsv(runtime.exports, where)
            first = await self._next(export)
        except (FailcastError, PersistenceError) as error:
            refusal = public_error(error)
            assert refusal is not None  # both kinds are ours
            audit.answered_with([refusal.code])
            response = error_response(refusal, audit.id)
            if refusal.code is ErrorCode.METHOD_NOT_ALLOWED:
                response.headers["allow"] = "GET"
            return response
        stream_answer(request.scope)
        headers = {"content-disposition": 'attachment; filename="predictions.csv"'}
        chunks = self._chunks(first, export)
        return StreamingResponse(chunks, headers=headers, media_type=MEDIA_TYPE)

    async def _next(self, export: PredictionsCsv) -> bytes | None:
        """The export's next chunk, read and encoded on a worker thread, in turn."""
        async with self._reads:
            return await asyncio.to_thread(export.next_chunk)

    async def _chunks(self, first: bytes | None, export: PredictionsCsv) -> AsyncIterator[bytes]:
        chunk = first
        while chunk is not None:
            yield chunk
            chunk = await self._next(export)
