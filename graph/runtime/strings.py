"""Strings from clients: no control characters (C0, DEL, C1) anywhere, before any query runs."""

import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def has_control_characters(text: str) -> bool:
    """Whether a string holds a control character."""
    return _CONTROL.search(text) is not None


def control_character_path(value: Any, path: str = "") -> str | None:
    """The path of the first string with a control character in a JSON value, or None."""
    if isinstance(value, str):
        return path if _CONTROL.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str | dict | list):
                found = control_character_path(item, f"{path}.{key}" if path else str(key))
                if found is not None:
                    return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str | dict | list):
                found = control_character_path(item, f"{path}.{index}" if path else str(index))
                if found is not None:
                    return found
    return None
