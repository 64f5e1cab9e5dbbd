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
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

from certrotate import names
from shared.config import Settings
from shared.domain.compute_ids import split_service_id
from shared.domain.errors import ConfigError, InvalidInput, NotFound, RotationError
from shared.domain.model import PACKAGE_MD5_TAG, PACKAGE_TAG, CloudServiceSnapshot, SecretUrl
from shared.domain.outcomes import Outcome, RunStatus
from shared.domain.records import RunRecord, ServiceEntry, Trigger
from shared.domain.requests import RotationRequest
from shared.domain.runs import Run
from shared.rotation import adoption
from shared.rotation.engine import Engine
from shared.status import inventory
from shared.status.assessment import findings
from shared.status.gather import gather
from shared.status.history import MAX_SCAN, recent_records
from shared.status.inventory import Flag

EXIT_OK, EXIT_NOT_DONE, EXIT_BAD_INPUT, EXIT_ATTENTION, EXIT_PIPE = 0, 1, 2, 3, 141
EPILOG = (
    "Exit status: 0 done (status --check: nothing needs attention); 1 not done (a service "
    "failed, was refused or is still updating; not found; Azure unreachable); 2 bad input "
    "(arguments, env file, settings, an ambiguous name); 3 status --check found something "
    "that needs attention; 141 output pipe closed."
)
# A run whose record says it is still going: queued for a worker, running, or updating.
_FORM_ONLY_VAULT = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.KeyVault/vaults/form-only"
)
FOLLOW_POLL_SECONDS = 2.0  # how often ``follow`` re-reads a run another invocation runs
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
    found = gather(engine)
    document = found.to_json()
    ignore = {Flag(f) for f in args.ignore or ()}
    check = findings(found, expiring_days=args.expiring_days, ignore=ignore)
    if args.json:
        _dump(document, out)
    else:
        _print_status(found, document, out)
    if args.check:
        for line in check:
            print(f"attention: {line}", file=sys.stderr)
        return EXIT_ATTENTION if check else EXIT_OK
    return EXIT_OK


def _print_status(found: inventory.Inventory, document: dict[str, Any], out: TextIO) -> None:
    by_id = {s["id"]: s for s in document["services"]}
    rows: list[list[str]] = []
    notes: list[str] = []
    for status in found.by_urgency():
        service = by_id[status.id]
        name = f"{service['resourceGroup']}/{service['name']}"
        attention = ",".join(service["attention"]) or "ok"
        managed = "yes" if service["managed"] else "no"
        if not service["managed"]:
            notes.append(f"{name}: unmanaged: {service['reason']}")
        if (service["provisioningState"] or "").lower() == "failed":
            notes.append(f"{name}: Azure left it in provisioningState Failed")
        if service["problem"]:
            notes.append(f"{name}: {service['problem']}")
        if service.get("backoff"):
            notes.append(f"{name}: {service['backoff']}")
        for use in service["certificates"] or [None]:
            if use is None:
                rows.append([attention, name, *["-"] * 7, managed, "-"])
                continue
            run = use["lastRun"]
            rows.append(
                [
                    attention,
                    name,
                    _text(use["role"] or "(osProfile)"),
                    _text(use["cscfgName"]),
                    f"{_name(use['vault'])}/{_text(use['certificate'])}",
                    _short(use["version"]),
                    _expiry(use["expires"], use["expiresInDays"], use["expiry"]),
                    _short(use["desiredVersion"]),
                    {True: "DRIFT", False: "no", None: "?"}[use["drift"]],
                    managed,
                    f"{run['outcome']} {run['started'][:19]} {run['id']}" if run else "-",
                ]
            )
            if use["problem"]:
                where = (
                    f"{use['role']}/{use['cscfgName']}"
                    if use["role"]
                    else f"osProfile {_text(use['certificate'])}"
                )
                notes.append(f"{name} {where}: {use['problem']}")
    headers = ("ATTENTION", "SERVICE", "ROLE", "CSCFG NAME", "VAULT/CERTIFICATE", "VERSION")
    print(
        table((*headers, "EXPIRES", "DESIRED", "DRIFT", "MANAGED", "LAST RUN"), rows), file=out
    )
    if document["orphanThumbprints"]:
        print("\ncscfg thumbprints that match no certificate in any referenced vault:", file=out)
        orphans = [
            [_name(o["cloudService"]), o["role"], o["cscfgName"], o["thumbprint"]]
            for o in document["orphanThumbprints"]
        ]
        print(table(("SERVICE", "ROLE", "CSCFG NAME", "THUMBPRINT"), orphans), file=out)
    if document["unusedCertificates"]:
        print("\ncertificates in the referenced vaults that no service uses:", file=out)
        unused = [
            [
                _name(u["vault"]),
                u["certificate"],
                _short(u["version"]),
                _expiry(u["expires"], u["expiresInDays"], u["expiry"]),
            ]
            for u in document["unusedCertificates"]
        ]
        print(table(("VAULT", "CERTIFICATE", "VERSION", "EXPIRES"), unused), file=out)
    for line in notes + [f"could not read {p}" for p in document["problems"]]:
        print(f"note: {line}", file=out)
    print(_summary(document["summary"]), file=out)


