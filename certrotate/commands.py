"""The commands: status, plan, rotate, show, follow, history, adopt.

Each takes the engine, the parsed arguments and where to print, and returns the exit
status (:mod:`certrotate.exits`). ``show`` and ``follow`` only read run records; the
app's follow looks and sweep finish updates still running.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from certrotate import names
from certrotate.exits import (
    EXIT_ATTENTION,
    EXIT_NOT_DONE,
    EXIT_OK,
    BadInput,
    exit_for,
    exit_status,
    outcome_line,
)
from certrotate.output import dump, print_plans, print_record, print_status, short_name, table
from certrotate.resolve import checked_run_id, dry_run_of, resolved_request
from shared.domain.compute_ids import split_service_id
from shared.domain.model import PACKAGE_MD5_TAG, PACKAGE_TAG
from shared.domain.records import RunRecord, ServiceEntry, Trigger
from shared.rotation import adoption
from shared.rotation.engine import Engine
from shared.status.assessment import findings
from shared.status.gather import gather
from shared.status.history import MAX_SCAN, recent_records
from shared.status.inventory import Flag

FOLLOW_POLL_SECONDS = 2.0  # how often ``follow`` re-reads a run another invocation runs


def status_command(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    found = gather(engine)
    document = found.to_json()
    ignore = {Flag(f) for f in args.ignore or ()}
    check = findings(found, expiring_days=args.expiring_days, ignore=ignore)
    if args.json:
        dump(document, out)
    else:
        print_status(found, document, out)
    if args.check:
        for line in check:
            print(f"attention: {line}", file=sys.stderr)
        return EXIT_ATTENTION if check else EXIT_OK
    return EXIT_OK


def plan_command(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    run = dry_run_of(engine, resolved_request(engine, args, dry_run=True))
    if args.json:
        dump({"dryRun": True, "services": [r.to_json() for r in run.results]}, out)
    else:
        print_plans(run, out)
    return exit_status(run)


def rotate_command(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    if not args.yes and not sys.stdin.isatty():
        raise BadInput("rotate changes cloud services: confirm with --yes")
    request = resolved_request(engine, args, dry_run=False)
    if not args.yes:
        preview = dry_run_of(engine, request)
        print_plans(preview, out)
        if not any(r.outcome == "dry-run" for r in preview.results):
            print("nothing to change", file=out)
            return exit_status(preview)
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
        dump(run.to_json(), out)
    else:
        rows = [[short_name(r.service_id), r.outcome, r.message] for r in run.results]
        print(table(("SERVICE", "OUTCOME", "MESSAGE"), rows), file=out)
        print(f"run {run.id} {outcome_line(run.status, (r.outcome for r in run.results))}",
              file=out)
        if run.status == "updating":
            print(f"follow it with: certrotate follow {run.id}", file=out)
    return exit_status(run)


def show_command(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """The run as recorded: read-only, whatever its status."""
    record = engine.storage.load_record(checked_run_id(args.run_id))
    if args.json:
        dump(record.to_json(), out)
    else:
        print_record(record, out)
    return exit_for(s.outcome for s in record.services)


def follow_command(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """Progress of a run until it ends (or ``--timeout``): each service's outcome as it
    changes. Read-only, as ``GET /api/rotations/{id}``: the record is re-read until it
    ends; the app's workers, follow looks and ``follow_updates`` sweep finish it."""
    run_id = checked_run_id(args.run_id)
    deadline = time.monotonic() + args.timeout
    seen: dict[str, str] = {}
    while True:
        record = engine.storage.load_record(run_id)
        for entry in record.services:
            if seen.get(entry.cloud_service) != entry.outcome:
                seen[entry.cloud_service] = entry.outcome
                message = f" ({entry.message})" if entry.message else ""
                print(f"{short_name(entry.cloud_service)}: {entry.outcome}{message}", file=out)
                out.flush()
        status = record.status
        if status.ended or time.monotonic() >= deadline:
            break
        time.sleep(FOLLOW_POLL_SECONDS)
    outcomes = [s.outcome for s in record.services]
    if args.json:
        dump(record.to_json(), out)
    else:
        print(f"run {run_id} {outcome_line(status, outcomes)}", file=out)
    return exit_for(outcomes) if status.ended else EXIT_NOT_DONE


def history_command(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
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
            s.outcome == args.outcome for s in entries_of(record, service)
        )

    records = []
    for record in recent_records(engine.storage, limit=MAX_SCAN, service_id=service):
        if wanted(record):
            records.append(record)
            if len(records) >= args.limit:
                break
    if args.json:
        dump([r.to_json() for r in records], out)
        return EXIT_OK
    rows = []
    for record in records:
        rows.append(
            [
                record.started[:19],
                record.id,
                record.trigger.kind,
                f"{short_name(record.vault)}/{record.certificate}",
                outcome_line(record.status, (s.outcome for s in record.services)).split(":")[0],
                ", ".join(
                    f"{short_name(s.cloud_service)}={s.outcome}"
                    for s in entries_of(record, service)
                )
                or "-",
            ]
        )
    headers = ("STARTED", "RUN", "TRIGGER", "VAULT/CERTIFICATE", "STATUS", "SERVICES")
    print(table(headers, rows) if rows else "no runs found", file=out)
    return EXIT_OK


def entries_of(record: RunRecord, service: str | None) -> list[ServiceEntry]:
    """The record's service entries, only ``service``'s if given."""
    return [s for s in record.services if not service or s.is_for(service)]


def adopt_command(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    in_scope = [] if names.is_arm_id(args.cloud_service) else list(engine.compute.list_services())
    service = names.service_id(args.cloud_service, in_scope)
    done = adoption.adopt(
        engine.compute, engine.storage, engine.settings.package_containers, service, args.package
    )
    if args.json:
        dump({"cloudService": done.service_id, "package": done.package_url, "md5": done.md5}, out)
    else:
        name = short_name(done.service_id)
        print(f"{name}: tagged {PACKAGE_TAG}={done.package_url}", file=out)
        if done.md5:
            print(f"{name}: tagged {PACKAGE_MD5_TAG}={done.md5}", file=out)
        else:
            print(f"{name}: the blob has no Content-MD5; removed {PACKAGE_MD5_TAG}", file=out)
    return EXIT_OK
