"""A crashed or hung vLLM gives a failed smoke report and leaves no process behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from gate.serving import server_processes
from gate.smoke import run_smoke

pytestmark = pytest.mark.slow


def _port(out_dir: Path) -> int:
    [log] = sorted((out_dir / "logs").glob("vllm-*.log"))
    return int(log.stem.removeprefix("vllm-"))


def test_server_never_healthy_fails_the_server_probe_and_leaves_no_process(
    synthetic_adapter: Path, smoke_contract, base_model_dir: Path, tmp_path: Path
) -> None:
    report = run_smoke(
        synthetic_adapter,
        smoke_contract,
        base_dir=base_model_dir,
        server=None,
        out_dir=tmp_path,
        ready_timeout=3,
    )
    server = report.probe("server")
    assert server is not None and server.status == "fail"
    assert "not healthy within 3s" in server.message
    assert not report.passed and all(p.status == "skipped" for p in report.probes if p.name != "server")
    assert server_processes(_port(tmp_path)) == []


def test_server_killed_mid_probe_fails_the_report_and_leaves_no_process(
    synthetic_adapter: Path, smoke_contract, base_model_dir: Path, tmp_path: Path
) -> None:
    killed: list[int] = []

    def kill_api_server_during_chat(event: dict[str, Any]) -> None:
        if event.get("probe") == "chat" and event.get("status") == "running":
            for pid in server_processes(_port(tmp_path)):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"vllm.entrypoints.openai.api_server" in cmdline:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

    report = run_smoke(
        synthetic_adapter,
        smoke_contract,
        base_dir=base_model_dir,
        server=None,
        out_dir=tmp_path,
        on_event=kill_api_server_during_chat,
    )
    assert killed, "the API server was not found to kill"
    assert report.probe("load").passed  # type: ignore[union-attr]
    chat = report.probe("chat")
    assert chat is not None and chat.status == "error", report.summary()
    assert not report.passed
    assert report.probe("parity").status == "skipped"  # type: ignore[union-attr]
    assert "died or hung" in report.probe("parity").message  # type: ignore[union-attr]
    # The engine core outlives a killed API server unless gate sweeps the process group.
    assert server_processes(_port(tmp_path)) == []
