"""Logging: one JSON object per line in production, readable lines in development.

Tokens and secrets are never logged: request lines carry the subject, not the credential.
Values that come from clients (paths, subjects, user agents) are escaped in text lines, so a
crafted request cannot forge a line of its own.
"""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

REQUEST_FIELDS = (
    "request_id",
    "client_request_id",
    "subject",
    "method",
    "path",
    "operation",
    "operation_name",
    "outcome",
    "status",
    "duration_ms",
    "error_codes",
    "predictions",
)
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record and its extra fields as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        body.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            body["error"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


class TextFormatter(logging.Formatter):
    """A human-readable line, with the request fields appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [
            f"{k}={_escaped(record.__dict__[k])}" for k in REQUEST_FIELDS if k in record.__dict__
        ]
        return " ".join([line, *extra])


def _escaped(value: Any) -> str:
    """A value as one token: control characters escaped, quoted if it holds spaces or quotes."""
    text = _escaped_line(str(value))
    return json.dumps(text) if (not text or any(c in text for c in ' "=')) else text


def _escaped_line(text: str) -> str:
    # unicode_escape also turns non-ASCII into escapes: only do it when something is unprintable.
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def configure_logging(json_lines: bool, level: str = "info") -> None:
    """Send every logger (uvicorn's included) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # failcast.request logs every request


request_log = logging.getLogger("failcast.request")


def requests_logged() -> bool:
    """Whether the one line per request is written at the configured level (INFO): when it is
    not, its fields need not be gathered at all."""
    return request_log.isEnabledFor(logging.INFO)


def log_request(fields: dict[str, Any]) -> None:
    """One line per request, with the request fields as structured extras."""
    request_log.info("request", extra=fields)
