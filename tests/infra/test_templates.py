"""The templates as a whole: every file parses and is fully seen, parameters line up, and azd
and the hooks agree on names."""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.bicep import INFRA, ROOT, files, template

DECLARATION = re.compile(r"^\s*resource (\w+) ", re.M)


@pytest.mark.parametrize("file", files())
def test_parser_sees_every_resource(file: str) -> None:
    """checkov reads the same tree: a resource pycep drops would never be checked."""
    declared = DECLARATION.findall((INFRA / file).read_text())
    parsed = template(file).get("resources", {})
    assert len(parsed) == len(declared), f"pycep lost resources in {file}: {declared} vs {parsed}"


def test_azd_parameters_match_main_bicep() -> None:
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = template("main.bicep")["parameters"]
    assert set(mapped) == set(declared)
    for name, entry in mapped.items():
        assert re.fullmatch(r"\$\{(AZURE_ENV_NAME|AZURE_LOCATION|CERTROTATE_[A-Z_]+)(=[^}]*)?\}",
                            entry["value"]), name


def test_hook_deployments_pass_every_parameter_without_a_default() -> None:
    for file, hook in (("access.bicep", "postprovision.sh"), ("events.bicep", "postdeploy.sh")):
        text = (INFRA / "hooks" / hook).read_text()
        arguments = text.split("--parameters", 1)[1]
        passed = set(re.findall(r"^\s*(\w+)=\"", arguments, re.M))
        params = template(file)["parameters"]
        required = {name for name, p in params.items() if p["default"] is None}
        assert required <= passed <= set(params), (file, required - passed, passed - set(params))
        assert f"--template-file infra/{file}" in text


def test_azure_yaml_runs_the_hooks_on_a_flex_python_function() -> None:
    text = (ROOT / "azure.yaml").read_text()
    assert re.search(r"^services:\n  rotator:\n    project: \.\n    language: python\n"
                     r"    host: function$", text, re.M)
    hook = r"^  (\w+):\n    posix:\n      shell: sh\n      run: bash (\S+)$"
    hooks = re.findall(hook, text, re.M)
    assert dict(hooks) == {
        "preprovision": "infra/hooks/preprovision.sh",
        "postprovision": "infra/hooks/postprovision.sh",
        "postdeploy": "infra/hooks/postdeploy.sh",
        "predown": "infra/hooks/predown.sh",
    }
    assert "azd-service-name': 'rotator'" in (INFRA / "app" / "app.bicep").read_text()
