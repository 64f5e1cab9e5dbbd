"""The package tag's strict parse: every rule, one row each, in both directions."""

from __future__ import annotations

import pytest

from shared.domain.errors import ConfigError
from shared.domain.packages import (
    ContainerRef,
    PackageRefused,
    PackageRule,
    parse_containers,
    parse_package,
)

AZURE = ContainerRef.parse("https://contoso.blob.core.windows.net/packages", "core.windows.net")
LOCAL = ContainerRef.parse("https://127.0.0.1:41000/devstoreaccount1/packages", "core.windows.net")
ALLOWED = (AZURE, LOCAL)

ACCEPTED = [
    ("https://contoso.blob.core.windows.net/packages/web.cspkg", AZURE, "web.cspkg"),
    ("https://CONTOSO.blob.core.windows.net/packages/v2/web.cspkg", AZURE, "v2/web.cspkg"),
    ("https://contoso.blob.core.windows.net/packages/my%20app.cspkg", AZURE, "my app.cspkg"),
    ("https://127.0.0.1:41000/devstoreaccount1/packages/a.cspkg", LOCAL, "a.cspkg"),
]

REFUSED = [
    ("http://contoso.blob.core.windows.net/packages/web.cspkg", PackageRule.HTTPS),
    ("ftp://x/y", PackageRule.HTTPS),
    ("https://evil.example/packages/web.cspkg", PackageRule.CONTAINER),
    ("https://127.0.0.1:47777/devstoreaccount1/packages/web.cspkg", PackageRule.CONTAINER),
    ("https://localhost:41000/devstoreaccount1/packages/web.cspkg", PackageRule.CONTAINER),
    ("https://contoso.blob.core.windows.net:8443/packages/web.cspkg", PackageRule.CONTAINER),
    ("https://contoso.blob.core.windows.net@evil.example/packages/x", PackageRule.USERINFO),
    ("https://user:pa55@contoso.blob.core.windows.net/packages/x", PackageRule.USERINFO),
    ("https://contoso.blob.core.windows.net/packages/web.cspkg?sv=1&sig=x", PackageRule.QUERY),
    ("https://contoso.blob.core.windows.net/packages/web.cspkg%3Fsig=x", PackageRule.ENCODED),
    ("https://contoso.blob.core.windows.net/packages%2Fother/web.cspkg", PackageRule.ENCODED),
    ("https://contoso.blob.core.windows.net/packages/a%40b", PackageRule.ENCODED),
    ("https://contoso.blob.core.windows.net/packages/a%252e", PackageRule.ENCODED),
    ("https://contoso.blob.core.windows.net/packages/web.cspkg#frag", PackageRule.FRAGMENT),
    ("https://contoso.blob.core.windows.net/packages/../other/web.cspkg", PackageRule.SEGMENTS),
    ("https://contoso.blob.core.windows.net/packages/./web.cspkg", PackageRule.SEGMENTS),
    ("https://contoso.blob.core.windows.net/packages/%2e%2e/other/x", PackageRule.SEGMENTS),
    ("https://contoso.blob.core.windows.net/packages//web.cspkg", PackageRule.SEGMENTS),
    ("https://contoso.blob.core.windows.net/packages", PackageRule.BLOB),
    ("https://contoso.blob.core.windows.net/packages/", PackageRule.BLOB),
    ("https://contoso.blob.core.windows.net/other/web.cspkg", PackageRule.CONTAINER),
    ("https://contoso.blob.core.windows.net/packagesx/web.cspkg", PackageRule.CONTAINER),
    ("https://127.0.0.1:41000/devstoreaccount1/other/web.cspkg", PackageRule.CONTAINER),
    ("https://contoso.blob.core.windows.net/packages/we b.cspkg", PackageRule.CHARACTERS),
    ("https://contoso.blob.core.windows.net/packages/web\n.cspkg", PackageRule.CHARACTERS),
    ("", PackageRule.HTTPS),
]


@pytest.mark.parametrize(("tag", "container", "blob"), ACCEPTED)
def test_accepted_tags_name_their_container_and_blob(
    tag: str, container: ContainerRef, blob: str
) -> None:
    ref = parse_package(tag, ALLOWED)
    assert ref.container == container
    assert ref.blob_name == blob
    assert ref.url.startswith(container.url + "/") and "?" not in ref.url


@pytest.mark.parametrize(("tag", "rule"), REFUSED)
def test_refused_tags_name_the_rule_and_never_echo_the_tag(tag: str, rule: PackageRule) -> None:
    with pytest.raises(PackageRefused) as caught:
        parse_package(tag, ALLOWED)
    assert caught.value.rule is rule
    assert rule.value in str(caught.value)
    assert "pa55" not in str(caught.value) and "evil" not in str(caught.value)


def test_nothing_is_accepted_without_an_allow_list() -> None:
    with pytest.raises(PackageRefused) as caught:
        parse_package(ACCEPTED[0][0], ())
    assert caught.value.rule is PackageRule.CONTAINER


CONTAINERS_BAD = [
    "http://contoso.blob.core.windows.net/packages",
    "https://contoso.blob.core.windows.net/packages?sig=x",
    "https://user@contoso.blob.core.windows.net/packages",
    "https://contoso.blob.core.windows.net",
    "https://contoso.blob.core.windows.net/a/b",
    "https://contoso.example.com/packages",
    "https://contoso.blob.core.windows.net:444/packages",
    "https://contoso.blob.core.windows.net/Pack_ages",
    "https://127.0.0.1:41000/packages",
]


@pytest.mark.parametrize("entry", CONTAINERS_BAD)
def test_bad_allow_list_entries_fail_at_start_up(entry: str) -> None:
    with pytest.raises(ConfigError, match="PACKAGE_CONTAINERS"):
        parse_containers(entry, "core.windows.net")


def test_allow_list_parses_sovereign_suffixes_and_drops_duplicates() -> None:
    china = "https://app.blob.core.chinacloudapi.cn/pkgs"
    found = parse_containers(f"{china}, {china}/", "core.chinacloudapi.cn")
    assert [c.url for c in found] == [china]
    assert found[0].account == "app" and found[0].account_url == "https://app.blob.core.chinacloudapi.cn"
    assert LOCAL.account_url == "https://127.0.0.1:41000/devstoreaccount1"
