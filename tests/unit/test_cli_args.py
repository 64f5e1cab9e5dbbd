"""Table-driven tests for the CLI's own input handling: the env file and its arguments.

The commands themselves run end to end in tests/e2e/test_cli.py; here only what needs no
Azure: which env-file lines are read how, and which arguments are refused before any
settings are built."""

from __future__ import annotations

from pathlib import Path

import pytest

from certrotate.cli import BadInput, build_parser, load_env_file, main, table

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
