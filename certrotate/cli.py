"""``certrotate``: status, plans, rotations, history and adoption from a terminal or pipeline.

The CLI is a thin front over what the function app runs: the same :class:`Engine` built
from the same settings (``Settings.from_env``), the same request validation as the HTTP
API (:mod:`shared.domain.requests`), the same status document
(:mod:`shared.status.inventory`). It signs in with ``DefaultAzureCredential``, so
``az login`` works; ``--env-file`` loads a ``KEY=VALUE`` file first (such as the local
stack's ``stack.env``), whose values win over the environment's.

Output is a table for people, or with ``--json`` the documents the HTTP API returns.
``rotate`` shows the engine's own log lines on stderr while it works (they carry the run
and service ids) and waits for the update; ``follow`` re-reads a run already going until
it ends (read-only: the app's follow looks and sweep finish its updates). Vaults and
services may be given by short name (:mod:`certrotate.names`). Exit status (``EPILOG``):
0 done; 1 not done (a service failed, was refused, hit a transient error, was rolled back
or is still updating; a precondition failed; something was not found; Azure could not be
reached); 2 bad input (arguments, the env file, the settings, an ambiguous name); 3
``status --check`` found something that needs attention. Output cut short by a closed pipe
(``| head``) ends quietly with 141, as a shell reports SIGPIPE.

This module parses the arguments and runs one command; the commands are
:mod:`certrotate.commands`, name resolution :mod:`certrotate.resolve`, printing
:mod:`certrotate.output`, exit statuses :mod:`certrotate.exits`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TextIO

from certrotate import names
from certrotate.commands import (
    adopt_command,
    follow_command,
    history_command,
    plan_command,
    rotate_command,
    show_command,
    status_command,
)
from certrotate.envfile import load_env_file
from certrotate.exits import EPILOG, EXIT_BAD_INPUT, EXIT_NOT_DONE, EXIT_PIPE, BadInput
from certrotate.resolve import check_forms
from shared.config import Settings
from shared.domain.errors import ConfigError, InvalidInput, RotationError
from shared.rotation.engine import Engine
from shared.status import inventory
from shared.status.history import MAX_SCAN
from shared.status.inventory import Flag

# Field names of shared validation -> the option that carries them here.
OPTIONS = {
    "vault": "--vault",
    "certificate": "--certificate",
    "cloudServices": "--cloud-service",
    "cert-rotation-package": "--package",
}


@contextmanager
def _engine_log(level: int) -> Iterator[None]:
    """The engine's log lines (logger ``certrotate`` and its children) on stderr: its
    progress (``rotate`` shows INFO), otherwise only warnings and errors."""
    logger = logging.getLogger("certrotate")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_SCAN:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_SCAN}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0 and 3600")
    return value


def _days(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 3650:
        raise argparse.ArgumentTypeError("must be between 0 and 3650")
    return value


def _version() -> str:
    try:
        return version("certrotate")
    except PackageNotFoundError:  # a checkout run without 'pip install -e .'
        return "unknown (not installed)"


Command = Callable[[Engine, argparse.Namespace, TextIO], int]


def build_parser() -> argparse.ArgumentParser:
    json_help, env_help = "print JSON for machines", "load KEY=VALUE settings (e.g. stack.env)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help=json_help)
    common.add_argument("--env-file", type=Path, metavar="PATH", help=env_help)
    # The same options after the command, without overwriting ones given before it.
    after = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    after.add_argument("--json", action="store_true", help=json_help)
    after.add_argument("--env-file", type=Path, metavar="PATH", help=env_help)
    parser = argparse.ArgumentParser(
        prog="certrotate",
        parents=[common],
        description="Certificate rotation for Azure Cloud Services (extended support).",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, parents=[after], help=text, description=text, epilog=EPILOG
        )
        sub.set_defaults(run=run, log_level=logging.WARNING)
        return sub

    status = command(
        "status", status_command, "every service in scope, what needs attention, drift and last run"
    )
    status.add_argument(
        "--check",
        action="store_true",
        help="exit 3 when anything needs attention (listed on stderr), for pipelines/monitors",
    )
    status.add_argument(
        "--expiring-days",
        type=_days,
        default=inventory.EXPIRY_WARNING.days,
        metavar="DAYS",
        help="with --check: a certificate expiring within DAYS needs attention (default 30)",
    )
    status.add_argument(
        "--ignore",
        action="append",
        choices=[f.value for f in Flag],
        metavar="FLAG",
        help=f"with --check: do not count FLAG (repeatable): {', '.join(Flag)}",
    )
    for name, run, text in (
        ("plan", plan_command, "show what a rotation would change (nothing is written)"),
        ("rotate", rotate_command, "rotate now, show progress and wait for the update"),
    ):
        sub = command(name, run, text)
        sub.add_argument(
            "--vault", required=True, metavar="VAULT", help="Key Vault name, rg/name or ARM id"
        )
        sub.add_argument("--certificate", required=True, metavar="NAME")
        sub.add_argument(
            "--cloud-service",
            action="append",
            metavar="SERVICE",
            help="only this cloud service (name, rg/name or ARM id; repeatable); "
            "default: every one using it",
        )
    rotate = commands.choices["rotate"]
    rotate.set_defaults(log_level=logging.INFO)
    rotate.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rotate.add_argument(
        "--force",
        action="store_true",
        help="write even a version whose last update failed and still backs off",
    )
    rotate.add_argument(
        "--wait",
        type=_seconds,
        metavar="SECONDS",
        help="follow each update at most this long (default: OPERATION_WAIT_SECONDS)",
    )
    for name, run, text in (
        ("show", show_command, "one run as recorded: outcomes, plans, diff (read-only)"),
        ("follow", follow_command, "a run's progress until it ends; exit status as for rotate"),
    ):
        sub = command(name, run, text)
        sub.add_argument("run_id", metavar="RUN_ID")
    commands.choices["follow"].add_argument(
        "--timeout", type=_seconds, default=1800.0, metavar="SECONDS", help="default 1800"
    )
    commands.choices["follow"].set_defaults(log_level=logging.INFO)
    history = command("history", history_command, "past runs, newest first")
    history.add_argument("--cloud-service", metavar="SERVICE", help="only runs touching it")
    history.add_argument("--vault", metavar="VAULT", help="only runs for this vault")
    history.add_argument("--certificate", metavar="NAME", help="only runs for this certificate")
    history.add_argument("--outcome", metavar="OUTCOME", help="only runs with a service OUTCOME")
    history.add_argument("--limit", type=_limit, default=20, metavar="N", help="default 20")
    adopt = command(
        "adopt", adopt_command, "tag a cloud service with its package so rotation manages it"
    )
    adopt.add_argument("--cloud-service", required=True, metavar="SERVICE")
    adopt.add_argument("--package", required=True, metavar="URL", help="blob URL, without SAS")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
        check_forms(args)
        if args.env_file is not None:
            os.environ.update(load_env_file(args.env_file))
        engine = Engine.from_settings(Settings.from_env())
        with _engine_log(args.log_level):
            status: int = args.run(engine, args, out)
        out.flush()
        return status
    except BrokenPipeError:
        # The reader (``| head``) has gone: nothing more can be said, and the interpreter's
        # own flush at exit must not raise again, so stdout now points at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except InvalidInput as exc:
        return _fail(f"{OPTIONS.get(exc.field, exc.field)}: {exc.detail}", EXIT_BAD_INPUT)
    except (BadInput, ConfigError, names.Ambiguous) as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except RotationError as exc:
        return _fail(str(exc), EXIT_NOT_DONE)
    except KeyboardInterrupt:
        return _fail("interrupted (an update already sent goes on in Azure)", EXIT_NOT_DONE)


def _fail(message: str, status: int) -> int:
    print(f"certrotate: error: {message}", file=sys.stderr)
    return status
