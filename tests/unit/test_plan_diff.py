"""The plan's cscfg diff shows changed certificates only; no setting value ever."""

from __future__ import annotations

from shared.domain import cscfg
from shared.domain.plan_diff import redacted_diff

OLD, NEW = "A4C123B1612DD272D1371C17149D439536B3216F", "DAEEB975729FAE923D5A4FD12AABFE228F219E9C"
NS = "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration"
SECRETS = ("sv=2024&amp;sig=SECRETSIG%3D", "AccountKey=c2VjcmV0a2V5", "Password=hunter2")


def config(thumbprint: str, *, marker: str = "") -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ServiceConfiguration serviceName="cs" xmlns="{NS}">
  <Role name="WebRole1">
    <ConfigurationSettings>
      <Setting name="BackupSas" value="https://b.blob.core.windows.net/c?{SECRETS[0]}" />
      <Setting name="Storage" value="DefaultEndpointsProtocol=https;{SECRETS[1]}" />
      <Setting name="CertThumb" value="{SECRETS[2]};thumb={thumbprint}{marker}" />
    </ConfigurationSettings>
    <Certificates>
      <Certificate name="SslCert" thumbprint="{thumbprint}" thumbprintAlgorithm="sha1" />
      <Certificate name="Other" thumbprint="{"B" * 40}" thumbprintAlgorithm="sha1" />
    </Certificates>
  </Role>
</ServiceConfiguration>
"""


def test_only_the_changed_certificate_shows_and_no_setting_value() -> None:
    before = config(OLD)
    after = cscfg.rewrite(before, {OLD: NEW})
    diff = redacted_diff(before, after)
    assert diff.splitlines() == [
        "--- cscfg (deployed)",
        "+++ cscfg (planned)",
        "@@ Role WebRole1 @@",
        f'-<Certificate name="SslCert" thumbprint="{OLD}" thumbprintAlgorithm="sha1" />',
        f'+<Certificate name="SslCert" thumbprint="{NEW}" thumbprintAlgorithm="sha1" />',
    ]


def test_a_rewritten_setting_shows_its_thumbprint_change_and_nothing_else() -> None:
    before = config(OLD)
    after = cscfg.rewrite(before, {OLD: NEW}, rewrite_settings=True)
    diff = redacted_diff(before, after)
    assert f'-<Setting name="CertThumb" value="<redacted>" /> (thumbprint {OLD})' in diff
    assert f'+<Setting name="CertThumb" value="<redacted>" /> (thumbprint {NEW})' in diff
    for secret in (*SECRETS, "hunter2", "SECRETSIG", "BackupSas", "Storage"):
        assert secret not in diff


def test_no_change_no_diff() -> None:
    assert redacted_diff(config(OLD), config(OLD)) == ""
