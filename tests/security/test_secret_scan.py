"""The secret scan itself: each kind of secret is caught and redacted, look-alikes are not,
and the hooks in tests/conftest.py are active (a run that leaks fails, a clean one passes).

The secrets are real (a SAS signed by azure-storage-blob, an HS256 JWT, keys and a PFX from
cryptography), made at run time, so nothing secret-looking sits in the repository.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from azure.storage.blob import BlobSasPermissions, generate_blob_sas
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.conftest import SCAN
from tests.security.secret_scan import RULES, Scanner, ScanningHandler

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scan-test")])
CERT = (
    x509.CertificateBuilder()
    .subject_name(NAME)
    .issuer_name(NAME)
    .public_key(RSA_KEY.public_key())
    .serial_number(1)
    .not_valid_before(NOW)
    .not_valid_after(NOW + dt.timedelta(days=1))
    .sign(RSA_KEY, hashes.SHA256())
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt() -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"aud": "https://vault.azure.net", "oid": "x"}).encode())
    signature = hmac.new(b"k" * 32, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(signature)}"


def sas_url() -> str:
    sas = generate_blob_sas(
        "devstoreaccount1",
        "packages",
        "app.cspkg",
        account_key=b64(os.urandom(64)),
        permission=BlobSasPermissions(read=True),
        expiry=NOW + dt.timedelta(hours=4),
    )
    return f"https://127.0.0.1:10000/devstoreaccount1/packages/app.cspkg?{sas}"


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def der(key: PrivateKey, fmt: serialization.PrivateFormat) -> str:
    return b64(key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption()))


def pem_header(fmt: serialization.PrivateFormat, encryption: bool = False) -> str:
    algorithm = (
        serialization.BestAvailableEncryption(b"pw") if encryption
        else serialization.NoEncryption()
    )
    pem = RSA_KEY.private_bytes(serialization.Encoding.PEM, fmt, algorithm).decode()
    return pem.splitlines()[0]


PFX = b64(pkcs12.serialize_key_and_certificates(None, RSA_KEY, CERT, None,
                                                  serialization.NoEncryption()))
PKCS8 = serialization.PrivateFormat.PKCS8
SAS = sas_url()
TOKEN = jwt()
OPAQUE = b64url(os.urandom(30))

# (id, log line, kinds it must be reported as)
LEAKS: list[tuple[str, str, set[str]]] = [
    ("sas-url", f"uploading to {SAS}", {"SAS signature"}),
    ("sas-url-encoded", f"packageUrl={quote(SAS, safe='')}", {"SAS signature"}),
    ("sas-in-json", json.dumps({"packageUrl": SAS}), {"SAS signature"}),
    ("jwt", f"token {TOKEN} for ARM", {"access token (JWT)"}),
    ("jwt-in-json", json.dumps({"access_token": TOKEN}), {"access token (JWT)"}),
    (
        "authorization-header",
        f"{{'Authorization': 'Bearer {TOKEN}'}}",
        {"access token (JWT)", "bearer token"},
    ),
    ("opaque-bearer", f"Authorization: Bearer {OPAQUE}", {"bearer token"}),
    ("pem-pkcs8", pem_header(PKCS8), {"private key (PEM)"}),
    ("pem-rsa", pem_header(serialization.PrivateFormat.TraditionalOpenSSL), {"private key (PEM)"}),
    ("pem-encrypted", pem_header(PKCS8, encryption=True), {"private key (PEM)"}),
    ("pfx", json.dumps({"value": PFX, "contentType": "application/x-pkcs12"}),
     {"private key or PFX (base64 DER)"}),
    ("pfx-prefix", f"secret {PFX[:80]}...", {"private key or PFX (base64 DER)"}),
    ("pkcs8-der", der(RSA_KEY, PKCS8), {"private key or PFX (base64 DER)"}),
    ("pkcs1-der", der(RSA_KEY, serialization.PrivateFormat.TraditionalOpenSSL),
     {"private key or PFX (base64 DER)"}),
    ("ec-pkcs8-der", der(EC_KEY, PKCS8), {"private key or PFX (base64 DER)"}),
]

# (id, log line) that must not be reported
CLEAN: list[tuple[str, str]] = [
    ("sas-redacted", SAS.split("sig=")[0] + "sig=REDACTED"),
    ("azure-core-headers", "'Authorization': 'REDACTED', 'x-ms-client-request-id': 'abc'"),
    (
        "challenge",
        'WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/'
        '72f988bf-86f1-41af-91ab-2d7cd011db47", resource="https://vault.azure.net"',
    ),
    ("bearer-redacted", "Authorization: Bearer REDACTED"),
    ("short-sig", "sig=abc"),
    ("other-param", "design=0123456789abcdefghijklmnop"),
    ("certificate", f"cer {b64(CERT.public_bytes(serialization.Encoding.DER))}"),
    (
        "public-key",
        b64(RSA_KEY.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)),
    ),
    ("thumbprint", "plan WebRole1/SslCert 400D77CF9A8D814ED749A207D167BF67614B5434 -> 68A2"),
    ("secret-url", "osProfile + https://127.0.0.1:40971/secrets/web-tls/17aeb5f728c648548c9e97"),
    ("run-id", "run 20261122T020920Z-28968c3c1093 finished: cs4bceaa325a=rotated"),
]


@pytest.mark.parametrize(("line", "kinds"), [pytest.param(*c[1:], id=c[0]) for c in LEAKS])
def test_each_kind_of_secret_is_caught_and_redacted(line: str, kinds: set[str]) -> None:
    scanner = Scanner()
    scanner.scan("case", line)

    (finding,) = scanner.findings
    assert set(finding.kinds) == kinds
    assert "[REDACTED " in finding.redacted
    for secret in (SAS.split("sig=")[1], TOKEN, OPAQUE, PFX[:80], "PRIVATE KEY-----"):
        assert secret not in finding.redacted
    assert scanner.report()[0].startswith("case: ")


@pytest.mark.parametrize("line", [pytest.param(c[1], id=c[0]) for c in CLEAN])
def test_look_alikes_are_not_reported(line: str) -> None:
    scanner = Scanner()
    scanner.scan("case", line)

    assert scanner.findings == []
    assert scanner.lines == 1


def test_known_stack_keys_are_caught_but_short_values_ignored() -> None:
    scanner = Scanner()
    key = b64url(os.urandom(24))
    scanner.add_literals([key, "short"])
    scanner.scan("case", f"POST /runtime/webhooks/eventgrid?code={key}")
    scanner.scan("case", "a short word")

    (finding,) = scanner.findings
    assert finding.kinds == ("known secret (stack key)",)
    assert key not in finding.redacted


def test_files_are_scanned_line_by_line(tmp_path: Path) -> None:
    planted = tmp_path / "logs" / "functions.log"
    planted.parent.mkdir()
    planted.write_text(f"fine\nminted {SAS}\nfine\n")
    (tmp_path / "notes.txt").write_text(f"not a log: {SAS}\n")
    scanner = Scanner()
    try:
        scanner.scan_files(tmp_path)
    finally:
        planted.unlink()  # below this session's basetemp: the suite's own scan reads it

    assert (scanner.files, scanner.lines) == (1, 3)
    (finding,) = scanner.findings
    assert (Path(finding.source).name, finding.line) == ("functions.log", 2)


def test_handler_scans_messages_and_tracebacks() -> None:
    scanner = Scanner()
    logger = logging.getLogger("certrotate.scan-test.private")
    handler = ScanningHandler(scanner)
    logger.addHandler(handler)
    logger.propagate = False  # the planted leak must not reach the suite's own scan
    try:
        try:
            raise RuntimeError(f"PUT failed for {SAS}")
        except RuntimeError:
            logger.exception("update failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    assert [f.kinds for f in scanner.findings] == [("SAS signature",)]
    assert scanner.findings[0].source.startswith("certrotate.scan-test.private record during ")


def test_every_rule_has_a_leak_case() -> None:
    covered = {kind for _, _, kinds in LEAKS for kind in kinds}
    assert covered == {rule.kind for rule in RULES}


def test_the_suite_scans_its_own_log_records() -> None:
    """The hooks of tests/conftest.py are live in this very session."""
    root = logging.getLogger()
    assert any(isinstance(h, ScanningHandler) and h.scanner is SCAN for h in root.handlers)
    assert root.getEffectiveLevel() <= logging.INFO
    assert logging.getLogger("certrotate.anything").isEnabledFor(logging.DEBUG)
    before = SCAN.lines
    logging.getLogger("certrotate.scan-test").debug("a clean line\nand a second one")
    assert SCAN.lines == before + 2


INNER_CONFTEST = """
from tests.conftest import (
    _scanned_log_folder, pytest_configure, pytest_runtest_logreport, pytest_sessionfinish,
    pytest_terminal_summary, pytest_unconfigure,
)
"""
INNER_LEAKS = f"""
import logging

