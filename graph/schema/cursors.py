"""Opaque, signed cursors: a position in one connection's ordering, refused when tampered with.

A cursor carries the position (the row's sort value and id) and the scope it belongs to (the
connection, its ordering and its filter); it is signed with the deployment's cursor key, so a
changed cursor, or one from another connection, ordering or filter, is refused with
BAD_USER_INPUT instead of quietly paging something else. Positions are values, not offsets:
cursors stay valid while rows are added.
"""

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from datetime import datetime
from typing import Any

from graph.errors import bad_input
from persistence import Position

SIGNATURE_BYTES = 16


def scope_of(*parts: object) -> str:
    """A short fingerprint of what a cursor belongs to (connection, ordering, filter)."""
    text = json.dumps([str(p) for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CursorCodec:
    """Encodes and checks cursors with one deployment-wide key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, scope: str, position: Position) -> str:
        """The cursor of a position in a scope."""
        payload = json.dumps([scope, *_value(position.value), position.id.hex]).encode()
        signature = hmac.new(self._key, payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]
        return _b64(signature + payload)

    def decode(self, cursor: str, scope: str, argument: str) -> Position:
        """The position a cursor holds; BAD_USER_INPUT unless it is ours, intact, of this scope."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError) as error:
            raise _refused(argument) from error
        signature, payload = raw[:SIGNATURE_BYTES], raw[SIGNATURE_BYTES:]
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]
        if not hmac.compare_digest(signature, expected):
            raise _refused(argument)
        found_scope, kind, value, ident = json.loads(payload)
        if found_scope != scope:
            message = f"`{argument}` is a cursor of another connection, ordering or filter"
            raise bad_input(message, argument)
        return Position(_parsed(kind, value), uuid.UUID(hex=ident))


def _refused(argument: str) -> Exception:
    return bad_input(f"`{argument}` is not a valid cursor", argument)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _value(value: Any) -> tuple[str, Any]:
    """A sort value in JSON, exactly: times as ISO text, floats by their hex form."""
    if isinstance(value, datetime):
        return "t", value.isoformat()
    if isinstance(value, float):
        return "f", value.hex()
    if value is None:
        return "n", None
    return "s", str(value)


def _parsed(kind: str, value: Any) -> Any:
    if kind == "t":
        return datetime.fromisoformat(value)
    if kind == "f":
        return float.fromhex(value)
    return None if kind == "n" else value