def _summary(counts: Mapping[str, int]) -> str:
    """``summary: 5 services, 2 need attention: 1 failed, 1 expiring``."""
    flagged = ", ".join(f"{counts[f.value]} {f.label}" for f in Flag if counts.get(f.value))
    line = f"summary: {counts['services']} service(s), {counts['attention']} need attention"
    if counts.get("unreadable"):
        flagged += f"{', ' if flagged else ''}{counts['unreadable']} unreadable"
    return f"{line}: {flagged}" if flagged else line


def _check_forms(args: argparse.Namespace) -> None:
    """Refuse a name that cannot be one before anything is read (exit 2)."""
    given = [("--vault", "vault", args.vault)] if getattr(args, "vault", None) else []
    given += [("--cloud-service", "cloud service", text) for text in _services_given(args)]
    for option, kind, text in given:
        try:
            names.check_form(kind, text)
        except ValueError as exc:
            raise BadInput(f"{option}: {exc}") from None


def _services_given(args: argparse.Namespace) -> list[str]:
    given = getattr(args, "cloud_service", None)
    return [] if not given else [given] if isinstance(given, str) else list(given)


def _request(engine: Engine, args: argparse.Namespace, dry_run: bool) -> RotationRequest:
    """The request with names resolved among the services in scope, and what is missing
    said plainly (vault, certificate or service, as the operator spelled it)."""
    # Every field's form is checked before anything is read (a stand-in for short names).
    RotationRequest.from_fields(
        args.vault if names.is_arm_id(args.vault) else _FORM_ONLY_VAULT,
        args.certificate,
        [t for t in _services_given(args) if names.is_arm_id(t)],
        dry_run,
    )
    services = list(engine.compute.list_services())
    vault_id = names.vault_id(args.vault, services)
    given = _services_given(args)
    only = [names.service_id(text, services) for text in given]
    request = RotationRequest.from_fields(vault_id, args.certificate, only, dry_run)
    _explain_missing(engine, request, services, dict(zip(only, given, strict=True)))
    return request  # the engine refuses a vault outside ROTATION_SUBSCRIPTIONS


