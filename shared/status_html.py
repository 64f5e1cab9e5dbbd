"""The status as a small HTML page for people (``GET /api/status?format=html``).

One static page, no script: tables of what each service runs, thumbprints with no
certificate, unused certificates and whatever could not be read. Expiry cells are amber
within 30 days and red once expired. Every value comes from Azure (service, role and
certificate names, error messages) and is escaped, so nothing in a cscfg or a tag can
inject markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from shared.history import LastRun
from shared.inventory import CertificateUse, Inventory

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f0f0f0; }
td.mono { font-family: ui-monospace, monospace; font-size: 0.85rem; }
.soon { background: #fff3cd; }
.expired { background: #f8d7da; color: #842029; font-weight: bold; }
.drift { color: #842029; font-weight: bold; }
.muted { color: #777; }
"""
_EMPTY = "\u2014"  # an em dash for "no value"


def _e(value: object) -> str:
    return _EMPTY if value is None or value == "" else html.escape(str(value))


def _cell(value: object, css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<td{attribute}>{_e(value)}</td>"


def _short(version: str | None) -> str | None:
    return version[:8] if version else None


def _expiry(expires: object, days: float | None, state: str) -> str:
    """The expiry cell: date and days left, highlighted by ``state``."""
    if expires is None:
        return _cell(None)
    label = str(expires)[:10]
    if days is not None:
        label += f" (expired {-days:g} d ago)" if state == "expired" else f" ({days:g} d)"
    return _cell(label, state if state in ("soon", "expired") else "")


def _table(headers: Iterable[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _last_run(run: LastRun) -> str:
    """Outcome and start; for an update, the package it deployed (URL and Content-MD5)."""
    text = f"{run.outcome} ({run.started[:19]})"
    if run.package:
        text += f"; package {run.package.get('url')} (MD5 {run.package.get('md5')})"
    return text


def _use_row(service: str, managed: str, use: CertificateUse) -> str:
    run = use.last_run
    drift = {True: ("yes", "drift"), False: ("no", ""), None: ("?", "")}[use.drift]
    certificate = f"{use.vault_id.rsplit('/', 1)[-1]}/{use.certificate}" if use.vault_id else None
    return "<tr>" + "".join(
        [
            service,
            managed,
            _cell(use.role if use.role is not None else "(osProfile only)"),
            _cell(use.cscfg_name),
            _cell(certificate),
            _cell(use.thumbprint, "mono"),
            _cell(_short(use.version), "mono"),
            _expiry(use.expires, use.days_left, use.expiry),
            _cell(_short(use.desired_version), "mono"),
            _cell(drift[0], drift[1]),
            _cell(_last_run(run) if run else None),
            _cell(use.problem),
        ]
    ) + "</tr>"


def render(inventory: Inventory) -> str:
    rows: list[str] = []
    for service in inventory.services:
        name = f'<td title="{html.escape(service.id)}">{_e(service.name)}</td>'
        managed = _cell("yes" if service.managed else f"no: {service.reason}")
        if service.problem:
            rows.append(f'<tr>{name}{managed}<td colspan="10">{_e(service.problem)}</td></tr>')
        if service.backoff:
            rows.append(
                f'<tr>{name}{managed}<td colspan="10" class="soon">{_e(service.backoff)}</td></tr>'
            )
        rows.extend(_use_row(name, managed, use) for use in service.certificates)
        if not service.certificates and not service.problem:
            rows.append(f'<tr>{name}{managed}<td colspan="10" class="muted">none</td></tr>')
    orphans = [
        "<tr>"
        + _cell(o.service_id.rsplit("/", 1)[-1])
        + _cell(o.role)
        + _cell(o.cscfg_name)
        + _cell(o.thumbprint, "mono")
        + "</tr>"
        for o in inventory.orphans
    ]
    unused = [
        "<tr>"
        + _cell(u.vault_id.rsplit("/", 1)[-1])
        + _cell(u.certificate)
        + _cell(_short(u.version), "mono")
        + _cell(u.thumbprint, "mono")
        + _expiry(u.expires, u.days_left, u.expiry)
        + _cell(u.problem)
        + "</tr>"
        for u in inventory.unused
    ]
    uses = [use for service in inventory.services for use in service.certificates]
    summary = (
        f"{len(inventory.services)} cloud service(s), {len(uses)} certificate use(s): "
        f"{sum(u.expiry == 'expired' for u in uses)} expired, "
        f"{sum(u.expiry == 'soon' for u in uses)} expiring within 30 days, "
        f"{sum(u.drift is True for u in uses)} not on the desired version."
    )
    problems = "".join(f"<li>{_e(p)}</li>" for p in inventory.problems)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>certrotate status</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Certificate rotation status</h1>"
        f"<p>Generated {_e(inventory.generated.isoformat(timespec='seconds'))}. {_e(summary)}</p>"
        "<h2>Cloud services</h2>"
        + _table(
            (
                "Cloud service",
                "Managed",
                "Role",
                "cscfg name",
                "Vault/certificate",
                "Thumbprint",
                "Version",
                "Expires",
                "Desired",
                "Drift",
                "Last run",
                "Problem",
            ),
            rows,
            "No cloud service in scope.",
        )
        + "<h2>cscfg thumbprints with no certificate</h2>"
        + _table(
            ("Cloud service", "Role", "cscfg name", "Thumbprint"),
            orphans,
            "Every cscfg thumbprint is a version of a certificate in a referenced vault.",
        )
        + "<h2>Certificates no service uses</h2>"
        + _table(
            ("Vault", "Certificate", "Version", "Thumbprint", "Expires", "Problem"),
            unused,
            "Every certificate in the referenced vaults is used.",
        )
        + (f"<h2>Could not read</h2><ul>{problems}</ul>" if problems else "")
        + "</body></html>\n"
    )
