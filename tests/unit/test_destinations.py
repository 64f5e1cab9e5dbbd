"""Where a token may go: the configured cloud's endpoints only (table-driven, no I/O)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shared.config import Settings
from shared.domain.destinations import Destinations, UntrustedDestination

SUB = "00000000-0000-0000-0000-000000000001"
AZURE = Settings.from_env(
    {
        "ROTATION_SUBSCRIPTIONS": SUB,
        "ROTATION_STORAGE_URL": "https://appstore.blob.core.windows.net",
        "PACKAGE_CONTAINERS": "https://pkgs.blob.core.windows.net/packages",
    }
).destinations()
LOCAL = Destinations.of(
    ["https://127.0.0.1:41000", "https://127.0.0.1:41001/devstoreaccount1"],
    "vault.azure.net",
    "core.windows.net",
    (20000, 20010),
)

CASES = [
    (AZURE, "https://management.azure.com/subscriptions/x", True),
    (AZURE, "https://kv1.vault.azure.net/certificates/c", True),
    (AZURE, "https://kv1.vault.azure.net:443/certificates/c", True),
    (AZURE, "https://pkgs.blob.core.windows.net/?restype=service", True),
    (AZURE, "https://other.blob.core.windows.net/x", True),
    (AZURE, "https://vault.azure.net/x", False),  # the suffix itself is no vault
    (AZURE, "https://kv1.vault.azure.net.evil.example/x", False),
    (AZURE, "https://evilvault.azure.net/x", False),
    (AZURE, "https://kv1.vault.azure.net:8443/x", False),
    (AZURE, "http://kv1.vault.azure.net/x", False),
    (AZURE, "https://user@kv1.vault.azure.net/x", False),
    (AZURE, "https://127.0.0.1:47777/x", False),
    (AZURE, "https://localhost/x", False),
    (LOCAL, "https://127.0.0.1:41000/anything", True),
    (LOCAL, "https://127.0.0.1:41001/devstoreaccount1/c/b", True),
    (LOCAL, "https://127.0.0.1:20000/certificates/c", True),
    (LOCAL, "https://127.0.0.1:20010/certificates/c", True),
    (LOCAL, "https://127.0.0.1:20011/certificates/c", False),
    (LOCAL, "https://127.0.0.1:47777/x", False),
    (LOCAL, "https://localhost:20001/x", False),
    (LOCAL, "https://127.0.0.1:notaport/x", False),
]


@pytest.mark.parametrize(("destinations", "url", "allowed"), CASES)
def test_tokens_go_only_to_the_clouds_endpoints(
    destinations: Destinations, url: str, allowed: bool
) -> None:
    assert destinations.allows(url) is allowed


def test_the_request_hook_refuses_before_sending_and_names_only_the_host() -> None:
    request = SimpleNamespace(http_request=SimpleNamespace(url="https://127.0.0.1:47777/p?sig=s"))
    with pytest.raises(UntrustedDestination) as caught:
        LOCAL.hook(request)
    assert "127.0.0.1:47777" in str(caught.value) and "sig" not in str(caught.value)
    LOCAL.hook(SimpleNamespace(http_request=SimpleNamespace(url="https://127.0.0.1:20001/")))
