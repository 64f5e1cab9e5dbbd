"""Table-driven tests for the status: shared.status.assessment.build, the last-run lookup in
shared.status.history, and the HTML page. Plain values built by hand, ``now`` fixed, no I/O: a
row reads "Azure showed this; the status page says that"."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain.model import (
    OPT_OUT_TAG,
    PACKAGE_TAG,
    Certificate,
    CertificateVersion,
    CloudServiceSnapshot,
    SecretGroup,
)
from shared.domain.outcomes import Outcome, RunStatus
from shared.domain.records import RunRecord
from shared.status.assessment import build, findings
from shared.status.history import LastRun, last_runs, recent_records
from shared.status.inventory import (
    Flag,
    Inventory,
    Unreadable,
    VaultListing,
    expiry_state,
)
from shared.status.status_html import render

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
NS = "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration"
SUB = "deb67ae7-ffb0-4d9e-a3e1-986964950dc2"
KV1 = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1"
CS = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/cloudServices/"

TP_OLD = "A4C123B1612DD272D1371C17149D439536B3216F"  # web-tls v-old, expires in 20 days
TP_NEW = "DAEEB975729FAE923D5A4FD12AABFE228F219E9C"  # web-tls v-new, the desired one
TP_CLIENT = "DBA41ECCCC3FC1626E53A13043B026C48BBF33FE"  # client-auth, expired
TP_SPARE = "FF9243A8F506B40928B5B7A767C76FB008F86BEB"  # spare, referenced by nobody
PACKAGE = "https://acct.blob.core.windows.net/p/x.cspkg"
TP_NOWHERE = "2EA68EF786E4D3CEA27D26934B484E73CF575DCA"  # no version of anything


def version(vid: str, thumbprint: str, name: str, expires: datetime) -> CertificateVersion:
    return CertificateVersion(
        version=vid,
        thumbprint=thumbprint,
        secret_id=secret(name, vid),
        enabled=True,
        not_before=expires - timedelta(days=365),
        expires=expires,
        created=expires - timedelta(days=365),
    )


def secret(name: str, vid: str) -> str:
    return f"https://kv1.vault.azure.net/secrets/{name}/{vid}"


def cert(name: str, *versions: CertificateVersion) -> Certificate:
    return Certificate(
        vault_id=KV1,
        vault_url="https://kv1.vault.azure.net/",
        name=name,
        versions=versions,
        current_version=versions[-1].version,
    )


OLD = version("vold", TP_OLD, "web-tls", NOW + timedelta(days=20))
NEW = version("vnew", TP_NEW, "web-tls", NOW + timedelta(days=300))
WEB = cert("web-tls", OLD, NEW)
CLIENT = cert("client-auth", version("vcli", TP_CLIENT, "client-auth", NOW - timedelta(days=1)))
SPARE = cert("spare", version("vspare", TP_SPARE, "spare", NOW + timedelta(days=90)))
VAULT = VaultListing(KV1, ("web-tls", "client-auth", "spare"))
CERTS: dict[tuple[str, str], Certificate | Unreadable] = {
    (KV1.lower(), c.name): c for c in (WEB, CLIENT, SPARE)
}


def cscfg(**roles: str) -> str:
    """``role="SslCert:THUMBPRINT,Other:THUMBPRINT"`` per role."""
    parts = [f'<ServiceConfiguration serviceName="svc" xmlns="{NS}">']
    for role, certs in roles.items():
        entries = "".join(
            f'<Certificate name="{n}" thumbprint="{t}" thumbprintAlgorithm="sha1"/>'
            for n, t in (pair.split(":") for pair in certs.split(",") if pair)
        )
        parts.append(f'<Role name="{role}"><Instances count="1"/><Certificates>{entries}'
                     "</Certificates></Role>")
    return "".join(parts) + "</ServiceConfiguration>"


def service(
    name: str,
    configuration: str,
    *urls: str,
    tags: dict[str, str] | None = None,
) -> CloudServiceSnapshot:
    return CloudServiceSnapshot(
        id=CS + name,
        name=name,
        location="westus",
        tags={PACKAGE_TAG: PACKAGE} if tags is None else tags,
        configuration=configuration,
        secrets=(SecretGroup(KV1, urls),) if urls else (),
        provisioning_state="Succeeded",
        upgrade_mode="Auto",
    )


def rows(inventory: Inventory) -> list[tuple[Any, ...]]:
    """(service, role, cscfg name, certificate, version, expiry, desired, drift) per use."""
    return [
        (s.name, u.role, u.cscfg_name, u.certificate, u.version, u.expiry, u.desired_version,
         u.drift)
        for s in inventory.services
        for u in s.certificates
    ]


@dataclass(frozen=True)
class Case:
    services: tuple[CloudServiceSnapshot, ...]
    rows: list[tuple[Any, ...]]
    orphans: list[tuple[str, str, str]] = field(default_factory=list)  # service, role, tp
    unused: list[str] = field(default_factory=lambda: ["client-auth", "spare"])
    problems: list[str] = field(default_factory=list)  # substrings of row/service problems
    certs: dict[tuple[str, str], Certificate | Unreadable] = field(default_factory=lambda: CERTS)
    vaults: tuple[VaultListing, ...] = (VAULT,)


CASES = {
    "converged: both roles on the desired version": Case(
        (service("cs1", cscfg(Web=f"SslCert:{TP_NEW}", Work=f"SslCert:{TP_NEW}"),
                 secret("web-tls", "vnew")),),
        [("cs1", "Web", "SslCert", "web-tls", "vnew", "ok", "vnew", False),
         ("cs1", "Work", "SslCert", "web-tls", "vnew", "ok", "vnew", False)],
    ),
    "drift: on an older version that expires within 30 days": Case(
        # The cscfg may write the thumbprint in lower case.
        (service("cs1", cscfg(Web=f"SslCert:{TP_OLD.lower()}"), secret("web-tls", "vold")),),
        [("cs1", "Web", "SslCert", "web-tls", "vold", "soon", "vnew", True)],
    ),
    "expired certificate with no valid version: drift unknown": Case(
        (service("cs1", cscfg(Web=f"Client:{TP_CLIENT}"), secret("client-auth", "vcli")),),
        [("cs1", "Web", "Client", "client-auth", "vcli", "expired", None, None)],
        unused=["spare", "web-tls"],
        problems=["no enabled version of 'client-auth' is valid now"],
    ),
    "thumbprint of no certificate in the vault: an orphan, not a row": Case(
        (service("cs1", cscfg(Web=f"SslCert:{TP_NEW},Legacy:{TP_NOWHERE}"),
                 secret("web-tls", "vnew")),),
        [("cs1", "Web", "SslCert", "web-tls", "vnew", "ok", "vnew", False)],
        orphans=[("cs1", "Web", TP_NOWHERE)],
    ),
    "referenced in osProfile but named by no cscfg entry: a row without role": Case(
        (service("cs1", cscfg(Web=f"SslCert:{TP_NEW}"), secret("web-tls", "vnew"),
                 secret("client-auth", "vcli")),),
        [("cs1", "Web", "SslCert", "web-tls", "vnew", "ok", "vnew", False),
         ("cs1", None, None, "client-auth", "vcli", "expired", None, None)],
        unused=["spare"],
        problems=["no enabled version of 'client-auth' is valid now"],
    ),
    "a version of a certificate osProfile does not name is found, not orphaned": Case(
        (service("cs1", cscfg(Web=f"SslCert:{TP_NEW},Spare:{TP_SPARE}"),
                 secret("web-tls", "vnew")),),
        [("cs1", "Web", "SslCert", "web-tls", "vnew", "ok", "vnew", False),
         ("cs1", "Web", "Spare", "spare", "vspare", "ok", "vspare", False)],
        unused=["client-auth"],
    ),
    "unreadable certificate: rows say so instead of orphaning": Case(
        (service("cs1", cscfg(Web=f"SslCert:{TP_NEW}"), secret("web-tls", "vnew")),),
        [("cs1", "Web", "SslCert", None, None, "unknown", None, None),
         ("cs1", None, None, "web-tls", "vnew", "unknown", None, None)],
        certs={**CERTS, (KV1.lower(), "web-tls"): Unreadable("403 Forbidden")},
        problems=["cannot tell which certificate this is: 403 Forbidden", "403 Forbidden"],
    ),
    "vault listing failed: an unmatched thumbprint is not called an orphan": Case(
        (service("cs1", cscfg(Web=f"SslCert:{TP_NEW},Legacy:{TP_NOWHERE}"),
                 secret("web-tls", "vnew")),),
        [("cs1", "Web", "SslCert", "web-tls", "vnew", "ok", "vnew", False),
         ("cs1", "Web", "Legacy", None, None, "unknown", None, None)],
        certs={(KV1.lower(), "web-tls"): WEB},
        vaults=(VaultListing(KV1, error="listing failed: 429"),),
        unused=[],
        problems=["listing failed: 429"],
    ),
    "certificate deleted from the vault: its thumbprint is an orphan": Case(
        (service("cs1", cscfg(Web=f"SslCert:{TP_NEW},Legacy:{TP_NOWHERE}"),
                 secret("web-tls", "vnew"), secret("legacy", "vleg")),),
        [("cs1", "Web", "SslCert", "web-tls", "vnew", "ok", "vnew", False),
         ("cs1", None, None, "legacy", "vleg", "unknown", None, None)],
        orphans=[("cs1", "Web", TP_NOWHERE)],
        certs={**CERTS, (KV1.lower(), "legacy"): Unreadable("no such certificate", missing=True)},
        problems=["no such certificate"],
    ),
    "secret version deleted from the vault": Case(
        (service("cs1", cscfg(Web=""), secret("web-tls", "vgone")),),
        [("cs1", None, None, "web-tls", "vgone", "unknown", None, None)],
        problems=["version 'vgone' of 'web-tls' is not in the vault"],
    ),
    "no certificates at all: the service is still listed": Case(
        (service("cs1", cscfg(Web="")),),
        [],
        unused=[],
        vaults=(),
    ),
    "malformed cscfg: a service problem": Case(
        (service("cs1", "<not-xml", secret("web-tls", "vnew")),),
        [("cs1", None, None, "web-tls", "vnew", "ok", "vnew", False)],
        problems=["the cscfg cannot be read"],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_build(case: Case) -> None:
    result = build(case.services, case.certs, case.vaults, {}, NOW)

    assert rows(result) == case.rows
    assert [(o.service_id.rsplit("/", 1)[-1], o.role, o.thumbprint) for o in result.orphans] == (
        case.orphans
    )
    assert [u.certificate for u in result.unused] == case.unused
    problems = [u.problem for s in result.services for u in s.certificates if u.problem]
    problems += [s.problem for s in result.services if s.problem] + list(result.problems)
    for wanted in case.problems:
        assert any(wanted in p for p in problems), (wanted, problems)
    if not case.problems:
        assert problems == []
    assert [s.name for s in result.services] == [s.name for s in case.services]


MANAGEMENT = {
    "tagged": ({PACKAGE_TAG: PACKAGE}, True, "tagged"),
    "no package tag": ({}, False, f"no '{PACKAGE_TAG}' tag"),
    "opted out wins": ({PACKAGE_TAG: PACKAGE, OPT_OUT_TAG: "Off"}, False, "opted out"),
}


@pytest.mark.parametrize(("tags", "managed", "reason"), MANAGEMENT.values(), ids=MANAGEMENT.keys())
def test_managed_and_why(tags: dict[str, str], managed: bool, reason: str) -> None:
    (status,) = build([service("cs1", cscfg(Web=""), tags=tags)], {}, [], {}, NOW).services
    assert status.managed is managed
    assert reason in status.reason
    assert "blob.core" not in status.reason  # tag values are never shown


EXPIRY = {
    "unknown": (None, "unknown"),
    "already expired": (NOW - timedelta(seconds=1), "expired"),
    "expires this instant": (NOW, "expired"),
    "within 30 days": (NOW + timedelta(days=29, hours=23), "soon"),
    "30 days out": (NOW + timedelta(days=30), "ok"),
}


@pytest.mark.parametrize(("expires", "state"), EXPIRY.values(), ids=EXPIRY.keys())
def test_expiry_state(expires: datetime | None, state: str) -> None:
    assert expiry_state(expires, NOW) == state


def record(run_id: str, *outcomes: tuple[str, str], certificate: str = "web-tls") -> dict[str, Any]:
    return {
        "id": run_id,
        "started": run_id,
        "status": "done",
        "vault": KV1,
        "certificate": certificate,
        "services": [{"cloudService": CS + s, "outcome": o, "message": ""} for s, o in outcomes],
    }


class Store:
    """The run-record store as the history module sees it, counting downloads."""

    def __init__(self, *records: dict[str, Any]) -> None:
        self.records = {r["id"]: r for r in records}
        self.loaded: list[str] = []

    def record_ids(self) -> list[str]:
        return sorted(self.records, reverse=True)

    def load_record(self, record_id: str) -> RunRecord:
        self.loaded.append(record_id)
        return RunRecord.from_json(self.records[record_id])


STORE = (
    record("20260401T000000Z-a", ("cs1", "rotated"), ("cs2", "noop")),
    record("20260402T000000Z-b", ("cs1", "failed")),
    record("20260403T000000Z-c", ("cs3", "rotated"), certificate="client-auth"),
)
LOOKUPS = {
    "newest result per service wins": ("cs1", "web-tls", "failed", 2),
    "older run when the newest did not touch it": ("cs2", "web-tls", "noop", 3),
    "keyed by certificate too": ("cs3", "client-auth", "rotated", 1),
    "never ran: scans everything": ("cs9", "web-tls", None, 3),
}


@pytest.mark.parametrize(("name", "cert_name", "outcome", "read"), LOOKUPS.values(),
                         ids=LOOKUPS.keys())
def test_last_run_reads_only_as_far_as_needed(
    name: str, cert_name: str, outcome: str | None, read: int
) -> None:
    store = Store(*STORE)
    key = ((CS + name).lower(), KV1.lower(), cert_name)
    found = last_runs(recent_records(store, limit=10), [key])
    assert (found[key].outcome if key in found else None) == outcome
    assert len(store.loaded) == read


def test_recent_records_filters_by_service_and_bounds_reads() -> None:
    store = Store(*STORE)
    assert [r.id for r in recent_records(store, limit=5, service_id=(CS + "CS1").lower())] == [
        "20260402T000000Z-b",
        "20260401T000000Z-a",
    ]
    bounded = Store(*STORE)
    assert list(recent_records(bounded, limit=5, service_id=CS + "cs1", scan=1)) == []
    assert bounded.loaded == ["20260403T000000Z-c"]


def test_status_row_carries_its_last_run() -> None:
    run = LastRun(
        "r1", "2026-04-30T00:00:00", RunStatus.DONE, Outcome.ROTATED, "now on version vnew"
    )
    svc = service("cs1", cscfg(Web=f"SslCert:{TP_NEW}"), secret("web-tls", "vnew"))
    key = ((CS + "cs1").lower(), KV1.lower(), "web-tls")
    result = build([svc], CERTS, [VAULT], {key: run}, NOW)
    assert result.services[0].certificates[0].last_run == run
    assert result.to_json()["services"][0]["certificates"][0]["lastRun"]["outcome"] == "rotated"


def test_html_escapes_everything_and_highlights_expiry() -> None:
    evil = "<script>alert(1)</script>"
    svc = service(evil, cscfg(**{"Web": f"SslCert:{TP_OLD}", "Work": f"Client:{TP_CLIENT}"}),
                  secret("web-tls", "vold"), secret("client-auth", "vcli"))
    page = render(build([svc], CERTS, [VAULT], {}, NOW))

    assert evil not in page and "&lt;script&gt;" in page
    assert "<script" not in page.lower()
    soon, gone = (NOW + timedelta(days=20)).date(), (NOW - timedelta(days=1)).date()
    assert f'<span class="nw">{soon.isoformat()}</span>' in page  # a date never wraps
    assert f'<span class="nw">{gone.isoformat()}</span>' in page
    assert 'data-attention="expired expiring problem drift"' in page
    assert '<span class="badge b-expired">expired</span>' in page


def _flagged(**changes: Any) -> CloudServiceSnapshot:
    return replace(
        service("svc", cscfg(Web=f"SslCert:{TP_NEW}"), secret("web-tls", "vnew")), **changes
    )


def _run(outcome: str) -> dict[tuple[str, str, str], LastRun]:
    key = ((CS + "svc").lower(), KV1.lower(), "web-tls")
    last = LastRun(
        "20260501T000000Z-a", "2026-05-01T00:00:00", RunStatus.DONE, Outcome(outcome), "boom"
    )
    return {key: last}


FLAGS: dict[str, tuple[CloudServiceSnapshot, dict[Any, LastRun], list[Flag]]] = {
    "healthy": (_flagged(), {}, []),
    "Azure left it Failed": (_flagged(provisioning_state="Failed"), {}, [Flag.FAILED]),
    "last run failed": (_flagged(), _run("failed"), [Flag.RUN_FAILED]),
    "last run rolled back": (_flagged(), _run("rolled-back"), [Flag.RUN_FAILED]),
    "last run rotated": (_flagged(), _run("rotated"), []),
    "untagged": (_flagged(tags={}), {}, [Flag.UNMANAGED]),
    "opted out is a choice, not a flag": (_flagged(tags={OPT_OUT_TAG: "off"}), {}, []),
    "on an old version that expires soon": (
        service("svc", cscfg(Web=f"SslCert:{TP_OLD}"), secret("web-tls", "vold")),
        {},
        [Flag.EXPIRING, Flag.DRIFT],
    ),
}


@pytest.mark.parametrize(("svc", "runs", "flags"), FLAGS.values(), ids=FLAGS.keys())
def test_flags_and_summary(
    svc: CloudServiceSnapshot, runs: dict[Any, LastRun], flags: list[Flag]
) -> None:
    found = build([svc], CERTS, [VAULT], runs, NOW)
    (status,) = found.services
    assert list(status.flags()) == flags
    doc = found.to_json()
    assert doc["services"][0]["attention"] == [f.value for f in flags]
    assert doc["services"][0]["resourceGroup"] == "rg"
    assert {k: v for k, v in doc["summary"].items() if v and k != "services"} == (
        {f.value: 1 for f in flags} | ({"attention": 1} if flags else {})
    )
    assert bool(findings(found)) == bool(flags)


def test_urgency_order_and_check_thresholds() -> None:
    healthy = replace(_flagged(), id=CS + "a-ok", name="a-ok")
    failed = replace(_flagged(provisioning_state="Failed"), id=CS + "z-failed", name="z-failed")
    expiring = replace(
        service("m-soon", cscfg(Web=f"SslCert:{TP_OLD}"), secret("web-tls", "vold")),
        tags={PACKAGE_TAG: PACKAGE},
    )
    found = build([healthy, expiring, failed], CERTS, [VAULT], {}, NOW)
    assert [s.name for s in found.by_urgency()] == ["z-failed", "m-soon", "a-ok"]
    assert findings(found) == ["rg/z-failed: failed", "rg/m-soon: expiring, drift"]
    assert findings(found, expiring_days=10, ignore={Flag.DRIFT, Flag.FAILED}) == []
    assert findings(found, expiring_days=21, ignore={Flag.DRIFT}) == [
        "rg/z-failed: failed", "rg/m-soon: expiring"
    ]



def test_problems_found_while_gathering_are_listed_first() -> None:
    listing = VaultListing(KV1, error="403 Forbidden")
    result = build([], {}, [listing], {}, NOW, ["run records: storage unreachable"])
    assert result.problems == ("run records: storage unreachable", f"vault {KV1}: 403 Forbidden")
