"""Exit statuses of ``certrotate`` and the line that ends a run: one place for both.

A pipeline or monitor reads the status; a person reads the line ("finished: 1 failed,
2 rotated", never "done" beside a failure). The outcome enums say which outcomes leave
something to do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from shared.domain.outcomes import Outcome, RunStatus
from shared.domain.runs import Run

EXIT_OK, EXIT_NOT_DONE, EXIT_BAD_INPUT, EXIT_ATTENTION, EXIT_PIPE = 0, 1, 2, 3, 141
EPILOG = (
    "Exit status: 0 done (status --check: nothing needs attention); 1 not done (a service "
    "failed, was refused or is still updating; not found; Azure unreachable); 2 bad input "
    "(arguments, env file, settings, an ambiguous name); 3 status --check found something "
    "that needs attention; 141 output pipe closed."
)


class BadInput(Exception):
    """Something the operator gave (an argument, the env file) is wrong: exit 2."""


def exit_status(run: Run) -> int:
    return exit_for(r.outcome for r in run.results)


def exit_for(outcomes: Iterable[Outcome]) -> int:
    return EXIT_OK if all(o.done for o in outcomes) else EXIT_NOT_DONE


def outcome_line(status: str, outcomes: Iterable[str]) -> str:
    """``finished: 1 failed, 2 rotated``: the run's end and its outcomes, worst first;
    never "done" beside a failure."""
    counts = Counter(Outcome(o) for o in outcomes)
    status = RunStatus(status)
    parts = ", ".join(
        f"{counts[o]} {o}" for o in sorted(counts, key=lambda o: (o.done, o))
    )
    word = {RunStatus.DONE: "finished"}.get(status) or (
        f"ended {status}" if status.ended else f"still {status}"
    )
    return f"{word}: {parts or 'no service'}"
