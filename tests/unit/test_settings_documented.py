"""Every setting the app reads is documented exactly once (a settings-table row in docs/),
and every setting docs/configuration.md documents is one the app reads. No I/O beyond
reading the repository's own files."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from emulators.appsettings import ROOT, settings_read_by_the_app

# Read by the app, set by the platform (never by an operator), with where that is said.
SET_BY_THE_PLATFORM = {
    "WEBSITE_OWNER_NAME": "App Service: the app's subscription (ROTATION_SUBSCRIPTIONS' default)",
    "IDENTITY_ENDPOINT": "App Service managed identity",
    "IDENTITY_HEADER": "App Service managed identity",
    "IDENTITY_SERVER_THUMBPRINT": "Service Fabric only; checked to be absent",
    "AZURE_SUBSCRIPTION_ID": "local stack and tools: ROTATION_SUBSCRIPTIONS' fallback",
    "AzureWebJobsStorage__blobServiceUri": "infra: the default of ROTATION_STORAGE_URL",
}


def documented_rows(folder: Path = ROOT / "docs") -> Counter[str]:
    """Setting names in the first cell of a table row, over every page in docs/."""
    found: Counter[str] = Counter()
    for page in sorted(folder.glob("*.md")):
        for line in page.read_text().splitlines():
            if line.startswith("| `"):
                found.update(re.findall(r"`([A-Za-z][A-Za-z0-9_]+)`", line.split("|")[1]))
    return found


def test_every_setting_the_app_reads_is_documented_exactly_once() -> None:
    rows = documented_rows()
    wanted = settings_read_by_the_app() - set(SET_BY_THE_PLATFORM)
    missing = sorted(s for s in wanted if rows[s] == 0)
    twice = sorted(s for s in wanted if rows[s] > 1)
    assert not missing, f"document these in docs/configuration.md: {missing}"
    assert not twice, f"documented more than once in docs/: {twice}"


def test_every_documented_setting_is_read() -> None:
    page = ROOT / "docs" / "configuration.md"
    table = page.read_text().split("Settings (app settings):", 1)[1]
    names = {
        name
        for line in table.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`([A-Za-z][A-Za-z0-9_]+)`", line.split("|")[1])
    }
    assert names, "the settings table of docs/configuration.md was not found"
    assert not names - settings_read_by_the_app(), "documented, but nothing reads them"


SETTING_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|AzureWebJobs\w+|AzureFunctionsJobHost\w+")


def test_no_page_of_docs_documents_a_setting_nothing_reads() -> None:
    """The same check over every page's table rows (not only configuration.md's settings
    table): a setting-shaped name (``UPPER_CASE``, ``AzureWebJobs…``) in a row's first cell
    must be one the app reads."""
    stale = sorted(n for n in documented_rows() if SETTING_NAME.fullmatch(n)
                   and n not in settings_read_by_the_app())
    assert not stale, f"documented in docs/, but nothing reads them: {stale}"
