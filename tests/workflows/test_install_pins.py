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

from tests.workflows.runner import (
    RunnerImage,
    StepResult,
    WorkflowRunner,
    action_defaults,
    load_yaml,
    workflow_call_defaults,
)

ROOT = Path(__file__).resolve().parents[2]
RELEASE_PATH = ROOT / ".github" / "workflows" / "release.yml"
ACTION_PATH = ROOT / ".github" / "actions" / "verify-bundle"
ACTION = load_yaml(ACTION_PATH / "action.yml")
# Where each writes gate's virtual environment under RUNNER_TEMP.
_WHERE = {"workflow": "gate-venv", "action": "gate-verify-venv"}


def _image(**extra: str) -> RunnerImage:
    """A fresh runner whose only warm caches are this machine's uv and pip download caches, with
    uv offline: what a pin resolves to must come from the pin, never from an index lookup."""
    caches = {
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv"),
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip"),
    }
    return RunnerImage.bare(UV_OFFLINE="1", **caches, **extra)


def _install(where: str, tmp_path: Path, pins: dict[str, str], **extra: str) -> tuple[StepResult, Path]:
    """Run setup-python and the install step of the release job or of the verify action."""
    steps = {"Set up Python", "install"}
    with WorkflowRunner(tmp_path / "runner", image=_image(**extra)) as runner:
        if where == "workflow":
            inputs = {"contract": "c.yaml", "to": "oci://h/r:t", **pins}
            job = runner.call(RELEASE_PATH, inputs=inputs, only={"release": steps}).jobs["release"]
        else:
            job = runner.action(
                ACTION_PATH, with_=action_defaults(ACTION) | {"install": "true"} | pins, only=steps
            )
    assert job.root is not None
    return job.step("install"), job.root / "temp" / _WHERE[where]


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


def _annotation(step: StepResult) -> str:
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
    for defaults in (workflow_call_defaults(load_yaml(RELEASE_PATH)), action_defaults(ACTION)):
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
