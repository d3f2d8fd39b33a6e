"""The workflows and the composite action validate against GitHub's schemas, and follow the safety rules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.workflows.runner import load_yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / ".github" / "actions" / "verify-bundle" / "action.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
_PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    # The vendored schemas ship inside check-jsonschema: no network.
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if "runs" in doc:
        return list(doc["runs"]["steps"])
    return [s for job in doc["jobs"].values() for s in job.get("steps", [])]


def test_both_workflows_exist() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "release.yml"]


def test_workflows_validate_against_the_github_workflow_schema() -> None:
    done = check_jsonschema("vendor.github-workflows", *WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout


def test_verify_action_validates_against_the_github_action_schema() -> None:
    done = check_jsonschema("vendor.github-actions", ACTION)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    # Proves the check is not vacuous: a misspelt key and a missing runs-on are refused.
    text = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    broken = tmp_path / "release.yml"
    broken.write_text(text.replace("runs-on:", "runs_on:", 1))
    done = check_jsonschema("vendor.github-workflows", broken)
    assert done.returncode == 1
    assert "runs_on" in done.stdout


def test_schema_check_rejects_a_composite_step_without_shell(tmp_path: Path) -> None:
    text = ACTION.read_text()
    broken = tmp_path / "action.yml"
    broken.write_text(text.replace("      shell: bash\n", "", 1))
    assert check_jsonschema("vendor.github-actions", broken).returncode == 1


def test_release_workflow_is_reusable_with_the_permissions_keyless_signing_needs() -> None:
    wf = load_yaml(ROOT / ".github" / "workflows" / "release.yml")
    call = wf["on"]["workflow_call"]
    assert {"spec", "run-dir", "contract", "to", "runner", "server", "sign-method"} <= set(call["inputs"])
    assert call["inputs"]["sign-method"]["default"] == "sigstore"
    for perms in (wf["permissions"], wf["jobs"]["release"]["permissions"]):
        assert perms["id-token"] == "write"
        assert perms["packages"] == "write"
    assert "inputs.runner" in wf["jobs"]["release"]["runs-on"]


def test_ci_calls_make_test() -> None:
    wf = load_yaml(ROOT / ".github" / "workflows" / "ci.yml")
    runs = [s.get("run", "") for s in wf["jobs"]["test"]["steps"]]
    assert any(r.endswith("make test") for r in runs)
    assert wf["permissions"] == {"contents": "read"}


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(path: Path) -> None:
    uses = [s["uses"] for s in _steps(load_yaml(path)) if "uses" in s]
    assert uses, "expected at least one action"
    unpinned = [u for u in uses if not _PINNED.match(u)]
    assert unpinned == []


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: p.name)
def test_no_expression_is_interpolated_into_a_shell_script(path: Path) -> None:
    # Inputs (branch names, refs, paths) reach scripts through env:, where they cannot inject code.
    offenders = [s.get("name") for s in _steps(load_yaml(path)) if "${{" in s.get("run", "")]
    assert offenders == []


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: p.name)
def test_shell_steps_parse_as_bash(path: Path, tmp_path: Path) -> None:
    for i, step in enumerate(s for s in _steps(load_yaml(path)) if "run" in s):
        script = tmp_path / f"step{i}.sh"
        script.write_text(step["run"])
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{step.get('name')}: {done.stderr}"
