"""Table-driven tests for the CLI's own input handling: the env file and its arguments.

The commands themselves run end to end in tests/e2e/test_cli.py; here only what needs no
Azure: which env-file lines are read how, and which arguments are refused before any
settings are built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from certrotate import names
from certrotate.cli import build_parser, main
from certrotate.envfile import load_env_file
from certrotate.exits import BadInput, outcome_line
from certrotate.output import table
from shared.domain.errors import NotFound
from shared.domain.model import CloudServiceSnapshot, SecretGroup

ENV_FILES = {
    "stack.env as written": ("A=1\nB=https://x:1/y\n", {"A": "1", "B": "https://x:1/y"}),
    "export prefix, comments, blanks": ("# c\n\nexport A=1\n  B=2  \n", {"A": "1", "B": "2"}),
    "one pair of quotes removed": ("A=\"x y\"\nB='z'\nC=\"'\n", {"A": "x y", "B": "z", "C": '"\''}),
    "values keep '=' and '#'": ("A=b=c#d\n", {"A": "b=c#d"}),
    "empty value": ("A=\n", {"A": ""}),
}


@pytest.mark.parametrize(("text", "values"), ENV_FILES.values(), ids=ENV_FILES.keys())
def test_env_file(tmp_path: Path, text: str, values: dict[str, str]) -> None:
    path = tmp_path / "stack.env"
    path.write_text(text)
    assert load_env_file(path) == values


BAD_ENV = {
    "not an assignment": ("A=1\nsecret-value-here\n", "line 2 is not KEY=VALUE"),
    "bad key": ("1A=x\n", "line 1 is not KEY=VALUE"),
    "missing file": (None, "cannot read it"),
}


@pytest.mark.parametrize(("text", "message"), BAD_ENV.values(), ids=BAD_ENV.keys())
def test_bad_env_file_names_the_line_not_its_content(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "stack.env"
    if text is not None:
        path.write_text(text)
    with pytest.raises(BadInput) as caught:
        load_env_file(path)
    assert message in str(caught.value)
    assert "secret-value-here" not in str(caught.value)


BAD_ARGUMENTS = {
    "no command": [],
    "unknown command": ["frobnicate"],
    "plan without vault": ["plan", "--certificate", "c"],
    "history limit out of range": ["history", "--limit", "0"],
    "rotate wait out of range": ["rotate", "--vault", "v", "--certificate", "c", "--wait", "-1"],
    "adopt without package": ["adopt", "--cloud-service", "x"],
}


@pytest.mark.parametrize("argv", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2


def test_options_before_and_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--json", "--env-file", "a.env", "status"])
    after = parser.parse_args(["status", "--json", "--env-file", "a.env"])
    neither = parser.parse_args(["status"])
    assert (before.json, before.env_file) == (after.json, after.env_file) == (True, Path("a.env"))
    assert (neither.json, neither.env_file) == (False, None)


def test_bad_env_file_exits_2_before_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.env"
    path.write_text("nonsense\n")
    assert main(["status", "--env-file", str(path)]) == 2
    assert "line 1 is not KEY=VALUE" in capsys.readouterr().err


def test_table_aligns_columns() -> None:
    assert table(("A", "LONGER"), [["xyz", "1"], ["q", ""]]).splitlines() == [
        "A    LONGER",
        "xyz  1",
        "q",
    ]


SUB = "/subscriptions/deb67ae7-ffb0-4d9e-a3e1-986964950dc2"


def _snapshot(rg: str, name: str, vault_rg: str = "rg-kv", vault: str = "kv1") -> Any:
    vault_id = f"{SUB}/resourceGroups/{vault_rg}/providers/Microsoft.KeyVault/vaults/{vault}"
    return CloudServiceSnapshot(
        id=f"{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/cloudServices/{name}",
        name=name, location="westus", tags={}, configuration="",
        secrets=(SecretGroup(vault_id, ()),), provisioning_state="Succeeded", upgrade_mode="Auto",
    )


SERVICES = [_snapshot("rg-a", "cs-web"), _snapshot("rg-b", "cs-web"), _snapshot("rg-a", "cs-api")]
RESOLVED = {
    "unique name": ("cs-api", "rg-a/providers/Microsoft.Compute/cloudServices/cs-api"),
    "any casing": ("CS-API", "rg-a/providers/Microsoft.Compute/cloudServices/cs-api"),
    "rg/name": ("rg-b/cs-web", "rg-b/providers/Microsoft.Compute/cloudServices/cs-web"),
}


@pytest.mark.parametrize(("text", "suffix"), RESOLVED.values(), ids=RESOLVED.keys())
def test_short_service_names(text: str, suffix: str) -> None:
    assert names.service_id(text, SERVICES) == f"{SUB}/resourceGroups/{suffix}"


def test_names_that_are_ambiguous_missing_or_ids() -> None:
    with pytest.raises(names.Ambiguous, match="rg-a/cs-web; rg-b/cs-web"):
        names.service_id("cs-web", SERVICES)
    with pytest.raises(NotFound, match="cloud service 'CS-Gone' not found"):
        names.service_id("CS-Gone", SERVICES)
    assert names.vault_id("KV1", SERVICES).endswith("/resourceGroups/rg-kv/providers/"
                                                    "Microsoft.KeyVault/vaults/kv1")
    assert names.service_id(SERVICES[0].id.upper(), []) == SERVICES[0].id.upper()
    with pytest.raises(ValueError, match="neither an ARM id nor a vault name"):
        names.check_form("vault", "kv 1")


OUTCOME_LINES = {
    "a failure is never 'done'": ("done", ["rotated", "failed", "rotated"],
                                  "finished: 1 failed, 2 rotated"),
    "still updating": ("updating", ["updating"], "still updating: 1 updating"),
    "no service": ("done", [], "finished: no service"),
}


@pytest.mark.parametrize(("status", "outcomes", "line"), OUTCOME_LINES.values(),
                         ids=OUTCOME_LINES.keys())
def test_outcome_line(status: str, outcomes: list[str], line: str) -> None:
    assert outcome_line(status, outcomes) == line


def test_version_and_exit_codes_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["--version"])
    assert caught.value.code == 0 and capsys.readouterr().out.startswith("certrotate ")
    assert "3 status --check found something" in build_parser().format_help().replace("\n", " ")
