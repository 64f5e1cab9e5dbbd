"""Short names for vaults and cloud services, resolved among the services in scope.

``status`` prints short names, so the commands take them too: ``--vault kv1`` (a vault
some service in scope references, by name or ``rg/name``) and ``--cloud-service cs-web``
or ``rg/cs-web``. A full ARM id is taken as given. Pure: the services are an argument.
A name that matches nothing is :class:`NotFound` naming what is missing (exit 1); one
that matches several is :class:`Ambiguous` listing the candidates (exit 2); a name that
cannot be one is refused before anything is read (``check_form``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from shared.domain.errors import NotFound
from shared.domain.model import CloudServiceSnapshot

# Key Vault names (3-24 letters, digits, hyphens), cloud service and resource group names.
_VAULT = re.compile(r"^(?:[-\w.()]{1,90}/)?[A-Za-z0-9-]{3,24}$")
_SERVICE = re.compile(r"^(?:[-\w.()]{1,90}/)?[A-Za-z0-9][-\w.]{0,62}$")


class Ambiguous(Exception):
    """A short name that matches more than one resource: the operator must choose."""


def is_arm_id(text: str) -> bool:
    return text.strip().lower().startswith("/subscriptions/")


def check_form(kind: str, text: str) -> None:
    """Refuse what is neither an ARM id nor a possible short name (ValueError)."""
    pattern = _VAULT if kind == "vault" else _SERVICE
    if not is_arm_id(text) and not pattern.match(text.strip()):
        raise ValueError(
            f"'{text}' is neither an ARM id nor a {kind} name (or resource-group/name)"
        )


def _group_and_name(resource_id: str) -> tuple[str, str]:
    parts = resource_id.split("/")
    lower = [p.lower() for p in parts]
    group = parts[lower.index("resourcegroups") + 1] if "resourcegroups" in lower[:-1] else ""
    return group, parts[-1]


def _pick(kind: str, text: str, ids: Iterable[str]) -> str:
    wanted = text.strip().lower()
    group, _, name = wanted.rpartition("/")
    unique = {i.lower(): i for i in ids}
    found = sorted(
        i
        for i in unique.values()
        if _group_and_name(i)[1].lower() == name
        and (not group or _group_and_name(i)[0].lower() == group)
    )
    if not found:
        raise NotFound(f"{kind} '{text}' not found: no cloud service in scope uses one so named")
    if len(found) > 1:
        listed = "; ".join("/".join(_group_and_name(i)) for i in found)
        raise Ambiguous(f"{kind} '{text}' matches {len(found)}: {listed} (give rg/name or the id)")
    return found[0]


def vault_id(text: str, services: Sequence[CloudServiceSnapshot]) -> str:
    """The ARM id of the vault ``text`` names, among the vaults the services reference."""
    if is_arm_id(text):
        return text.strip()
    return _pick("vault", text, (g.source_vault_id for s in services for g in s.secrets))


def service_id(text: str, services: Sequence[CloudServiceSnapshot]) -> str:
    """The ARM id of the cloud service ``text`` names, among the services in scope."""
    if is_arm_id(text):
        return text.strip()
    return _pick("cloud service", text, (s.id for s in services))
