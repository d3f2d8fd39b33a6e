"""The Containerfile passes hadolint, every ignored rule is explained, and both targets run as non-root."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path: Path, *, config: Path | None = HADOLINT_CONFIG) -> subprocess.CompletedProcess[str]:
    argv = [str(HADOLINT), "--no-color"]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run([*argv, str(path)], capture_output=True, text=True, timeout=120, check=False)


def _stages(text: str) -> dict[str, str]:
    """Stage name -> the instructions of that stage."""
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.MULTILINE | re.IGNORECASE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_containerfile_passes_hadolint() -> None:
    done = hadolint(CONTAINERFILE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_hadolint_reports_a_bad_containerfile(tmp_path: Path) -> None:
    # Proves the linter really runs with this config: a floating tag and root at the end are refused.
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\nUSER root\n")
    done = hadolint(bad)
    assert done.returncode == 1
    assert "DL3007" in done.stdout  # latest tag
    assert "DL3002" in done.stdout  # last USER is root


def test_every_ignored_rule_is_explained_by_a_comment() -> None:
    config = yaml.safe_load(HADOLINT_CONFIG.read_text())
    assert set(config) <= {"ignored", "failure-threshold", "trustedRegistries", "override"}
    lines = HADOLINT_CONFIG.read_text().splitlines()
    for rule in config.get("ignored", []):
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {rule}")
        comment = []
        for line in reversed(lines[:index]):
            if not line.strip().startswith("#"):
                break
            comment.append(line)
        assert any(rule in c for c in comment), f"{rule} is ignored without a comment naming it"
        assert sum(len(c) for c in comment) > 120, f"{rule}: the comment does not explain why"


def test_no_rule_is_silenced_inline() -> None:
    assert "hadolint ignore" not in CONTAINERFILE.read_text()


def test_both_service_targets_run_as_non_root_with_a_health_check() -> None:
    stages = _stages(CONTAINERFILE.read_text())
    assert {"gate-cuda", "gate-cpu"} <= set(stages)
    for name in ("gate-cuda", "gate-cpu"):
        body = stages[name]
        users = re.findall(r"^USER\s+(\S+)", body, flags=re.MULTILINE)
        assert users and users[-1].split(":")[0] not in ("root", "0"), name
        assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[.*/health", body, flags=re.MULTILINE), name
        assert re.search(r'^CMD \["gate", "serve"\]', body, flags=re.MULTILINE), name
        # vLLM lives in its own environment built by gate.envs (`gate env build`), never in gate's venv.
        assert "set -- vllm lm-eval reference" in body, name
        assert 'env build "$@"' in body, name


def test_cuda_target_is_built_on_a_cuda_base_and_cpu_target_forces_cpu() -> None:
    text = CONTAINERFILE.read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+", text, flags=re.MULTILINE)
    stages = _stages(text)
    assert "GATE_FORCE_CPU=1" in stages["gate-cpu"]
    assert "GATE_FORCE_CPU" not in stages["gate-cuda"]
    assert "GATE_TRAINERS" in stages["gate-cuda"] and "GATE_TRAINERS" in stages["gate-cpu"]


def _healthchecks() -> dict[str, list[str]]:
    """Each service target's HEALTHCHECK command (exec form, a JSON array)."""
    found = {}
    for name, body in _stages(CONTAINERFILE.read_text()).items():
        match = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (\[.*\])\s*$", body, flags=re.MULTILINE)
        if match:
            found[name] = json.loads(match.group(1))
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_healthcheck_command_passes_against_the_real_service_and_fails_without_it(tmp_path: Path) -> None:
    from gate.proc import kill_group, spawn

    checks = _healthchecks()
    assert set(checks) == {"gate-cuda", "gate-cpu"}
    assert checks["gate-cuda"] == checks["gate-cpu"]
    argv = checks["gate-cpu"]
    assert argv[0] == "python"
    # The image's `python` is gate's venv; here it is the dev venv's.
    argv = [sys.executable, *argv[1:]]
    port = _free_port()
    env = {
        **os.environ,
        "GATE_SERVICE_PORT": str(port),
        "GATE_SERVICE_HOST": "127.0.0.1",
        "GATE_SERVICE_DATA_DIR": str(tmp_path / "data"),
        "GATE_SERVICE_WORKERS": "0",
    }
    # Nothing listens yet: exit 1, Docker's "unhealthy" (not 2, which Docker reserves).
    refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode == 1 and "Connection refused" in refused.stderr, refused.stderr
    proc = spawn(
        [str(Path(sys.executable).parent / "gate"), "serve"], env=env, log_path=tmp_path / "serve.log"
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            done = subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False)
            if done.returncode == 0:
                break
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the service never became healthy"
            time.sleep(1)
    finally:
        kill_group(proc)
