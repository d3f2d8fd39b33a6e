"""Bad input and broken toolkits: a clear error, run.json says failed, and no adapter is presented."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gate.errors import InputError, ToolError
from gate.training import load_record, train


def _spec(tmp_path: Path, default_spec_path: Path, **changes: object) -> Path:
    raw = yaml.safe_load(default_spec_path.read_text())
    raw["dataset"]["path"] = str(default_spec_path.parent / raw["dataset"]["path"])
    for key, value in changes.items():
        raw[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unknown_toolkit_is_refused_before_anything_is_written(
    tmp_path: Path, default_spec_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gate.cli import main

    out = tmp_path / "run"
    assert main(["train", str(default_spec_path), "--toolkit", "axolottl", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown toolkit 'axolottl'" in err
    assert "did you mean 'axolotl'?" in err
    assert not out.exists()


def test_malformed_row_fails_the_run_with_its_line_number(tmp_path: Path, default_spec_path: Path) -> None:
    lines = (default_spec_path.parent / "data" / "train.jsonl").read_text().splitlines()
    lines[6] = '{"messages": [{"role": "user", "content": "Capital of Peru?"}]}'
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(lines) + "\n")
    spec = _spec(tmp_path, default_spec_path, dataset={"path": str(data)})
    out = tmp_path / "run"
    with pytest.raises(InputError, match=r"bad\.jsonl:7: the last message must be the assistant's"):
        train(spec, "unsloth", out, steps=1, quiet=True)
    record = load_record(out)
    assert record.status == "failed"
    assert record.failure is not None and record.failure.stage == "input"
    assert "bad.jsonl:7" in record.failure.message
    assert not (out / "adapter").exists()


def test_override_for_unknown_toolkit_is_refused(tmp_path: Path, default_spec_path: Path) -> None:
    spec = _spec(tmp_path, default_spec_path, overrides={"unslot": {"chat_template": "chatml"}})
    with pytest.raises(InputError, match=r"overrides\.unslot: no toolkit named 'unslot'") as exc:
        train(spec, "unsloth", tmp_path / "run", steps=1, quiet=True)
    assert exc.value.hint == "did you mean 'unsloth'?"
    assert load_record(tmp_path / "run").status == "failed"


def test_non_empty_out_dir_is_never_overwritten(tmp_path: Path, default_spec_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="is not empty"):
        train(default_spec_path, "unsloth", out, steps=1, quiet=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.slow
def test_toolkit_crash_marks_the_run_failed_without_adapter(tmp_path: Path, default_spec_path: Path) -> None:
    # A real crash inside the real toolkit: an option the training script does not know.
    spec = _spec(tmp_path, default_spec_path, overrides={"unsloth": {"no_such_option": 1}})
    out = tmp_path / "run"
    with pytest.raises(ToolError, match="unsloth exited with 2"):
        train(spec, "unsloth", out, steps=1, quiet=True)
    record = load_record(out)
    assert record.status == "failed" and record.failure is not None
    assert record.failure.stage == "train"
    assert "no_such_option" in (record.failure.hint or "")
    assert not (out / "adapter").exists() and not (out / ".adapter.partial").exists()


@pytest.mark.slow
def test_toolkit_killed_mid_run_marks_the_run_failed_without_adapter(
    tmp_path: Path, default_spec_path: Path
) -> None:
    out = tmp_path / "run"
    gate = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gate",
            "train",
            str(default_spec_path),
            "--toolkit",
            "unsloth",
            "--out",
            str(out),
            "--steps",
            "50",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        victim = _wait_for_toolkit(out, timeout=600)
        os.kill(victim, signal.SIGKILL)
        # The killed toolkit is a ToolError: exit 2, like every error gate raises on purpose.
        assert gate.wait(timeout=120) == 2
    finally:
        if gate.poll() is None:
            gate.kill()
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed"
    assert "killed by signal 9" in record["failure"]["message"]
    assert not (out / "adapter").exists()


def _wait_for_toolkit(out: Path, *, timeout: float) -> int:
    """The pid of the toolkit process once it is training (its environment carries the run id)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run_id = json.loads((out / "run.json").read_text())["run_id"]
            log = (out / "train.log").read_text(errors="replace")
        except (OSError, ValueError, KeyError):
            time.sleep(1)
            continue
        if "GATE_EVENT" in log:
            marker = f"GATE_RUN_ID={run_id}".encode()
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                        return int(pid)
                except OSError:
                    continue
        time.sleep(1)
    raise AssertionError("the toolkit never started training")
