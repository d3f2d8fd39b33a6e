"""The release workflow and the verify action install exactly the gate their caller pins.

PyPI's ``gate`` is another project: a default that resolves a bare name from an index would run a
stranger's code in a job holding ``id-token: write``. The forms a caller can pin are a release of
the ``lora-gate`` distribution, a git ref of gate's repository, or a path; the workflow refuses to
install anything without a pin, and the action's default is its own checkout (the ref the caller
wrote in ``uses:``). Each form is installed for real by the step's own script, with uv offline
(``UV_OFFLINE=1``: dependencies come from the warm uv cache, nothing is looked up in an index),
and the installed distribution's PEP 610 ``direct_url.json`` says where gate came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.workflows.actions_runner import LocalRunner, action_defaults, load_yaml, workflow_call_defaults

ROOT = Path(__file__).resolve().parents[2]
RELEASE = load_yaml(ROOT / ".github" / "workflows" / "release.yml")
ACTION = load_yaml(ROOT / ".github" / "actions" / "verify-bundle" / "action.yml")
ACTION_PATH = ROOT / ".github" / "actions" / "verify-bundle"

# (the install step's steps list, its input defaults, the venv it writes under RUNNER_TEMP, extra inputs)
_WHERE: dict[str, tuple[list[dict[str, Any]], dict[str, Any], str]] = {
    "workflow": (RELEASE["jobs"]["release"]["steps"], workflow_call_defaults(RELEASE), "gate-venv"),
    "action": (ACTION["runs"]["steps"], action_defaults(ACTION), "gate-verify-venv"),
}


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A runner environment without this machine's pip/uv configuration or the dev venv."""
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "RUNNER_", "ACTIONS_", "PIP_FIND", "UV_", "GATE_", "VIRTUAL_ENV"))
    }
    env.update(PATH=os.pathsep.join(path), UV_OFFLINE="1", GITHUB_ACTION_PATH=str(ACTION_PATH))
    if "UV_CACHE_DIR" in os.environ:
        env["UV_CACHE_DIR"] = os.environ["UV_CACHE_DIR"]
    env.update(extra)
    return env


def _install(where: str, tmp_path: Path, pins: dict[str, str], **extra: str) -> tuple[Any, Path]:
    steps, defaults, venv_name = _WHERE[where]
    ws = tmp_path / "workspace"
    ws.mkdir(exist_ok=True)
    runner = LocalRunner(ws, environ=_environ(tmp_path, **extra))
    job = runner.run_steps(steps, inputs=defaults | {"install": "true"} | pins, only={"install"})
    return job.step("install"), runner.temp / venv_name


def _direct_url(venv: Path) -> dict[str, Any] | None:
    code = (
        "import importlib.metadata as m, sys\n"
        "t = m.distribution('lora-gate').read_text('direct_url.json')\n"
        "sys.stdout.write(t or 'null')\n"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    found: dict[str, Any] | None = json.loads(out.stdout)
    return found


def _annotation(step: Any) -> str:
    lines = [ln for ln in step.stdout.splitlines() if ln.startswith("::error")]
    assert len(lines) == 1, step.stdout + step.stderr
    return lines[0]


def test_the_release_workflow_installs_nothing_without_a_pin(tmp_path: Path) -> None:
    step, venv = _install("workflow", tmp_path, {})
    assert step.returncode == 2
    assert _annotation(step).startswith(
        "::error title=gate release::pin the gate to install: give exactly one"
    )
    assert not venv.exists()


def test_no_input_of_either_defaults_to_a_name_from_an_index() -> None:
    # The old free-form "pip requirement" input is gone; every pin input is empty by default.
    for _steps, defaults, _venv in _WHERE.values():
        assert "gate-package" not in defaults
        assert {defaults[k] for k in ("gate-version", "gate-git", "gate-path")} == {""}


def test_the_verify_action_installs_its_own_checkout_by_default(tmp_path: Path) -> None:
    step, venv = _install("action", tmp_path, {})
    assert step.returncode == 0, step.stdout + step.stderr
    assert _direct_url(venv) == {"url": ROOT.as_uri(), "dir_info": {}}


@pytest.mark.parametrize("where", sorted(_WHERE))
def test_a_path_pin_installs_that_tree(where: str, tmp_path: Path) -> None:
    step, venv = _install(where, tmp_path, {"gate-path": str(ROOT)})
    assert step.returncode == 0, step.stdout + step.stderr
    assert _direct_url(venv) == {"url": ROOT.as_uri(), "dir_info": {}}
    done = subprocess.run([str(venv / "bin" / "gate"), "--version"], capture_output=True, text=True)
    assert done.stdout.strip() == "gate 0.1.0"


@pytest.mark.parametrize("where", sorted(_WHERE))
def test_a_git_pin_installs_that_commit(where: str, tmp_path: Path) -> None:
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    step, venv = _install(where, tmp_path, {"gate-git": f"{ROOT.as_uri()}@{commit}"})
    assert step.returncode == 0, step.stdout + step.stderr
    found = _direct_url(venv)
    assert found is not None and found["vcs_info"]["commit_id"] == commit


@pytest.mark.parametrize("where", sorted(_WHERE))
def test_a_version_pin_installs_that_release_of_lora_gate(where: str, tmp_path: Path) -> None:
    # The "index" is a folder holding a wheel built from this checkout (no index is reachable offline).
    wheels = tmp_path / "wheels"
    subprocess.run(
        [str(Path(sys.executable).parent / "uv"), "build", "--wheel", "--offline", "-q", "-o", str(wheels)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    step, venv = _install(where, tmp_path, {"gate-version": "0.1.0"}, UV_FIND_LINKS=str(wheels))
    assert step.returncode == 0, step.stdout + step.stderr
    assert _direct_url(venv) is None  # from the index (here: the wheel folder), by exact version
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('lora-gate'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == "0.1.0"


@pytest.mark.parametrize("where", sorted(_WHERE))
@pytest.mark.parametrize(
    ("pins", "message"),
    [
        ({"gate-version": ">=0.1"}, "gate-version must be one exact version such as 0.1.0, not '>=0.1'"),
        ({"gate-version": "0.1.0 gate"}, "gate-version must be one exact version such as 0.1.0"),
        ({"gate-git": "https://github.com/o/gate"}, "gate-git must be https://github.com/OWNER/gate@REF"),
        ({"gate-path": "no/such/dir"}, "gate-path no/such/dir does not exist"),
    ],
)
def test_a_malformed_pin_is_refused_before_anything_is_installed(
    where: str, pins: dict[str, str], message: str, tmp_path: Path
) -> None:
    step, venv = _install(where, tmp_path, pins)
    assert step.returncode == 2
    assert message in _annotation(step)
    assert not venv.exists()


@pytest.mark.parametrize("where", sorted(_WHERE))
def test_two_pins_at_once_are_refused(where: str, tmp_path: Path) -> None:
    step, venv = _install(where, tmp_path, {"gate-version": "0.1.0", "gate-path": str(ROOT)})
    assert step.returncode == 2
    assert "one of gate-version, gate-git or gate-path" in _annotation(step)
    assert not venv.exists()
