"""A real toolkit's output (the embedded default trained by the cheapest toolkit) passes the contract gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate.check import run_check
from gate.cli import main
from gate.contract import Contract


@pytest.mark.slow
def test_trained_embedded_default_passes_gate_check(
    trained_adapter_run: Path, base_model_dir: Path, default_contract_path: Path, capsys
):
    report = run_check(
        trained_adapter_run / "adapter", Contract.from_yaml(default_contract_path), base_model_dir
    )
    assert report.passed, [f.to_dict() for f in report.findings]
    # and through the CLI, given the run directory itself
    argv = ["check", str(trained_adapter_run), "--contract", "smollm2", "--base", str(base_model_dir)]
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True
