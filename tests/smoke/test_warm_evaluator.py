"""The warm lm-eval process: one interpreter for many runs, a failed run reported, a dead one replaced."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from gate.evaluate import WarmEvaluator

pytestmark = pytest.mark.slow


def _config(path: Path, tasks_dir: Path) -> Path:
    path.write_text(json.dumps({"tasks_dir": str(tasks_dir), "base_url": "http://127.0.0.1:9", "jobs": []}))
    return path


def test_one_warm_process_serves_many_runs_reports_a_failed_one_and_is_replaced_when_it_dies(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    with WarmEvaluator(log_dir=tmp_path / "logs") as evaluator:
        run = {"extra_env": {"TQDM_DISABLE": "1"}, "on_line": lines.append, "timeout": 600.0}
        ok = evaluator.run(_config(tmp_path / "ok.json", tmp_path), log_path=tmp_path / "a.log", **run)
        assert ok.returncode == 0
        bad = evaluator.run(
            _config(tmp_path / "bad.json", tmp_path / "missing"), log_path=tmp_path / "b.log", **run
        )
        assert bad.returncode == 1 and "missing" in bad.tail
        assert evaluator.starts == 1  # the failed run did not end the process
        process = evaluator._child.process
        assert process is not None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        again = evaluator.run(_config(tmp_path / "ok2.json", tmp_path), log_path=tmp_path / "c.log", **run)
        assert again.returncode == 0 and evaluator.starts == 2
    assert evaluator._child.process is None
