"""Every fixture taken from a public repository names its source (repo, path, commit)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "azure"


def test_every_azure_fixture_file_is_in_the_provenance() -> None:
    provenance = (FIXTURES / "PROVENANCE.md").read_text()
    files = [f for f in FIXTURES.rglob("*") if f.is_file() and f.name != "PROVENANCE.md"]
    assert files
    missing = [str(f.relative_to(FIXTURES)) for f in files if f.name not in provenance]
    assert not missing, f"add these to tests/fixtures/azure/PROVENANCE.md: {missing}"