def _explain_missing(
    engine: Engine,
    request: RotationRequest,
    services: Sequence[CloudServiceSnapshot],
    given: Mapping[str, str],
) -> None:
    """NotFound naming the vault, certificate or service that is missing, if one is."""
    vault, certificate = request.vault_id, request.certificate
    known = {s.id.lower() for s in services}
    for service_id in request.cloud_services:
        if service_id.lower() not in known:
            text = given.get(service_id, service_id)
            raise NotFound(f"cloud service '{text}' not found in scope")
    urls = sorted(
        {
            parsed.vault_url
            for s in services
            for g in s.secrets
            if g.source_vault_id.lower() == vault.lower()
            for u in g.certificate_urls
            if (parsed := SecretUrl.parse(u)) is not None
        }
    )
    if not urls:
        raise NotFound(f"vault '{vault}' not found: no cloud service in scope uses it")
    users = [s for s in services if s.references(vault, certificate)]
    if not users:
        listed = {n.lower() for n in engine.keyvault.certificate_names(urls[0])}
        if certificate.lower() not in listed:
            raise NotFound(f"certificate '{certificate}' not found in vault {_name(vault)}")
        raise NotFound(
            f"certificate '{certificate}' of vault {_name(vault)} is used by no cloud service "
            "in scope"
        )
    using = {s.id.lower() for s in users}
    for service_id in request.cloud_services:
        if service_id.lower() not in using:
            raise NotFound(
                f"cloud service '{given.get(service_id, service_id)}' does not use certificate "
                f"'{certificate}' of vault {_name(vault)}"
            )


def _dry_run(engine: Engine, request: RotationRequest) -> Run:
    return engine.rotate(
        request.vault_id,
        request.certificate,
        Trigger("manual"),
        only=request.cloud_services,
        dry_run=True,
    )


def _print_plans(run: Run, out: TextIO) -> None:
    _print_entries([r.entry() for r in run.results], out)


def _print_entries(entries: Iterable[ServiceEntry], out: TextIO) -> None:
    """Each service's outcome and message, and its plan when it has one to show."""
    for entry in entries:
        print(f"{_name(entry.cloud_service)}: {entry.outcome}", file=out, end="")
        print(f" ({entry.message})" if entry.message else "", file=out)
        plan = entry.plan
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
    return _exit_for(r.outcome for r in run.results)


def _exit_for(outcomes: Iterable[Outcome]) -> int:
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


