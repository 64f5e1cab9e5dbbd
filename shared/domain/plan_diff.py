"""The cscfg change of a plan as people read it, with every secret left out.

A cscfg holds more than certificates: ``<Setting>`` values are often connection strings,
SAS URLs and passwords. A text diff of the file (even with few context lines) shows
whatever sits next to a changed ``<Certificate>``, and that text then lands in dry-run
answers, run records, logs and notifications. So the diff is built from what was parsed,
never from the file's text:

* a ``<Certificate>`` element that changes is shown as its three attributes (name,
  thumbprint, algorithm), before and after;
* a ``<Setting>`` the rotation rewrote (``ROTATION_REWRITE_SETTINGS``) is shown by name
  with its value ``<redacted>`` and only the thumbprints that changed in it;
* nothing else of the file appears.

The journal keeps the full previous cscfg (for rollback) in the app's private storage;
that copy is never shown. Pure: strings in, a string out.
"""

from __future__ import annotations

import re
from itertools import groupby

from shared.domain import cscfg

HEADER = ("--- cscfg (deployed)", "+++ cscfg (planned)")
_THUMBPRINT = re.compile(r"[0-9A-Fa-f]{40}")


def redacted_diff(before: str, after: str) -> str:
    """The changed certificates and rewritten settings of ``before`` → ``after``; "" if none.

    ``after`` is ``before`` rewritten by :func:`shared.domain.cscfg.rewrite`, which changes
    attribute values only, so the two hold the same elements in the same order.
    """
    old, new = cscfg.parse(before), cscfg.parse(after)
    changed: list[tuple[str, str, str]] = []  # (role, removed line, added line)
    for a, b in zip(old.certificates, new.certificates, strict=True):
        if a != b:
            changed.append((a.role, _certificate(a), _certificate(b)))
    for s, t in zip(old.settings, new.settings, strict=True):
        if s.value != t.value:
            gone, came = _thumbprints(s.value) - _thumbprints(t.value), _thumbprints(
                t.value
            ) - _thumbprints(s.value)
            changed.append((s.role, _setting(s.name, gone), _setting(t.name, came)))
    if not changed:
        return ""
    lines = list(HEADER)
    for role, items in groupby(changed, key=lambda c: c[0]):
        lines.append(f"@@ Role {role} @@")
        for _, removed, added in items:
            lines += [f"-{removed}", f"+{added}"]
    return "\n".join(lines) + "\n"


def _certificate(entry: cscfg.CertificateEntry) -> str:
    algorithm = f' thumbprintAlgorithm="{entry.algorithm}"' if entry.algorithm else ""
    return f'<Certificate name="{entry.name}" thumbprint="{entry.thumbprint}"{algorithm} />'


def _setting(name: str, thumbprints: set[str]) -> str:
    shown = ", ".join(sorted(thumbprints)) or "none"
    return f'<Setting name="{name}" value="<redacted>" /> (thumbprint {shown})'


def _thumbprints(value: str) -> set[str]:
    return {m.upper() for m in _THUMBPRINT.findall(value)}
