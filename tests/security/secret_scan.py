"""The suite's secret scan: no SAS signature, access token or private key in any log line.

Theory of operation: ``tests/conftest.py`` installs :class:`ScanningHandler` on the root
logger when pytest starts, so every record of the test process (the product's loggers at
DEBUG, everything else that propagates at INFO and above, exceptions included) is scanned
as it is emitted; captured stdout/stderr of every test is scanned from its report; and at
the end of the session every ``*.log`` file under the session's temporary folder (the
stacks' Functions host, emulators and Azurite, and any host a test started) is scanned.
Lines are scanned as they stream by and never kept; only findings are, already redacted,
so the failure report cannot itself leak what it found.

What counts as a secret is :data:`RULES`; the stack's own keys (function keys, the
identity header) are added as literals by the fixture that starts a stack.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

_B64 = "A-Za-z0-9+/"


def _private_der(blob: str) -> bool:
    """Whether base64 ``blob`` starts a DER SEQUENCE whose first element is an INTEGER.

    PKCS#12 (PFX, version 3), PKCS#8 and PKCS#1/SEC1 private keys (version 0 or 1) start so;
    an X.509 certificate or a public key starts with a SEQUENCE inside the SEQUENCE and is
    public, so it does not count. Encrypted PKCS#8 is caught by its PEM header.
    """
    try:
        head = base64.b64decode(blob[:16])
    except (binascii.Error, ValueError):
        return False
    if len(head) < 6 or head[0] != 0x30:
        return False
    length = head[1]
    offset = 2 if length < 0x80 else 2 + (length & 0x7F)
    return offset < len(head) and head[offset] == 0x02


@dataclass(frozen=True)
class Rule:
    kind: str
    pattern: re.Pattern[str]
    confirm: Callable[[str], bool] = lambda _match: True


RULES: tuple[Rule, ...] = (
    # A SAS signature, also inside a URL-encoded URL; azure-core's redaction writes REDACTED.
    Rule(
        "SAS signature",
        re.compile(
            r"(?:(?<![A-Za-z0-9])|(?<=%26))sig(?:=|%3D)(?!REDACTED)"
            r"(?:[A-Za-z0-9+/=_-]|%[0-9A-F]{2}){16,}",
            re.IGNORECASE,
        ),
    ),
    Rule("access token (JWT)", re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*", re.ASCII)),
    Rule(
        "bearer token",
        re.compile(r"\bBearer\s+(?!REDACTED\b)[A-Za-z0-9\-._~+/]{20,}=*", re.IGNORECASE),
    ),
    Rule("private key (PEM)", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    Rule(
        "private key or PFX (base64 DER)",
        re.compile(rf"(?<![{_B64}])MI[{_B64}]{{62,}}={{0,2}}"),
        _private_der,
    ),
)


@dataclass(frozen=True)
class Finding:
    source: str  # a log file, or the log record / captured output of a test
    line: int | None  # 1-based line number in a file
    kinds: tuple[str, ...]
    redacted: str


@dataclass
class Scanner:
    """Scans lines for :data:`RULES` and for known secret values; keeps redacted findings."""

    literals: set[str] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)
    lines: int = 0
    files: int = 0

    def add_literals(self, values: Iterable[str]) -> None:
        """Secret values known exactly (e.g. a stack's function keys); short ones are ignored
        because they would match by accident."""
        self.literals.update(v for v in values if len(v) >= 16)

    def kinds(self, line: str) -> tuple[str, ...]:
        found = [
            rule.kind
            for rule in RULES
            if any(rule.confirm(m.group()) for m in rule.pattern.finditer(line))
        ]
        if any(value in line for value in self.literals):
            found.append("known secret (stack key)")
        return tuple(found)

    def redact(self, line: str, limit: int = 240) -> str:
        """``line`` with every secret replaced by ``[REDACTED <kind>]``, then clipped."""
        for rule in RULES:
            line = rule.pattern.sub(_redactor(rule), line)
        for value in self.literals:
            line = line.replace(value, "[REDACTED known secret (stack key)]")
        return line if len(line) <= limit else line[:limit] + "..."

    def scan(self, source: str, text: str, line: int | None = None) -> None:
        """Scan every line of ``text`` (a log record, captured output, or one file line)."""
        for piece in text.splitlines():
            self.lines += 1
            kinds = self.kinds(piece)
            if kinds:
                self.findings.append(Finding(source, line, kinds, self.redact(piece)))

    def scan_files(self, folder: Path, pattern: str = "*.log") -> None:
        for path in sorted(folder.rglob(pattern)):
            try:
                with path.open(encoding="utf-8", errors="replace") as lines:
                    for number, line in enumerate(lines, start=1):
                        self.scan(str(path), line, number)
            except (IsADirectoryError, FileNotFoundError):
                continue  # a folder named *.log, or a file removed while we looked
            self.files += 1

    def report(self) -> list[str]:
        """The findings as report lines (already redacted)."""
        return [
            f"{f.source}{'' if f.line is None else f':{f.line}'}: "
            f"{', '.join(f.kinds)}: {f.redacted}"
            for f in self.findings
        ]


def _redactor(rule: Rule) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return f"[REDACTED {rule.kind}]" if rule.confirm(match.group()) else match.group()

    return replace


class ScanningHandler(logging.Handler):
    """A root-logger handler that scans every record it sees and keeps nothing else."""

    def __init__(self, scanner: Scanner) -> None:
        super().__init__(logging.DEBUG)
        self.scanner = scanner
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a broken record must not hide the others
            self.handleError(record)
            return
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
        self.scanner.scan(f"{record.name} record during {test or 'the session'}", text)
