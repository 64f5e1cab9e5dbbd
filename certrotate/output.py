"""What ``certrotate`` prints for people: tables, plans, run records and the status.

Short names (the last segment of an ARM id) keep lines readable; ``--json`` prints the
documents the HTTP API returns instead (:func:`dump`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from certrotate.exits import outcome_line
from shared.domain.records import RunRecord, ServiceEntry
from shared.domain.runs import Run
from shared.status import inventory
from shared.status.inventory import Flag


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def text(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def short_version(version: str | None) -> str:
    return version[:8] if version else "-"


def short_name(resource_id: str | None) -> str:
    return resource_id.rsplit("/", 1)[-1] if resource_id else "-"


def expiry(expires: str | None, days: float | None, state: str) -> str:
    if expires is None:
        return "-"
    flag = {"expired": ", EXPIRED", "soon": ", soon"}.get(state, "")
    return f"{expires[:10]} ({text(days)}d{flag})"


def print_status(found: inventory.Inventory, document: dict[str, Any], out: TextIO) -> None:
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
                    text(use["role"] or "(osProfile)"),
                    text(use["cscfgName"]),
                    f"{short_name(use['vault'])}/{text(use['certificate'])}",
                    short_version(use["version"]),
                    expiry(use["expires"], use["expiresInDays"], use["expiry"]),
                    short_version(use["desiredVersion"]),
                    {True: "DRIFT", False: "no", None: "?"}[use["drift"]],
                    managed,
                    f"{run['outcome']} {run['started'][:19]} {run['id']}" if run else "-",
                ]
            )
            if use["problem"]:
                where = (
                    f"{use['role']}/{use['cscfgName']}"
                    if use["role"]
                    else f"osProfile {text(use['certificate'])}"
                )
                notes.append(f"{name} {where}: {use['problem']}")
    headers = ("ATTENTION", "SERVICE", "ROLE", "CSCFG NAME", "VAULT/CERTIFICATE", "VERSION")
    print(
        table((*headers, "EXPIRES", "DESIRED", "DRIFT", "MANAGED", "LAST RUN"), rows), file=out
    )
    if document["orphanThumbprints"]:
        print("\ncscfg thumbprints that match no certificate in any referenced vault:", file=out)
        orphans = [
            [short_name(o["cloudService"]), o["role"], o["cscfgName"], o["thumbprint"]]
            for o in document["orphanThumbprints"]
        ]
        print(table(("SERVICE", "ROLE", "CSCFG NAME", "THUMBPRINT"), orphans), file=out)
    if document["unusedCertificates"]:
        print("\ncertificates in the referenced vaults that no service uses:", file=out)
        unused = [
            [
                short_name(u["vault"]),
                u["certificate"],
                short_version(u["version"]),
                expiry(u["expires"], u["expiresInDays"], u["expiry"]),
            ]
            for u in document["unusedCertificates"]
        ]
        print(table(("VAULT", "CERTIFICATE", "VERSION", "EXPIRES"), unused), file=out)
    for line in notes + [f"could not read {p}" for p in document["problems"]]:
        print(f"note: {line}", file=out)
    print(summary_line(document["summary"]), file=out)


def summary_line(counts: Mapping[str, int]) -> str:
    """``summary: 5 services, 2 need attention: 1 failed, 1 expiring``."""
    flagged = ", ".join(f"{counts[f.value]} {f.label}" for f in Flag if counts.get(f.value))
    line = f"summary: {counts['services']} service(s), {counts['attention']} need attention"
    if counts.get("unreadable"):
        flagged += f"{', ' if flagged else ''}{counts['unreadable']} unreadable"
    return f"{line}: {flagged}" if flagged else line


def print_plans(run: Run, out: TextIO) -> None:
    print_entries([r.entry() for r in run.results], out)


def print_entries(entries: Iterable[ServiceEntry], out: TextIO) -> None:
    """Each service's outcome and message, and its plan when it has one to show."""
    for entry in entries:
        print(f"{short_name(entry.cloud_service)}: {entry.outcome}", file=out, end="")
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


def print_record(record: RunRecord, out: TextIO) -> None:
    print(
        f"run {record.id} ({record.trigger.kind}, {short_name(record.vault)}/"
        f"{record.certificate}) started {record.started[:19]}, "
        f"finished {(record.finished or '-')[:19]}",
        file=out,
    )
    print_entries(record.services, out)
    outcomes = [s.outcome for s in record.services]
    print(f"run {record.id} {outcome_line(record.status, outcomes)}", file=out)


def dump(document: Any, out: TextIO) -> None:
    print(json.dumps(document, indent=1), file=out)
