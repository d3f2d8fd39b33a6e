"""SIGKILL ``gate release`` during publishing: no tag ever names a partial or unsigned artifact.

These run without vLLM: the run directory's adapter already has a signed bundle in
``--out`` (built from the same real files, signed with the release key), so
``gate release`` resumes at publishing, the step under test. The same kills with
every real gate in front are in test_pipeline.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gate.bundle import SIGNATURE
from gate.contract import Contract
from gate.errors import GateFailure
from gate.resources import default_contract
from gate.signing import TrustPolicy
from gate.verify import verify_bundle
from tests.fixtures.registry import DockerRegistry
from tests.release.conftest import BundleFactory, KeyPair


def _run_dir_for(bundle: Path, root: Path) -> Path:
    """A run directory whose adapter is exactly the bundle's adapter files."""
    (root / "adapter").mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(bundle / name, root / "adapter" / name)
    shutil.copyfile(bundle / "gate" / "run.json", root / "run.json")
    return root


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _release(run: Path, target: str, key: Path, out: Path, events: Path) -> list[str]:
    return [
        sys.executable, "-m", "gate", "release", "--run", str(run), "--contract", "smollm2", "--to", target,
        "--sign-key", str(key), "--out", str(out), "--events", str(events), "--json",
    ]  # fmt: skip


def _kill_at(argv: list[str], events: Path, step: str, env: dict[str, str]) -> None:
    with open(events.with_suffix(".out"), "wb") as sink:
        proc = subprocess.Popen(
            argv, env={**env, "GATE_TESTONLY_PAUSE_AFTER": step}, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while not any(
            step in (e["event"], f"{e['event']}:{e.get('index')}", f"{e['event']}:{e.get('gate')}")
            for e in _events(events)
        ):
            if proc.poll() is not None:
                pytest.fail(f"exited early: {events.with_suffix('.out').read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"never reached {step}")
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    ("step", "manifest_there"),
    [("publish.blob:3", False), ("publish.manifest", True), ("publish.referrer", True)],
    ids=["mid-upload", "after-manifest-before-signature", "before-tag-moves"],
)
def test_sigkill_while_publishing_leaves_the_tag_on_the_last_complete_signed_release(
    step: str,
    manifest_there: bool,
    make_bundle: BundleFactory,
    registry_env: DockerRegistry,
    release_keys: dict[str, KeyPair],
    tmp_path: Path,
) -> None:
    docker_registry = registry_env  # credentials in this process too, for the in-process verification
    repo = "faults/" + step.replace(".", "-").replace(":", "-")
    env = {**os.environ, **docker_registry.env()}
    key = release_keys["release"]
    # v1: an earlier complete, signed release under the same tag.
    old = make_bundle(seed=101)
    old_run = _run_dir_for(old, tmp_path / "old-run")
    done = subprocess.run(
        _release(old_run, docker_registry.ref(repo, "v1"), key.private, old, tmp_path / "old.jsonl"),
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    old_digest = json.loads(done.stdout)["published"]["digest"]

    # The new release is killed at `step`.
    new = make_bundle(seed=102)
    run = _run_dir_for(new, tmp_path / "run")
    events = tmp_path / "events.jsonl"
    argv = _release(run, docker_registry.ref(repo, "v1"), key.private, new, events)
    _kill_at(argv, events, step, env)
    tagged = docker_registry.manifest(repo, "v1")
    assert tagged is not None and tagged[0] == old_digest  # the tag never moved to the new artifact
    policy = TrustPolicy(method="key", public_key=key.public)
    contract_sha = Contract.from_yaml(default_contract()).sha256
    assert verify_bundle(
        docker_registry.ref(repo, "v1"), policy, expected_contract_sha256=contract_sha
    ).digest == (old_digest)
    new_digest = next(
        e["digest"] for e in _events(events) if e["event"] == "publish.blob" and e["index"] == 1
    )
    assert new_digest  # (the config blob; the manifest digest is only known from the re-run)

    put = [e["digest"] for e in _events(events) if e["event"] == "publish.manifest"]
    assert bool(put) == manifest_there
    if step == "publish.manifest":
        # The untagged manifest is there by digest but unsigned: verification refuses it.
        assert docker_registry.manifest(repo, put[0]) is not None
        with pytest.raises(GateFailure, match="no signature referrer"):
            verify_bundle(
                docker_registry.ref(repo, digest=put[0]), policy, expected_contract_sha256=contract_sha
            )

    # Re-running the same command completes, and only then does the tag move.
    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    result = json.loads(rerun.stdout)
    assert result["resumed"] is True and result["released"] is True
    assert docker_registry.manifest(repo, result["published"]["digest"]) is not None
    tagged = docker_registry.manifest(repo, "v1")
    assert tagged is not None and tagged[0] == result["published"]["digest"] != old_digest
    assert (
        verify_bundle(docker_registry.ref(repo, "v1"), policy, expected_contract_sha256=contract_sha).digest
        == (result["published"]["digest"])
    )


def test_sigkill_after_signing_leaves_nothing_published_and_a_rerun_publishes(
    make_bundle: BundleFactory,
    docker_registry: DockerRegistry,
    release_keys: dict[str, KeyPair],
    tmp_path: Path,
) -> None:
    # The signed bundle is in place (signing is the last thing before publishing); kill as publishing starts.
    bundle = make_bundle(seed=103)
    run = _run_dir_for(bundle, tmp_path / "run")
    repo = "faults/after-sign"
    env = {**os.environ, **docker_registry.env()}
    events = tmp_path / "events.jsonl"
    argv = _release(run, docker_registry.ref(repo, "v1"), release_keys["release"].private, bundle, events)
    _kill_at(argv, events, "gate.start:publish", env)
    assert (bundle / SIGNATURE).is_file()
    assert repo not in docker_registry.repositories()
    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "v1" in docker_registry.tags(repo)