def test_logs_a_token():
    logging.getLogger("certrotate.inner").debug("Authorization: Bearer {OPAQUE}")

def test_prints_a_sas():
    print("minted {SAS}")

def test_a_host_logs_a_key(tmp_path):
    (tmp_path / "functions.log").write_text("{pem_header(PKCS8)}\\n")
"""
INNER_CLEAN = """
import logging

def test_logs_nothing_secret(tmp_path):
    logging.getLogger("certrotate.inner").info("run 1 finished: cs1=rotated")
    (tmp_path / "functions.log").write_text("POST /api/rotations -> 202\\n")
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.Pytester]:
    """A separate pytest run with this suite's scan hooks (in a subprocess)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(INNER_CONFTEST)
    yield pytester
    # The planted log files sit below this session's basetemp: remove them before the
    # outer scan reads them.
    for planted in pytester.path.rglob("*.log"):
        planted.unlink()


def test_a_run_that_leaks_fails_with_a_redacted_report(inner: pytest.Pytester) -> None:
    inner.makepyfile(INNER_LEAKS)
    result = inner.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    assert "secret scan FAILED" in output
    assert "certrotate.inner record during " in output and "::test_logs_a_token" in output
    assert "[REDACTED bearer token]" in output
    assert "Captured stdout call of" in output and "[REDACTED SAS signature]" in output
    assert "functions.log:1: private key (PEM)" in output
    for secret in (OPAQUE, SAS.split("sig=")[1], "BEGIN PRIVATE KEY"):
        assert secret not in output


def test_a_clean_run_passes(inner: pytest.Pytester) -> None:
    inner.makepyfile(INNER_CLEAN)
    result = inner.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["secret scan: * lines scanned (1 log files *): 0 with secrets"])
