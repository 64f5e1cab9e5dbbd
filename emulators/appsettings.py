"""The app settings the product reads, found by scanning its own source.

One list serves two purposes: the infra tests check that the deployment sets every setting
the app reads (and nothing else), and ``make stack-up`` passes exactly these names from the
developer's environment to the local Functions host. Reading the source, rather than keeping
a hand-written list, means a setting added to the app is picked up by both without an edit.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# env["X"], env.get("X"), os.environ.get("X"); the config helpers _flag(env, "X") ...;
# module constants holding a setting's name (NAME = "SOME_SETTING"); and binding
# expressions the Functions host resolves from app settings ("%SOME_SETTING%").
READ = re.compile(
    r"""(?:env|environ)(?:\.get\(|\[)\s*"([A-Za-z][A-Za-z0-9_]+)"|"""
    r"""_(?:flag|number|whole|https|list|port_range|schedule)\(env,\s*"([A-Za-z][A-Za-z0-9_]+)"|"""
    r"""^[A-Z_]+ = "([A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+)"$|"""
    r'"%([A-Za-z][A-Za-z0-9_]+)%"',
    re.M,
)


def settings_read_by_the_app(root: Path = ROOT) -> set[str]:
    """Every setting name the product code (shared/, handlers/, function_app.py) reads."""
    sources = [*root.glob("shared/**/*.py"), *root.glob("handlers/*.py"), root / "function_app.py"]
    return {
        next(g for g in match.groups() if g)
        for path in sources
        for match in READ.finditer(path.read_text())
    }
