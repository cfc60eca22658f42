"""Logging: one JSON object per line in production, readable lines in development.

Tokens and secrets are never logged: request lines carry the subject, not the credential.
"""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

REQUEST_FIELDS = (
    "request_id",
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
        extra = [f"{k}={record.__dict__[k]}" for k in REQUEST_FIELDS if k in record.__dict__]
        return " ".join([line, *extra])


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
