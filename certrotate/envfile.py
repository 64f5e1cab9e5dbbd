"""``--env-file``: ``KEY=VALUE`` settings (such as the local stack's ``stack.env``) loaded
before the settings are read, so they win over the environment's.
"""

from __future__ import annotations

import re
from pathlib import Path

from certrotate.exits import BadInput

_ENV_LINE = re.compile(r"^(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


def load_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``stack.env``); blank lines, ``#`` comments, an ``export ``
    prefix and one pair of surrounding quotes are accepted. A bad line is named by its
    number only: the file may hold keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"--env-file {path}: cannot read it ({exc})") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.match(stripped)
        if match is None:
            raise BadInput(f"--env-file {path}: line {number} is not KEY=VALUE")
        value = match["value"]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[match["key"]] = value
    return values
