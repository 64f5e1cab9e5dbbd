"""Table-driven tests for shared.domain.json_body: request bodies are decoded defensively."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.errors import InvalidInput
from shared.domain.json_body import BodyTooLarge, load_object

LIMIT = 1024
DEPTH = 4


def load(raw: bytes) -> dict[str, Any]:
    return load_object(raw, max_bytes=LIMIT, max_depth=DEPTH)


ACCEPTED: list[tuple[str, bytes, dict[str, Any]]] = [
    ("object", b'{"a": "b"}', {"a": "b"}),
    ("at-the-depth-limit", b'{"a": [[["x"]]]}', {"a": [[["x"]]]}),
    ("same-key-in-two-objects", b'{"a": {"k": 1}, "b": {"k": 2}}', {"a": {"k": 1}, "b": {"k": 2}}),
    ("utf-16", '{"a": "\u00e9"}'.encode("utf-16"), {"a": "\u00e9"}),
    ("exactly-the-size-limit", b'{"a": "' + b"x" * (LIMIT - 10) + b'"}', {"a": "x" * (LIMIT - 10)}),
]


@pytest.mark.parametrize(("raw", "expected"), [pytest.param(*c[1:], id=c[0]) for c in ACCEPTED])
def test_accepted(raw: bytes, expected: dict[str, Any]) -> None:
    assert load(raw) == expected


# (id, body, field, message substring)
REFUSED: list[tuple[str, bytes, str, str]] = [
    ("not-json", b"{not json", "body", "not valid JSON"),
    ("empty", b"", "body", "not valid JSON"),
    ("bad-utf8", b'{"a": "\xff"}', "body", "not valid JSON"),
    ("array", b"[]", "body", "must be a JSON object, not an array"),
    ("string", b'"x"', "body", "not a string"),
    ("number", b"42", "body", "not a number"),
    ("null", b"null", "body", "not null"),
    ("one-level-too-deep", b'{"a": [[[["x"]]]]}', "a", f"nested deeper than {DEPTH} levels"),
    ("deep-object", b'{"b": {"c": {"d": {"e": {}}}}}', "b", "nested deeper"),
    ("empty-containers-count", b'{"a": [[[{}]]]}', "a", "nested deeper"),
    # Past Python's recursion limit json.loads raises RecursionError: still a 400, not a 500.
    ("recursion-bomb", b'{"a": ' + b"[" * 400 + b"]" * 400 + b"}", "a", "nested deeper"),
    ("duplicate-key", b'{"vault": "a", "vault": "b"}', "vault", "given more than once"),
    ("duplicate-key-nested", b'{"a": [{"k": 1, "k": 1}]}', "k", "given more than once"),
]


@pytest.mark.parametrize(
    ("raw", "field", "message"), [pytest.param(*c[1:], id=c[0]) for c in REFUSED]
)
def test_refused(raw: bytes, field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        load(raw)
    assert not isinstance(caught.value, BodyTooLarge)
    assert (caught.value.field, message in caught.value.detail) == (field, True)


def test_recursion_past_the_interpreter_limit_is_a_clear_error() -> None:
    raw = b'{"a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    with pytest.raises(InvalidInput) as caught:
        load_object(raw, max_bytes=len(raw), max_depth=DEPTH)
    assert (caught.value.field, caught.value.detail) == (
        "body",
        f"nested deeper than {DEPTH} levels of arrays and objects",
    )


def test_oversized_body_is_refused_before_parsing() -> None:
    with pytest.raises(BodyTooLarge) as caught:
        load(b"{" * (LIMIT + 1))  # not JSON either: the size is checked first
    assert caught.value.field == "body"
    assert caught.value.detail == f"{LIMIT + 1} bytes is more than the limit of {LIMIT} bytes"
