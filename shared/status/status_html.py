"""The status as a page for people (``GET /api/status?format=html``).

One static page, no script (see :mod:`shared.status.html_page`): summary tiles counting the
services that carry each :class:`~shared.status.inventory.Flag` (the JSON's ``summary``), then one
table, services most urgent first, one line per certificate a service uses, flags as
text-and-colour badges. Each last run links to its run page; long reasons (why a service
is unmanaged, a backoff, a problem) sit behind a ``<details>`` disclosure so a row stays
one or two lines tall. Every value comes from Azure or the run records and is escaped.
"""

from __future__ import annotations

from shared.status.html_page import EMPTY, badge, e, moment, page, table
from shared.status.inventory import CertificateUse, Flag, Inventory, ServiceStatus

TILES = (Flag.FAILED, Flag.RUN_FAILED, Flag.BACKOFF, Flag.EXPIRED, Flag.EXPIRING, Flag.DRIFT,
         Flag.UNMANAGED, Flag.PROBLEM)
COLUMNS = [
    ("Attention", "11%"),
    ("Cloud service", "14%"),
    ("Role / cscfg name", "11%"),
    ("Vault / certificate", "12%"),
    ("Version (desired)", "10%"),
    ("Expires", "10%"),
    ("Last run", "16%"),
    ("Details", "16%"),
]


def run_link(run_id: str, text: str) -> str:
    """A link to the run page, relative to ``/api/``. It carries no function key: a key is a
    secret, never echoed into a page (open the pages with a client that sends
    ``x-functions-key``, or behind App Service authentication)."""
    return f'<a href="rotations/{e(run_id)}?format=html">{e(text)}</a>'


def _short(version: str | None) -> str:
    if not version:
        return EMPTY
    return f'<span class="mono nw" title="{e(version)}">{e(version[:8])}</span>'


def _badges(flags: tuple[Flag, ...]) -> str:
    return "".join(badge(f.value, f.label) for f in flags) or badge("ok", "ok")


def _expiry(use: CertificateUse) -> str:
    if use.expires is None:
        return EMPTY
    days = use.days_left
    left = "" if days is None else f"expired {-days:g} d ago" if days <= 0 else f"in {days:g} d"
    return f'<span class="nw">{e(use.expires.date().isoformat())}</span><br>' + (
        f'<span class="small muted nw">{e(left)}</span>'
    )


