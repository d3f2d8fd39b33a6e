"""A REAL pilot of all three toolkits on CPU (the issue's Done-when test).

``gate pilot`` trains the embedded default through LLaMA-Factory, Axolotl and
Unsloth (2 steps, 2 repeats each), runs check, smoke and eval on repeat 1 of
each against the shared vLLM server, and writes the matrix. The test checks that
the matrix is complete (naming any cell without a value) and that every number
traces to a run record or gate report: it opens the named file, follows the JSON
pointer, and compares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gate.pilot import PilotMatrix, same_value, trace
from gate.training import load_record
from tests.fixtures.pilot import PILOT_EVAL_LIMIT, PILOT_REPEATS, PILOT_TOOLKITS, RealPilot

pytestmark = pytest.mark.slow


def _follow(root: Path, file: str, pointer: str) -> Any:
    """Open ``file`` and walk the JSON pointer by hand (independent of gate's own resolver)."""
    text = (root / file).read_text(encoding="utf-8")
    # Run records and reports are JSON; the user's weights file may be YAML (a superset of JSON).
    node: Any = yaml.safe_load(text) if file.endswith((".yaml", ".yml")) else json.loads(text)
    for part in [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_real_pilot_matrix_is_complete_and_every_number_traces_to_a_run_record(real_pilot: RealPilot) -> None:
    out = real_pilot.out
    matrix = PilotMatrix.from_dict(json.loads((out / "pilot.json").read_text()))
    assert real_pilot.stdout_json == matrix.to_dict()
    assert matrix.version == "1.1" and [t.toolkit for t in matrix.toolkits] == list(PILOT_TOOLKITS)

    not_applicable = sorted(
        f"{t.toolkit}/{k}" for t in matrix.toolkits for k, c in t.cells.items() if c.not_applicable
    )
    # Unsloth has no native config (its users write Python): its config rows compare nothing.
    assert not_applicable == ["unsloth/custom.native_config_keys", "unsloth/effort.native_config_lines"]
    unmeasured = [
        f"{t.toolkit}/{c.key}: {t.cells[c.key].missing if c.key in t.cells else 'no cell'}"
        for t in matrix.toolkits
        for c in matrix.criteria
        if c.key not in t.cells or (t.cells[c.key].value is None and not t.cells[c.key].not_applicable)
    ]
    assert not unmeasured, "cells without a value:\n" + "\n".join(unmeasured)
    assert matrix.complete and real_pilot.exit_code == 0

    for t in matrix.toolkits:
        for key, cell in t.cells.items():
            where = f"{t.toolkit}/{key}"
            assert cell.sources, f"{where} names no source"
            if cell.uncertainty is not None and cell.uncertainty.value is not None:
                u = cell.uncertainty
                assert same_value(trace(u, out), u.value), f"{where}: its uncertainty does not trace"
            if cell.not_applicable:
                continue
            for s in cell.sources:
                assert not Path(s.file).is_absolute() and (out / s.file).is_file(), f"{where}: {s.file}"
            if cell.derive == "value":
                s = cell.sources[0]
                assert _follow(out, s.file, s.pointer) == cell.value, f"{where} != {s.file}#{s.pointer}"
            assert same_value(trace(cell, out), cell.value), f"{where} does not trace to its sources"


def test_a_pilot_is_an_ordinary_set_of_runs_gated_on_one_server_with_one_base_scoring(
    real_pilot: RealPilot,
) -> None:
    out = real_pilot.out
    matrix = PilotMatrix.from_dict(json.loads((out / "pilot.json").read_text()))
    assert matrix.settings["eval_limit"] == PILOT_EVAL_LIMIT and matrix.settings["repeats"] == PILOT_REPEATS
    assert matrix.weights["train.wall_seconds"] == 2.0 and matrix.familiarity["unsloth"] == 0.9
    assert matrix.cell("unsloth", "familiarity").sources[0].file == "inputs/weights.yaml"  # type: ignore[union-attr]
    for tk in PILOT_TOOLKITS:
        for i in range(1, PILOT_REPEATS + 1):
            record = load_record(out / "runs" / f"{tk}-{i}")
            assert record.status == "succeeded" and record.toolkit.name == tk
            assert (out / "runs" / f"{tk}-{i}" / "adapter" / "adapter_model.safetensors").is_file()
        gates = out / "runs" / f"{tk}-1" / "gates"
        assert {p.name for p in gates.glob("*.json")} == {"check.json", "smoke.json", "eval.json"}
        report = json.loads((gates / "eval.json").read_text())
        # The base was scored once for the whole pilot and reused as every adapter's comparison.
        assert report["base_reused"] is True and report["limit"] == PILOT_EVAL_LIMIT
        assert all(m["n"] == PILOT_EVAL_LIMIT for m in report["metrics"])
        assert matrix.cell(tk, "reliability.success_rate").value == 1.0  # type: ignore[union-attr]
    for name in ("pilot.md", "pilot.html", "pilot-chart.svg"):
        assert (out / name).stat().st_size > 0
    assert "<svg" in (out / "pilot-chart.svg").read_text()
    assert set(matrix.phases) >= {
        "train.llamafactory",
        "train.axolotl",
        "train.unsloth",
        "eval.base",
        "total",
    }
