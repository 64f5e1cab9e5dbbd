"""The per-service journal: what write is in flight on a cloud service, and how to undo it.

An update of a cloud service can outlive the invocation that sent it (the SDK follows it
for minutes; Functions time out, hosts recycle, processes die). So before the PUT the
executor writes an entry into the service's lock blob (under the lease), and adds the
operation's continuation token as soon as Azure accepted the PUT. Whoever next holds the
lease (the next event, the reconcile timer, ``GET /api/rotations/{id}``) finds the entry
and finishes the work: follows the same operation instead of sending a second PUT, walks
the remaining update domains of a ``Manual`` service, verifies, and records the outcome in
the run that started it. An entry without a token means nobody heard Azure accept the PUT
(the process died between sending it and hearing back, or the answer was lost, timed out
or was a 5xx: ``unconfirmed`` says which): the service itself then tells whether the PUT
landed, and only a service shown untouched lets the entry go.

The entry also holds what the service ran before (cscfg and ``osProfile.secrets``), which
is what ``ROTATION_ROLLBACK`` restores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.domain.model import SecretGroup


@dataclass(frozen=True)
class Pending:
    run_id: str
    kind: str  # update: the rotation; rollback: restoring ``previous_*`` after a failure
    vault_id: str
    certificate: str
    version: str  # the certificate version being rolled out
    package_url: str  # blob URL without SAS; a fresh SAS is minted for every PUT
    expect_thumbprints: tuple[str, ...]  # what the cscfg must hold when the write is done
    expect_secrets: tuple[str, ...]  # secret URLs osProfile must hold when it is done
    previous_configuration: str
    previous_secrets: tuple[SecretGroup, ...]
    submitted: str  # ISO time the PUT was sent
    operation_id: str | None = None
    continuation_token: str | None = None  # of the PUT or of the current domain walk
    walking: int | None = None  # Manual mode: the update domain being walked (token is its)
    next_update_domain: int | None = None  # Manual mode: None until the PUT succeeded
    failure: str | None = None  # rollback: the platform error that caused it
    unconfirmed: str | None = None  # why the PUT has no token: what Azure answered, if anything
    settling_since: str | None = None  # ISO time the model was seen applied: instances settle

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "kind": self.kind,
            "vault": self.vault_id,
            "certificate": self.certificate,
            "version": self.version,
            "package": self.package_url,
            "expectThumbprints": list(self.expect_thumbprints),
            "expectSecrets": list(self.expect_secrets),
            "previousConfiguration": self.previous_configuration,
            "previousSecrets": [
                {"sourceVault": g.source_vault_id, "certificateUrls": list(g.certificate_urls)}
                for g in self.previous_secrets
            ],
            "submitted": self.submitted,
            "operationId": self.operation_id,
            "continuationToken": self.continuation_token,
            "walking": self.walking,
            "nextUpdateDomain": self.next_update_domain,
            "failure": self.failure,
            "unconfirmed": self.unconfirmed,
            "settlingSince": self.settling_since,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pending:
        return cls(
            run_id=str(data["runId"]),
            kind=str(data["kind"]),
            vault_id=str(data["vault"]),
            certificate=str(data["certificate"]),
            version=str(data["version"]),
            package_url=str(data["package"]),
            expect_thumbprints=tuple(data["expectThumbprints"]),
            expect_secrets=tuple(data["expectSecrets"]),
            previous_configuration=str(data["previousConfiguration"]),
            previous_secrets=tuple(
                SecretGroup(g["sourceVault"], tuple(g["certificateUrls"]))
                for g in data["previousSecrets"]
            ),
            submitted=str(data["submitted"]),
            operation_id=data.get("operationId"),
            continuation_token=data.get("continuationToken"),
            walking=data.get("walking"),
            next_update_domain=data.get("nextUpdateDomain"),
            failure=data.get("failure"),
            unconfirmed=data.get("unconfirmed"),
            settling_since=data.get("settlingSince"),
        )
