"""Decode a JSON request body defensively: size, nesting and duplicate keys first.

Why not plain ``json.loads``: the body comes from whoever holds a function key. The
Functions host accepts up to 100 MB; ``json.loads`` recurses on ``[[[[…`` until Python's
recursion limit (a ``RecursionError``, so a 500 rather than a clear 400); and of two equal
keys it silently keeps the last, so a proxy or an audit log that keeps the first would see
a different request from the one acted on. Each check fails with :class:`InvalidInput`
naming what was wrong (the whole body, or the top-level field at fault), before any of the
body is used.
"""

from __future__ import annotations

import json
from typing import Any

from shared.domain.errors import InvalidInput

_SHOWN_CHARS = 64  # how much of an offending key an error message quotes


class BodyTooLarge(InvalidInput):
    """The body is over the size limit (HTTP answers 413, not 400)."""


def load_object(raw: bytes, *, max_bytes: int, max_depth: int) -> dict[str, Any]:
    """The body as a JSON object at most ``max_depth`` arrays/objects deep, keys unique."""
    if len(raw) > max_bytes:
        raise BodyTooLarge(
            "body", f"{len(raw)} bytes is more than the limit of {max_bytes} bytes"
        )
    too_deep = f"nested deeper than {max_depth} levels of arrays and objects"
    try:
        body = json.loads(raw, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise InvalidInput("body", too_deep) from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidInput("body", f"not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", f"must be a JSON object, not {_json_type(body)}")
    for key, value in body.items():
        if _deeper_than(value, max_depth - 1):
            raise InvalidInput(key, too_deep)
    return body


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing a key given twice in one object."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput(key[:_SHOWN_CHARS], "given more than once")
        result[key] = value
    return result


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether ``value`` nests arrays/objects more than ``levels`` deep (stops early)."""
    if not isinstance(value, (dict, list)):
        return False
    if levels <= 0:
        return True
    children = value.values() if isinstance(value, dict) else value
    return any(_deeper_than(child, levels - 1) for child in children)


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
