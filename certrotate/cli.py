"""``certrotate``: status, plans, rotations, history and adoption from a terminal or pipeline.

The CLI is a thin front over what the function app runs: the same :class:`Engine` built
from the same settings (``Settings.from_env``), the same request validation as the HTTP
API (:mod:`shared.requests`), the same status document (:mod:`shared.inventory`). It signs
in with ``DefaultAzureCredential``, so ``az login`` works; ``--env-file`` loads a
``KEY=VALUE`` file first (such as the local stack's ``stack.env``), whose values win over
the environment's.

Output is a table for people, or with ``--json`` the documents the HTTP API returns.
``rotate`` shows the engine's own log lines on stderr while it works (they carry the run
and service ids) and waits for the update. Exit status: 0 done; 1 not done (a service
failed, was refused, hit a transient error, was rolled back or is still updating; a
precondition failed; something was not found; Azure could not be reached); 2 bad input
(arguments, the env file, the settings).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from shared import adoption, inventory
from shared.compute_ids import split_service_id
from shared.config import Settings
from shared.engine import Engine, Run, Trigger
from shared.errors import ConfigError, InvalidInput, RotationError
from shared.history import MAX_SCAN, recent_records
from shared.model import PACKAGE_MD5_TAG, PACKAGE_TAG
from shared.requests import RotationRequest

EXIT_OK, EXIT_NOT_DONE, EXIT_BAD_INPUT = 0, 1, 2
NOT_DONE = {"failed", "refused", "transient", "updating", "rolled-back", "backoff"}
# Field names of shared validation -> the option that carries them here.
OPTIONS = {
    "vault": "--vault",
    "certificate": "--certificate",
    "cloudServices": "--cloud-service",
    "cert-rotation-package": "--package",
}
_ENV_LINE = re.compile(r"^(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


class BadInput(Exception):
    """Something the operator gave (an argument, the env file) is wrong: exit 2."""


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


# -- output --------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def _text(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _short(version: str | None) -> str:
    return version[:8] if version else "-"


def _name(resource_id: str | None) -> str:
    return resource_id.rsplit("/", 1)[-1] if resource_id else "-"


def _expiry(expires: str | None, days: float | None, state: str) -> str:
    if expires is None:
        return "-"
    flag = {"expired": ", EXPIRED", "soon": ", soon"}.get(state, "")
    return f"{expires[:10]} ({_text(days)}d{flag})"


# -- commands ------------------------------------------------------------------------------


def _status(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    found = inventory.gather(engine).to_json()
    if args.json:
        _dump(found, out)
        return EXIT_OK
    rows: list[list[str]] = []
    notes: list[str] = []
    for service in found["services"]:
        managed = "yes" if service["managed"] else "no"
        if not service["managed"]:
            notes.append(f"{service['name']}: unmanaged: {service['reason']}")
        if service["problem"]:
            notes.append(f"{service['name']}: {service['problem']}")
        if service.get("backoff"):
            notes.append(f"{service['name']}: {service['backoff']}")
        for use in service["certificates"] or [None]:
            if use is None:
                rows.append([service["name"], *["-"] * 7, managed, "-"])
                continue
            run = use["lastRun"]
            rows.append(
                [
                    service["name"],
                    _text(use["role"] or "(osProfile)"),
                    _text(use["cscfgName"]),
                    f"{_name(use['vault'])}/{_text(use['certificate'])}",
                    _short(use["version"]),
                    _expiry(use["expires"], use["expiresInDays"], use["expiry"]),
                    _short(use["desiredVersion"]),
                    {True: "DRIFT", False: "no", None: "?"}[use["drift"]],
                    managed,
                    f"{run['outcome']} {run['started'][:19]}" if run else "-",
                ]
            )
            if use["problem"]:
                where = (
                    f"{use['role']}/{use['cscfgName']}"
                    if use["role"]
                    else f"osProfile {_text(use['certificate'])}"
                )
                notes.append(f"{service['name']} {where}: {use['problem']}")
    headers = ("SERVICE", "ROLE", "CSCFG NAME", "VAULT/CERTIFICATE", "VERSION", "EXPIRES")
    print(table((*headers, "DESIRED", "DRIFT", "MANAGED", "LAST RUN"), rows), file=out)
    if found["orphanThumbprints"]:
        print("\ncscfg thumbprints that match no certificate in any referenced vault:", file=out)
        orphans = [
            [_name(o["cloudService"]), o["role"], o["cscfgName"], o["thumbprint"]]
            for o in found["orphanThumbprints"]
        ]
        print(table(("SERVICE", "ROLE", "CSCFG NAME", "THUMBPRINT"), orphans), file=out)
    if found["unusedCertificates"]:
        print("\ncertificates in the referenced vaults that no service uses:", file=out)
        unused = [
            [
                _name(u["vault"]),
                u["certificate"],
                _short(u["version"]),
                _expiry(u["expires"], u["expiresInDays"], u["expiry"]),
            ]
            for u in found["unusedCertificates"]
        ]
        print(table(("VAULT", "CERTIFICATE", "VERSION", "EXPIRES"), unused), file=out)
    for line in notes + [f"could not read {p}" for p in found["problems"]]:
        print(f"note: {line}", file=out)
    return EXIT_OK


def _request(engine: Engine, args: argparse.Namespace, dry_run: bool) -> RotationRequest:
    request = RotationRequest.from_fields(
        args.vault, args.certificate, args.cloud_service or [], dry_run
    )
    return request  # the engine refuses a vault outside ROTATION_SUBSCRIPTIONS


def _dry_run(engine: Engine, request: RotationRequest) -> Run:
    return engine.rotate(
        request.vault_id,
        request.certificate,
        Trigger("manual"),
        only=request.cloud_services,
        dry_run=True,
    )


def _print_plans(run: Run, out: TextIO) -> None:
    for result in run.results:
        entry = result.to_json()
        print(f"{_name(result.service_id)}: {entry['outcome']}", file=out, end="")
        print(f" ({entry['message']})" if entry["message"] else "", file=out)
        plan = entry.get("plan")
        if not plan or plan["noop"]:
            continue
        print(f"  desired version {plan['desiredVersion']} ({plan['desiredThumbprint']})", file=out)
        for change in plan["changes"]:
            print(
                f"  {change['role']}/{change['certificate']}: {change['from']} -> {change['to']}",
                file=out,
            )
        for url in plan["osProfile"]["added"]:
            print(f"  osProfile + {url}", file=out)
        for url in plan["osProfile"]["removed"]:
            print(f"  osProfile - {url}", file=out)
        for warning in plan["warnings"]:
            print(f"  warning: {warning}", file=out)
        for line in plan["cscfgDiff"].splitlines():
            print(f"  {line}", file=out)


def _exit_status(run: Run) -> int:
    return EXIT_NOT_DONE if any(r.outcome in NOT_DONE for r in run.results) else EXIT_OK


def _plan(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    run = _dry_run(engine, _request(engine, args, dry_run=True))
    if args.json:
        _dump({"dryRun": True, "services": [r.to_json() for r in run.results]}, out)
    else:
        _print_plans(run, out)
    return _exit_status(run)


def _rotate(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    request = _request(engine, args, dry_run=False)
    if not args.yes:
        if not sys.stdin.isatty():
            raise BadInput("rotate changes cloud services: confirm with --yes")
        preview = _dry_run(engine, request)
        _print_plans(preview, out)
        if not any(r.outcome == "dry-run" for r in preview.results):
            print("nothing to change", file=out)
            return _exit_status(preview)
        if input("apply this plan? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing changed", file=out)
            return EXIT_NOT_DONE
    run = engine.rotate(
        request.vault_id,
        request.certificate,
        Trigger("manual"),
        only=request.cloud_services,
        wait_seconds=args.wait,
        force=args.force,
    )
    if args.json:
        _dump(run.to_json(), out)
    else:
        rows = [[_name(r.service_id), r.outcome, r.message] for r in run.results]
        print(table(("SERVICE", "OUTCOME", "MESSAGE"), rows), file=out)
        print(f"run {run.id}: {run.status}", file=out)
    return _exit_status(run)


def _history(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    if args.cloud_service:
        split_service_id(args.cloud_service)
    records = list(
        recent_records(engine.storage, limit=args.limit, service_id=args.cloud_service)
    )
    if args.json:
        _dump(records, out)
        return EXIT_OK
    rows = []
    for record in records:
        services = [
            s
            for s in record.get("services") or []
            if not args.cloud_service or s["cloudService"].lower() == args.cloud_service.lower()
        ]
        rows.append(
            [
                str(record.get("started", ""))[:19],
                str(record.get("id", "")),
                str((record.get("trigger") or {}).get("kind", "")),
                f"{_name(record.get('vault'))}/{record.get('certificate', '')}",
                str(record.get("status", "")),
                ", ".join(f"{_name(s['cloudService'])}={s['outcome']}" for s in services) or "-",
            ]
        )
    headers = ("STARTED", "RUN", "TRIGGER", "VAULT/CERTIFICATE", "STATUS", "SERVICES")
    print(table(headers, rows) if rows else "no runs found", file=out)
    return EXIT_OK


def _adopt(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    done = adoption.adopt(engine, args.cloud_service, args.package)
    if args.json:
        _dump({"cloudService": done.service_id, "package": done.package_url, "md5": done.md5}, out)
    else:
        name = _name(done.service_id)
        print(f"{name}: tagged {PACKAGE_TAG}={done.package_url}", file=out)
        if done.md5:
            print(f"{name}: tagged {PACKAGE_MD5_TAG}={done.md5}", file=out)
        else:
            print(f"{name}: the blob has no Content-MD5; removed {PACKAGE_MD5_TAG}", file=out)
    return EXIT_OK


def _dump(document: Any, out: TextIO) -> None:
    print(json.dumps(document, indent=1), file=out)


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


# -- arguments -----------------------------------------------------------------------------


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
        epilog="Exit status: 0 done, 1 not done (see the message), 2 bad input.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[after], help=text, description=text)
        sub.set_defaults(run=run, log_level=logging.WARNING)
        return sub

    command("status", _status, "every service in scope, its certificates, drift and last run")
    for name, run, text in (
        ("plan", _plan, "show what a rotation would change (nothing is written)"),
        ("rotate", _rotate, "rotate now, show progress and wait for the update"),
    ):
        sub = command(name, run, text)
        sub.add_argument("--vault", required=True, metavar="ID", help="Key Vault ARM id")
        sub.add_argument("--certificate", required=True, metavar="NAME")
        sub.add_argument(
            "--cloud-service",
            action="append",
            metavar="ID",
            help="only this cloud service (ARM id; repeatable); default: every one using it",
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
    history = command("history", _history, "past runs, newest first")
    history.add_argument("--cloud-service", metavar="ID", help="only runs touching this service")
    history.add_argument("--limit", type=_limit, default=20, metavar="N", help="default 20")
    adopt = command("adopt", _adopt, "tag a cloud service with its package so rotation manages it")
    adopt.add_argument("--cloud-service", required=True, metavar="ID")
    adopt.add_argument("--package", required=True, metavar="URL", help="blob URL, without SAS")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
        if args.env_file is not None:
            os.environ.update(load_env_file(args.env_file))
        engine = Engine.from_settings(Settings.from_env())
        with _engine_log(args.log_level):
            status: int = args.run(engine, args, out)
        return status
    except InvalidInput as exc:
        return _fail(f"{OPTIONS.get(exc.field, exc.field)}: {exc.detail}", EXIT_BAD_INPUT)
    except (BadInput, ConfigError) as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except RotationError as exc:
        return _fail(str(exc), EXIT_NOT_DONE)
    except KeyboardInterrupt:
        return _fail("interrupted (an update already sent goes on in Azure)", EXIT_NOT_DONE)


def _fail(message: str, status: int) -> int:
    print(f"certrotate: error: {message}", file=sys.stderr)
    return status