def _plan(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    run = _dry_run(engine, _request(engine, args, dry_run=True))
    if args.json:
        _dump({"dryRun": True, "services": [r.to_json() for r in run.results]}, out)
    else:
        _print_plans(run, out)
    return _exit_status(run)


def _rotate(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    if not args.yes and not sys.stdin.isatty():
        raise BadInput("rotate changes cloud services: confirm with --yes")
    request = _request(engine, args, dry_run=False)
    if not args.yes:
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
        print(f"run {run.id} {outcome_line(run.status, (r.outcome for r in run.results))}",
              file=out)
        if run.status == "updating":
            print(f"follow it with: certrotate follow {run.id}", file=out)
    return _exit_status(run)


def _run_id(text: str) -> str:
    if not text or len(text) > 64 or not set(text) <= set("0123456789abcdefTZ-"):
        raise BadInput(f"RUN_ID: '{text}' is not a rotation run id")
    return text


def _print_record(record: RunRecord, out: TextIO) -> None:
    print(
        f"run {record.id} ({record.trigger.kind}, {_name(record.vault)}/"
        f"{record.certificate}) started {record.started[:19]}, "
        f"finished {(record.finished or '-')[:19]}",
        file=out,
    )
    _print_entries(record.services, out)
    outcomes = [s.outcome for s in record.services]
    print(f"run {record.id} {outcome_line(record.status, outcomes)}", file=out)


def _show(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """The run as recorded: read-only, whatever its status."""
    record = engine.storage.load_record(_run_id(args.run_id))
    if args.json:
        _dump(record.to_json(), out)
    else:
        _print_record(record, out)
    return _exit_for(s.outcome for s in record.services)


def _follow(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """Progress of a run until it ends (or ``--timeout``): each service's outcome as it
    changes. Read-only, as ``GET /api/rotations/{id}``: the record is re-read until it
    ends; the app's workers, follow looks and ``follow_updates`` sweep finish it."""
    run_id = _run_id(args.run_id)
    deadline = time.monotonic() + args.timeout
    seen: dict[str, str] = {}
    while True:
        record = engine.storage.load_record(run_id)
        for entry in record.services:
            if seen.get(entry.cloud_service) != entry.outcome:
                seen[entry.cloud_service] = entry.outcome
                message = f" ({entry.message})" if entry.message else ""
                print(f"{_name(entry.cloud_service)}: {entry.outcome}{message}", file=out)
                out.flush()
        status = record.status
        if status.ended or time.monotonic() >= deadline:
            break
        time.sleep(FOLLOW_POLL_SECONDS)
    outcomes = [s.outcome for s in record.services]
    if args.json:
        _dump(record.to_json(), out)
    else:
        print(f"run {run_id} {outcome_line(status, outcomes)}", file=out)
    return _exit_for(outcomes) if status.ended else EXIT_NOT_DONE


def _history(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    services = (
        list(engine.compute.list_services())
        if any(t and not names.is_arm_id(t) for t in (args.cloud_service, args.vault))
        else []
    )
    service = names.service_id(args.cloud_service, services) if args.cloud_service else None
    if service is not None:
        split_service_id(service)
    vault = names.vault_id(args.vault, services) if args.vault else None

    def wanted(record: RunRecord) -> bool:
        if vault and record.vault.lower() != vault.lower():
            return False
        if args.certificate and record.certificate.lower() != args.certificate.lower():
            return False
        return not args.outcome or any(
            s.outcome == args.outcome for s in _entries(record, service)
        )

    records = []
    for record in recent_records(engine.storage, limit=MAX_SCAN, service_id=service):
        if wanted(record):
            records.append(record)
            if len(records) >= args.limit:
                break
    if args.json:
        _dump([r.to_json() for r in records], out)
        return EXIT_OK
    rows = []
    for record in records:
        rows.append(
            [
                record.started[:19],
                record.id,
                record.trigger.kind,
                f"{_name(record.vault)}/{record.certificate}",
                outcome_line(record.status, (s.outcome for s in record.services)).split(":")[0],
                ", ".join(
                    f"{_name(s.cloud_service)}={s.outcome}" for s in _entries(record, service)
                )
                or "-",
            ]
        )
    headers = ("STARTED", "RUN", "TRIGGER", "VAULT/CERTIFICATE", "STATUS", "SERVICES")
    print(table(headers, rows) if rows else "no runs found", file=out)
    return EXIT_OK


def _entries(record: RunRecord, service: str | None) -> list[ServiceEntry]:
    """The record's service entries, only ``service``'s if given."""
    return [s for s in record.services if not service or s.is_for(service)]


def _adopt(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    in_scope = [] if names.is_arm_id(args.cloud_service) else list(engine.compute.list_services())
    service = names.service_id(args.cloud_service, in_scope)
    done = adoption.adopt(
        engine.compute, engine.storage, engine.settings.package_containers, service, args.package
    )
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
        "status", _status, "every service in scope, what needs attention, drift and last run"
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
        ("plan", _plan, "show what a rotation would change (nothing is written)"),
        ("rotate", _rotate, "rotate now, show progress and wait for the update"),
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
        ("show", _show, "one run as recorded: outcomes, plans, diff (read-only)"),
        ("follow", _follow, "a run's progress until it ends; exit status as for rotate"),
    ):
        sub = command(name, run, text)
        sub.add_argument("run_id", metavar="RUN_ID")
    commands.choices["follow"].add_argument(
        "--timeout", type=_seconds, default=1800.0, metavar="SECONDS", help="default 1800"
    )
    commands.choices["follow"].set_defaults(log_level=logging.INFO)
    history = command("history", _history, "past runs, newest first")
    history.add_argument("--cloud-service", metavar="SERVICE", help="only runs touching it")
    history.add_argument("--vault", metavar="VAULT", help="only runs for this vault")
    history.add_argument("--certificate", metavar="NAME", help="only runs for this certificate")
    history.add_argument("--outcome", metavar="OUTCOME", help="only runs with a service OUTCOME")
    history.add_argument("--limit", type=_limit, default=20, metavar="N", help="default 20")
    adopt = command("adopt", _adopt, "tag a cloud service with its package so rotation manages it")
    adopt.add_argument("--cloud-service", required=True, metavar="SERVICE")
    adopt.add_argument("--package", required=True, metavar="URL", help="blob URL, without SAS")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
        _check_forms(args)
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
