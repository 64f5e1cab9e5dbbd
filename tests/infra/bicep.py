"""Reads infra/*.bicep as checkov does (pycep-parser), so the infra tests read like the template.

pycep returns a JSON-like tree in which identifiers and string literals are both plain strings,
function calls are ``{"function": {...}}``, operators ``{"operator": {...}}``, a conditional or
looped resource wraps its body in ``{"condition"/"loop_type", "config"}``, and nested child
resources are flattened to ``parent__child``. :func:`render` turns an expression back into
Bicep text, so a test can compare ``guid(vault.id, principalId, keyVaultCertificateUser)``
with what the file says instead of walking the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


@cache
def _parser() -> BicepParser:
    return BicepParser()  # builds the Lark grammar: ~0.5 s, so once per session


@cache
def template(relative: str) -> dict[str, Any]:
    """The parsed file ``infra/<relative>``; a parse failure fails the test that asked."""
    parsed: dict[str, Any] = _parser().parse(file_path=INFRA / relative)
    return parsed


def files() -> list[str]:
    return sorted(str(p.relative_to(INFRA)) for p in INFRA.rglob("*.bicep"))


@dataclass(frozen=True)
class Resource:
    file: str
    symbol: str
    type: str
    existing: bool
    condition: Any
    body: dict[str, Any]


def unwrap(config: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(condition, body) of a resource or module, looking through ``if`` and ``for``."""
    condition = None
    while "config" in config and ("condition" in config or "loop_type" in config):
        condition = config.get("condition") or condition
        config = config["config"]
    return condition, config


def resources(type_: str | None = None) -> list[Resource]:
    found = []
    for file in files():
        for symbol, resource in template(file).get("resources", {}).items():
            if type_ is None or resource["type"] == type_:
                condition, body = unwrap(resource["config"])
                found.append(
                    Resource(file, symbol, resource["type"], resource["existing"], condition, body)
                )
    return found


def resource(file: str, symbol: str) -> Resource:
    return next(r for r in resources() if r.file == file and r.symbol == symbol)


def variable(file: str, name: str) -> Any:
    return template(file)["variables"][name]["value"]


_FUNCTIONS = {
    "guid": "guid",
    "subscription_resource_id": "subscriptionResourceId",
    "index_of": "indexOf",
    "empty": "empty",
    "split": "split",
    "take": "take",
}


def render(expr: Any) -> str:
    """Bicep text for the expression kinds the templates use (identifiers print bare)."""
    if expr is None:
        return ""
    if isinstance(expr, (bool, int)):
        return str(expr).lower()
    if isinstance(expr, str):
        return expr
    if isinstance(expr, list):
        return "[" + ", ".join(render(e) for e in expr) + "]"
    if "operator" in expr:
        op = expr["operator"]
        a, b = op["operands"]["operand_1"], op["operands"].get("operand_2")
        joiners = {"property_accessor": ".", "nested_resource_accessor": "::"}
        if op["type"] in joiners:
            return f"{render(a)}{joiners[op['type']]}{render(b)}"
        if op["type"] == "index_accessor":
            return f"{render(a)}[{render(b)}]"
        if op["type"] == "not_op":
            return f"!{render(a)}"
        binary = {"and": "&&", "or": "||", "equals": "==", "not_equals": "!="}
        if op["type"] in binary:
            return f"{render(a)} {binary[op['type']]} {render(b)}"
        raise ValueError(f"render: operator {op['type']} not supported")
    if "function" in expr:
        fn = expr["function"]
        if fn["type"] in ("subscription", "resource_group"):
            name = "subscription" if fn["type"] == "subscription" else "resourceGroup"
            suffix = f".{fn['property_name']}" if fn.get("property_name") else ""
            return f"{name}(){suffix}"
        args = [render(v) for v in fn["parameters"].values() if v is not None]
        return f"{_FUNCTIONS[fn['type']]}({', '.join(args)})"
    raise ValueError(f"render: cannot render {expr!r}")


def comment_above(file: str, symbol: str) -> str:
    """The ``//`` comment lines directly above ``resource <symbol>`` in the file."""
    lines = (INFRA / file).read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"resource {symbol} "))
    comment = []
    for line in reversed(lines[:index]):
        if not line.startswith("//"):
            break
        comment.insert(0, line)
    return "\n".join(comment)
