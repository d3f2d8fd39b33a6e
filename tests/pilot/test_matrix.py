"""The pilot matrix from REAL run records: every cell traced to its source, scoring, rendering, input errors.

The run records come from ``trained_adapter_run`` (the embedded default, trained
for real by the cheapest toolkit; cached across sessions), laid out as a pilot
directory with two repeats.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gate.digests import file_sha256
from gate.errors import InputError
from gate.pilot import PilotMatrix, Weights, build_matrix, render_html, render_markdown, same_value, trace
from gate.pilot._matrix import Cell, Criterion, max_abs_weight_diff
from gate.pilot._weights import DEFAULT_WEIGHTS, score
from tests.fixtures.pilot import pilot_dir_of

EVAL_KEYS = ["capitals_terse/exact_match,strip", "smollm2_mc/acc,none"]


def _build(
    root: Path,
    toolkits: list[str],
    repeats: int = 2,
    weights: Weights | None = None,
    weights_file: str | None = None,
) -> PilotMatrix:
    return build_matrix(
        root,
        toolkits=toolkits,
        repeats=repeats,
        eval_metrics=EVAL_KEYS,
        weights=weights or Weights(),
        weights_file=weights_file,
        spec={"name": "train.yaml", "sha256": "0" * 64},
        contract={"name": "smollm2-vllm", "sha256": "1" * 64},
        settings={"repeats": repeats, "steps": None, "eval_limit": None},
        phases={"train.unsloth": 1.0},
    )


@pytest.fixture
def pilot_root(trained_adapter_run: Path, tmp_path: Path) -> Path:
    return pilot_dir_of(trained_adapter_run, tmp_path / "pilot")


def test_training_cells_equal_the_run_record_and_trace_back_to_it(pilot_root: Path) -> None:
    record = json.loads((pilot_root / "runs/unsloth-1/run.json").read_text())
    m = _build(pilot_root, ["unsloth"])
    cells = m.toolkits[0].cells
    assert cells["train.wall_seconds"].value == record["wall_seconds"]
    assert cells["train.final_loss"].value == record["metrics"]["final_loss"]
    assert cells["train.peak_rss_bytes"].value == record["metrics"]["peak_rss_bytes"]
    assert cells["observability.logged_steps"].value == len(record["metrics"]["steps"])
    # Unsloth's config is gate's own JSON, not a file its users write: counted for no one.
    assert cells["effort.native_config_lines"].value is None
    assert cells["effort.native_config_lines"].not_applicable is not None
    assert cells["effort.fixes"].value == len(record["adapter"]["export_fixes"])
    assert cells["reliability.success_rate"].value == 1.0
    # Two copies of one run: identical bytes, zero drift.
    assert cells["repro.adapter_identical"].value is True
    assert cells["repro.max_weight_diff"].value == 0.0
    assert cells["repro.final_loss_diff"].value == 0.0
    env = json.loads((pilot_root / "envs/unsloth.json").read_text())
    assert cells["setup.env_build_seconds"].value == env["build_seconds"]
    assert cells["setup.env_build_seconds"].sources[0].digest == record["environment"]["lock_sha256"]
    for key, cell in cells.items():
        if cell.value is not None:
            assert same_value(trace(cell, pilot_root), cell.value), key
            assert all(not Path(s.file).is_absolute() for s in cell.sources), key


def test_cells_whose_gate_reports_are_absent_say_so_and_the_matrix_is_incomplete(pilot_root: Path) -> None:
    m = _build(pilot_root, ["unsloth"])
    smoke = m.cell("unsloth", "smoke.passed")
    assert smoke is not None and smoke.value is None
    assert smoke.missing == "no runs/unsloth-1/gates/smoke.json"
    assert not m.complete
    assert any(x.startswith("unsloth/check.errors: no runs/unsloth-1/gates/check.json") for x in m.missing)


def test_a_changed_run_record_no_longer_traces_to_the_matrix(pilot_root: Path) -> None:
    m = _build(pilot_root, ["unsloth"])
    cell = m.cell("unsloth", "train.final_loss")
    assert cell is not None
    path = pilot_root / "runs/unsloth-1/run.json"
    record = json.loads(path.read_text())
    record["metrics"]["final_loss"] += 0.5
    path.write_text(json.dumps(record))
    assert not same_value(trace(cell, pilot_root), cell.value)


def test_weight_drift_between_repeats_is_measured_on_the_real_adapter(pilot_root: Path) -> None:
    from safetensors.numpy import load_file, save_file

    weights = pilot_root / "runs/unsloth-2/adapter/adapter_model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] += np.asarray(0.25, dtype=tensors[name].dtype)
    save_file(tensors, str(weights))
    # What a second, different training run would have recorded.
    record_path = pilot_root / "runs/unsloth-2/run.json"
    record = json.loads(record_path.read_text())
    record["adapter"]["files"]["adapter_model.safetensors"]["sha256"] = file_sha256(weights)
    record_path.write_text(json.dumps(record))
    first = pilot_root / "runs/unsloth-1/adapter/adapter_model.safetensors"
    assert max_abs_weight_diff(first, weights) == pytest.approx(0.25, rel=1e-3)
    m = _build(pilot_root, ["unsloth"])
    assert m.cell("unsloth", "repro.adapter_identical").value is False  # type: ignore[union-attr]
    assert m.cell("unsloth", "repro.max_weight_diff").value == pytest.approx(0.25, rel=1e-3)  # type: ignore[union-attr]


def test_a_failed_repeat_lowers_reliability_and_a_failed_first_run_names_itself(pilot_root: Path) -> None:
    path = pilot_root / "runs/unsloth-1/run.json"
    record = json.loads(path.read_text())
    record.update(
        status="failed", failure={"stage": "train", "message": "unsloth exited with 1", "hint": None}
    )
    path.write_text(json.dumps(record))
    m = _build(pilot_root, ["unsloth"])
    assert m.cell("unsloth", "reliability.success_rate").value == 0.5  # type: ignore[union-attr]
    smoke = m.cell("unsloth", "smoke.passed")
    assert smoke is not None and smoke.missing == "run unsloth-1 failed (train: unsloth exited with 1)"
    assert m.toolkits[0].runs[0].status == "failed"


def _crit(key: str, better: str | None) -> Criterion:
    return Criterion.model_validate(
        {"key": key, "group": "training", "label": key, "unit": "s", "better": better, "description": ""}
    )


def test_scores_are_min_max_normalised_and_contributions_add_up_to_the_score() -> None:
    criteria = [_crit("train.wall_seconds", "lower"), _crit("train.tokens_per_second", "higher")]
    cells: dict[str, dict[str, Cell]] = {
        "a": {
            "train.wall_seconds": Cell(value=10.0, unit="s"),
            "train.tokens_per_second": Cell(value=50, unit="t"),
        },
        "b": {
            "train.wall_seconds": Cell(value=30.0, unit="s"),
            "train.tokens_per_second": Cell(value=100, unit="t"),
        },
        "c": {
            "train.wall_seconds": Cell(value=20.0, unit="s"),
            "train.tokens_per_second": Cell(value=None, unit="t"),
        },
    }
    weights = {"train.wall_seconds": 1.0, "train.tokens_per_second": 3.0}
    scores, unweighted = score(criteria, cells, weights, {})
    got = {s.toolkit: s for s in scores}
    assert unweighted == {}
    assert got["a"].terms["train.wall_seconds"].normalised == 1.0
    assert got["b"].terms["train.wall_seconds"].normalised == 0.0
    assert got["c"].terms["train.wall_seconds"].normalised == 0.5
    assert got["c"].terms["train.tokens_per_second"].normalised is None  # unmeasured counts 0
    assert got["a"].score == pytest.approx(25.0) and got["b"].score == pytest.approx(75.0)
    assert got["c"].score == pytest.approx(12.5)
    for s in got.values():
        assert s.score == pytest.approx(sum(t.contribution for t in s.terms.values()), abs=0.01)


def test_user_weights_and_familiarity_change_the_score_and_are_recorded(pilot_root: Path) -> None:
    (pilot_root / "inputs").mkdir()
    wfile = pilot_root / "inputs" / "weights.yaml"
    wfile.write_text("train.wall_seconds: 5\ncheck.errors: 0\nfamiliarity:\n  unsloth: 0.4\n")
    m = _build(pilot_root, ["unsloth"], weights=Weights.load(wfile), weights_file="inputs/weights.yaml")
    fam = m.cell("unsloth", "familiarity")
    assert fam is not None and fam.value == 0.4 and trace(fam, pilot_root) == 0.4
    assert m.weights["train.wall_seconds"] == 5.0 and m.weights["check.errors"] == 0.0
    assert m.weights["familiarity"] == 1.0 and m.familiarity == {"unsloth": 0.4}
    assert m.weights_source == "weights.yaml"
    assert m.default_weights["train.wall_seconds"] == DEFAULT_WEIGHTS["train.wall_seconds"]
    terms = m.scores[0].terms
    assert "check.errors" not in terms and terms["familiarity"].normalised == 0.4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train.wall_secs: 1\n", "did you mean 'train.wall_seconds'"),
        ("train.wall_seconds: -1\n", "outside 0..1000"),
        ("familiarity:\n  unsloth: 2\n", "outside 0..1"),
        ("familiarity:\n  nobody: 0.5\n", "not a pilot toolkit"),
        ("- a\n", "must be a mapping"),
    ],
)
def test_bad_weights_files_are_refused_naming_the_problem(
    pilot_root: Path, tmp_path: Path, text: str, message: str
) -> None:
    wfile = tmp_path / "w.yaml"
    wfile.write_text(text)
    with pytest.raises(InputError) as e:
        _build(pilot_root, ["unsloth"], weights=Weights.load(wfile), weights_file="w.yaml")
    assert message in e.value.diagnostics()


def test_markdown_and_html_show_every_criterion_and_need_no_network(pilot_root: Path) -> None:
    m = _build(pilot_root, ["unsloth"])
    md, html = render_markdown(m), render_html(m)
    for c in m.criteria:
        assert c.label in md
    assert "## Weighted score" in md and "Normalisation: min-max" in md
    assert "<svg" in html and 'data-chart="pilot-score"' in html
    # Self-contained: no scripts, no external resources (only the SVG namespace URI).
    assert "<script" not in html and not re.search(r"(src|href)=\"https?:", html)
    assert set(re.findall(r"https?://[^\s\"']+", html)) <= {"http://www.w3.org/2000/svg"}


def test_the_matrix_round_trips_through_json_and_bad_json_is_refused(pilot_root: Path) -> None:
    m = _build(pilot_root, ["unsloth"])
    data: dict[str, Any] = json.loads(json.dumps(m.to_dict()))
    assert data["version"] == "1.1" and data["complete"] is False
    assert PilotMatrix.from_dict(data) == m
    data["toolkits"][0]["cells"]["train.final_loss"]["unit"] = 3
    with pytest.raises(InputError, match="not a gate pilot matrix"):
        PilotMatrix.from_dict(data)


def test_a_source_that_leads_out_of_the_pilot_directory_is_refused(pilot_root: Path) -> None:
    cell = Cell.model_validate(
        {"value": 1, "unit": "x", "sources": [{"file": "../../etc/passwd", "pointer": ""}]}
    )
    with pytest.raises(InputError, match="not a path inside the pilot directory"):
        trace(cell, pilot_root)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--toolkits", "unslot"], "did you mean 'unsloth'"),
        (["--toolkits", "unsloth", "--repeats", "0"], "--repeats must be 1..20"),
        (["--toolkits", "unsloth,unsloth"], "names a toolkit twice"),
        (["--toolkits", "unsloth", "--eval-limit", "0"], "--eval-limit must be at least 1"),
    ],
)
def test_bad_pilot_input_exits_2_before_anything_runs(
    default_spec_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    from gate.cli import main

    out = tmp_path / "out"
    assert main(["pilot", str(default_spec_path), "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_non_empty_out_directory_is_refused(default_spec_path: Path, tmp_path: Path) -> None:
    from gate.pilot import PilotRequest, run_pilot

    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not an empty directory"):
        run_pilot(PilotRequest(default_spec_path, ("unsloth",), tmp_path, contract_path="smollm2"))


def test_a_pilot_without_contract_exits_2_naming_the_flag(
    default_spec_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gate.cli import main

    out = tmp_path / "out"
    assert main(["pilot", str(default_spec_path), "--toolkits", "unsloth", "--out", str(out)]) == 2
    assert "no contract given: pass --contract FILE" in capsys.readouterr().err
    assert not out.exists()