def _details(summary: str, lines: list[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{e(line)}</li>" for line in lines)
    return f"<details><summary>{e(summary)}</summary><ul class=\"small\">{items}</ul></details>"


def _service_cell(service: ServiceStatus, rows: int) -> str:
    state = service.provisioning_state or "unknown state"
    managed = "managed" if service.managed else "opted out" if service.opted_out else "unmanaged"
    return (
        f'<td rowspan="{rows}" title="{e(service.id)}"><strong>{e(service.name)}</strong><br>'
        f'<span class="small muted">rg {e(service.resource_group)}</span><br>'
        f'<span class="small muted">{e(state)}, {e(managed)}</span></td>'
    )


def _service_notes(service: ServiceStatus) -> list[str]:
    notes = []
    if (service.provisioning_state or "").lower() == "failed":
        notes.append("Azure left this service in provisioningState Failed")
    if service.backoff:
        notes.append(service.backoff)
    if service.problem:
        notes.append(service.problem)
    if not service.managed:
        notes.append(service.reason)
    return notes


def _use_cells(use: CertificateUse | None) -> str:
    if use is None:
        return '<td colspan="5" class="muted">no certificate</td>'
    role = use.role if use.role is not None else "(osProfile only)"
    vault = use.vault_id.rsplit("/", 1)[-1] if use.vault_id else None
    version = _short(use.version)
    if use.drift:
        version += f' <span class="muted">&rarr;</span> {_short(use.desired_version)}'
    run = use.last_run
    last = EMPTY
    if run is not None:
        last = run_link(run.run_id, run.outcome)
        last += f'<br><span class="small">{moment(run.started)}</span>'
    return (
        f"<td>{e(role)}<br><span class=\"small muted\">{e(use.cscfg_name)}</span></td>"
        f"<td>{e(vault)}<br><span class=\"small\">{e(use.certificate)}</span></td>"
        f"<td>{version}</td><td>{_expiry(use)}</td><td>{last}</td>"
    )


def _service_rows(service: ServiceStatus) -> list[str]:
    uses: list[CertificateUse | None] = list(service.certificates) or [None]
    notes = _details("why", _service_notes(service))
    flags = service.flags()
    rows = []
    for index, use in enumerate(uses):
        own = "" if use is None else _details("problem" if use.problem else "more", _use_notes(use))
        cells = _use_cells(use) + f"<td>{notes if index == 0 else ''}{own}</td>"
        if index == 0:
            attention = f'<td rowspan="{len(uses)}">{_badges(flags)}</td>'
            rows.append(
                f'<tr class="first" data-service="{e(service.id)}" '
                f'data-attention="{e(" ".join(flags))}">'
                f"{attention}{_service_cell(service, len(uses))}{cells}</tr>"
            )
        else:
            rows.append(f"<tr>{cells}</tr>")
    return rows


def _use_notes(use: CertificateUse) -> list[str]:
    notes = [f"thumbprint {use.thumbprint}"] if use.thumbprint else []
    if use.problem:
        notes.insert(0, use.problem)
    if use.last_run is not None and use.last_run.message:
        notes.append(f"last run: {use.last_run.message}")
    return notes


def _tiles(inventory: Inventory) -> str:
    counts = inventory.summary()
    tiles = [
        f'<div class="tile" id="tile-services"><span class="n">{counts["services"]}</span>'
        "services</div>"
    ]
    for flag in TILES:
        n = counts[flag.value]
        hot = " hot" if n else ""
        tiles.append(
            f'<div class="tile b-{flag.value}{hot}" id="tile-{flag.value}">'
            f'<span class="n">{n}</span>{e(flag.label)}</div>'
        )
    return f'<div class="tiles">{"".join(tiles)}</div>'


def render(inventory: Inventory) -> str:
    """The status page (no script, every value escaped)."""
    rows = [row for service in inventory.by_urgency() for row in _service_rows(service)]
    orphans = [
        f"<tr><td>{e(o.service_id.rsplit('/', 1)[-1])}</td><td>{e(o.role)}</td>"
        f"<td>{e(o.cscfg_name)}</td><td class=\"mono\">{e(o.thumbprint)}</td></tr>"
        for o in inventory.orphans
    ]
    unused = [
        f"<tr><td>{e(u.vault_id.rsplit('/', 1)[-1])}</td><td>{e(u.certificate)}</td>"
        f"<td>{_short(u.version)}</td><td class=\"nw\">"
        f"{e(u.expires.date().isoformat() if u.expires else None)}</td>"
        f"<td>{badge(u.expiry if u.expiry != 'soon' else 'expiring', u.expiry)}</td>"
        f"<td>{e(u.problem)}</td></tr>"
        for u in inventory.unused
    ]
    problems = "".join(f"<li>{e(p)}</li>" for p in inventory.problems)
    history = "rotations?format=html"
    body = (
        "<h1>Certificate rotation status</h1>"
        f'<p class="muted">Generated {moment(inventory.generated.isoformat())} UTC. '
        f'<a href="{e(history)}">Run history</a></p>'
        + _tiles(inventory)
        + "<h2>Cloud services, most urgent first</h2>"
        + table(COLUMNS, rows, "No cloud service in scope.")
        + "<h2>cscfg thumbprints with no certificate</h2>"
        + table(
            [("Cloud service", "25%"), ("Role", "20%"), ("cscfg name", "20%"),
             ("Thumbprint", "35%")],
            orphans,
            "Every cscfg thumbprint is a version of a certificate in a referenced vault.",
        )
        + "<h2>Certificates no service uses</h2>"
        + table(
            [("Vault", "18%"), ("Certificate", "20%"), ("Version", "12%"), ("Expires", "12%"),
             ("Expiry", "10%"), ("Problem", "28%")],
            unused,
            "Every certificate in the referenced vaults is used.",
        )
        + (f"<h2>Could not read</h2><ul>{problems}</ul>" if problems else "")
    )
    return page("certrotate status", body)
