"""A run record and the run history as pages (``GET /api/rotations[/{id}]?format=html``).

Both render stored run records (:class:`shared.domain.records.RunRecord`): the run page
shows the outcome of each service, its message, its plan (versions, changes,
osProfile secrets, warnings), the cscfg diff (already redacted by
:mod:`shared.domain.plan_diff`: certificates and rewritten setting names only) and the timings
of its update. The history page lists runs newest first, a page at a time. No script;
every value is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.domain.outcomes import Outcome, RunStatus
from shared.domain.records import RunRecord, ServiceEntry, WriteFacts
from shared.status.html_page import EMPTY, badge, e, moment, page, table

FINISHED, WITH_FAILURES = "finished", "finished with failures"
_UNSETTLED = {
    Outcome.QUEUED, Outcome.UPDATING, Outcome.BACKOFF, RunStatus.RUNNING, RunStatus.RETRYING
}
_GOOD = {Outcome.ROTATED, Outcome.NOOP, Outcome.DRY_RUN, FINISHED}
_FAILED = frozenset(o for o in Outcome if o.unsuccessful)  # a string compares as its member


def outcome_badge(outcome: str) -> str:
    """Red for a failure, amber while unsettled, green when done, grey otherwise."""
    if outcome == WITH_FAILURES or outcome in _FAILED:
        css = "failed"
    elif outcome in _UNSETTLED:
        css = "expiring"
    elif outcome in _GOOD:
        css = "ok"
    else:
        css = "unmanaged"
    return badge(css, outcome)


def run_status(record: RunRecord) -> str:
    """The run's status as people read it: a finished run with a failure says so."""
    if record.status is not RunStatus.DONE:
        return str(record.status)
    failed = any(s.outcome.unsuccessful for s in record.services)
    return WITH_FAILURES if failed else FINISHED


def _duration(record: RunRecord) -> str | None:
    try:
        started = datetime.fromisoformat(record.started)
        finished = datetime.fromisoformat(record.finished or "")
    except ValueError:
        return None
    return f"{(finished - started).total_seconds():.1f} s"


def _kv(pairs: Sequence[tuple[str, str]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _plan(plan: Mapping[str, Any]) -> str:
    changes = [
        f"<tr><td>{e(c.get('role'))}</td><td>{e(c.get('certificate'))}</td>"
        f"<td class=\"mono\">{e(c.get('from'))}</td><td class=\"mono\">{e(c.get('to'))}</td></tr>"
        for c in plan.get("changes") or []
    ]
    profile = plan.get("osProfile") or {}
    secrets = [f"<li>+ <span class=\"mono\">{e(u)}</span></li>" for u in profile.get("added", [])]
    secrets += [f"<li>&minus; <span class=\"mono\">{e(u)}</span></li>"
                for u in profile.get("removed", [])]
    warnings = "".join(f"<li>{e(w)}</li>" for w in plan.get("warnings") or [])
    diff = plan.get("cscfgDiff") or ""
    return (
        _kv([
            ("Desired version", f'<span class="mono">{e(plan.get("desiredVersion"))}</span>'),
            ("Desired thumbprint", f'<span class="mono">{e(plan.get("desiredThumbprint"))}</span>'),
            ("Desired expires", moment(plan.get("desiredExpires"))),
            ("No-op", e("yes" if plan.get("noop") else "no")),
        ])
        + "<h4>Changes</h4>"
        + table([("Role", "20%"), ("cscfg name", "20%"), ("From", "30%"), ("To", "30%")],
                changes, "No cscfg change.")
        + (f"<h4>osProfile secrets</h4><ul>{''.join(secrets)}</ul>" if secrets else "")
        + (f"<h4>Warnings</h4><ul>{warnings}</ul>" if warnings else "")
        + (f"<h4>cscfg diff (secrets redacted)</h4><pre>{e(diff)}</pre>" if diff else "")
    )


def _timings(timings: Mapping[str, float]) -> str:
    if not timings:
        return ""
    rows = [f"<tr><td>{e(k)}</td><td class=\"nw\">{e(v)}</td></tr>" for k, v in timings.items()]
    return "<h4>Timings</h4>" + table([("Step", "60%"), ("Seconds", "40%")], rows, "")


def _service(entry: ServiceEntry) -> str:
    service = entry.cloud_service
    write = entry.write or WriteFacts()
    facts = [("Outcome", outcome_badge(entry.outcome)),
             ("Message", e(entry.message)),
             ("Cloud service id", f'<span class="mono">{e(service)}</span>')]
    if write.operation_id:
        facts.append(("Operation", f'<span class="mono">{e(write.operation_id)}</span>'))
    if write.package:
        package = write.package
        facts.append(("Package", f"{e(package.get('url'))} (MD5 {e(package.get('md5'))})"))
    return (
        f'<section class="service" data-service="{e(service)}">'
        f"<h3>{e(service.rsplit('/', 1)[-1])}</h3>"
        + _kv(facts)
        + (_plan(entry.plan) if entry.plan else "")
        + _timings(write.timings)
        + "</section>"
    )


def render_run(record: RunRecord) -> str:
    trigger, run_id = record.trigger, record.id
    history = "../rotations?format=html"
    actions = "".join(f"<li>{e(a.kind)}: {e(a.message)}</li>" for a in record.actions)
    body = (
        f'<p><a href="{e(history)}">&larr; Run history</a></p>'
        f'<h1>Run <span class="mono">{e(run_id)}</span></h1>'
        + _kv([
            ("Status", outcome_badge(run_status(record))),
            ("Trigger", e(" ".join(v for v in (trigger.kind, trigger.event_type) if v))),
            ("Vault", f'<span class="mono">{e(record.vault)}</span>'),
            ("Certificate", e(record.certificate)),
            ("Dry run", e("yes" if record.dry_run else "no")),
            ("Started", moment(record.started)),
            ("Finished", moment(record.finished)),
            ("Duration", e(_duration(record))),
        ])
        + (f"<h2>Actions</h2><ul>{actions}</ul>" if actions else "")
        + "<h2>Services</h2>"
        + ("".join(_service(s) for s in record.services)
           or '<p class="muted">No service in this run.</p>')
    )
    return page(f"certrotate run {run_id}", body)


def render_history(records: Sequence[RunRecord], next_link: str | None) -> str:
    """``next_link``: the query string of the next (older) page, if there is one."""
    rows = []
    for record in records:
        run_id = record.id
        services = " ".join(
            f"{e(s.cloud_service.rsplit('/', 1)[-1])} " + outcome_badge(s.outcome)
            for s in record.services
        )
        rows.append(
            f"<tr><td>{moment(record.started)}</td>"
            f'<td class="mono"><a href="rotations/{e(run_id)}?format=html">'
            f"{e(run_id)}</a></td>"
            f"<td>{e(record.trigger.kind)}</td>"
            f"<td>{e(record.vault.rsplit('/', 1)[-1])}/"
            f"{e(record.certificate)}</td>"
            f"<td>{outcome_badge(run_status(record))}</td><td>{services or EMPTY}</td></tr>"
        )
    status_link = "status?format=html"
    more = ""
    if next_link:
        more = f'<p><a href="rotations?{e(next_link)}">Older runs &rarr;</a></p>'

    body = (
        f'<p><a href="{e(status_link)}">&larr; Status</a></p><h1>Run history</h1>'
        + table(
            [("Started", "13%"), ("Run", "24%"), ("Trigger", "8%"),
             ("Vault / certificate", "17%"), ("Status", "12%"), ("Services", "26%")],
            rows,
            "No runs recorded.",
        )
        + more
    )
    return page("certrotate run history", body)
