"""README.md as a newcomer reads it: short, its links alive, its glossary the code's words.
No I/O beyond reading the repository's own files. (Its walkthrough is run for real by
tests/e2e/test_sandbox.py.)"""

from __future__ import annotations

import re

from emulators.sandbox import walkthrough
from emulators.stack import ROOT
from shared.domain.outcomes import Outcome, RunStatus

README = ROOT / "README.md"
MAX_BYTES = 25_000


def test_readme_is_under_25_kb() -> None:
    size = len(README.read_bytes())
    assert size < MAX_BYTES, f"README.md is {size} bytes: move reference prose to docs/"


def test_readme_links_to_files_that_exist() -> None:
    targets = re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", README.read_text())
    assert targets
    missing = sorted({t for t in targets if not (ROOT / t).exists()})
    assert not missing, f"README links to missing files: {missing}"


def test_the_walkthrough_is_marked() -> None:
    block = walkthrough()
    assert block.startswith("make sandbox\n") and "make stack-down" in block


def glossary_row(term: str, after: str = "|") -> set[str]:
    """The backticked words of the glossary's row for ``term``, after ``after``."""
    text = README.read_text().split("## Glossary", 1)[1]
    (row,) = [line for line in text.splitlines() if line.startswith(f"| {term} |")]
    return set(re.findall(r"`([a-z-]+)`", row.split(after, 2)[-1]))


def test_the_glossary_names_exactly_the_outcomes_and_run_statuses_records_hold() -> None:
    stored = {o.value for o in Outcome} - {Outcome.PENDING.value}  # never a final outcome
    assert glossary_row("outcome") == stored
    assert glossary_row("run", after="status") == {s.value for s in RunStatus}
