"""What carries weight in a pilot's score, the score's uncertainty, and the matrix's headline.

Built matrices: cells typed here for the scoring rules (each rule on the
smallest matrix that shows it), and the real run records of
``trained_adapter_run`` laid out as a pilot directory for uncertainties that
must trace to files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate.pilot import Weights, build_matrix, render_markdown, rescore, same_value, score_chart_svg, trace
from gate.pilot._build import headline
from gate.pilot._matrix import Cell, Criterion, ToolkitResult
from gate.pilot._weights import score
from tests.fixtures.pilot import pilot_dir_of

DELTA = "eval.capitals_terse/exact_match,strip.delta"


def _crit(key: str, better: str | None = "higher", unit: str = "x") -> Criterion:
    return Criterion.model_validate(
        {"key": key, "group": "eval", "label": key, "unit": unit, "better": better, "description": ""}
    )


def _cell(value: float | bool | None, u: float | None = None, basis: str = "paired bound") -> Cell:
    spread = None if u is None else Cell(value=u, unit="x", derive="max_abs_diff", basis=basis)
    return Cell(value=value, unit="x", uncertainty=spread)


def test_a_criterion_equal_for_all_toolkits_carries_no_weight() -> None:
    # All three fail smoke alike; only the wall time tells them apart.
    criteria = [_crit("smoke.passed"), _crit("train.wall_seconds", "lower")]
    cells = {
        tk: {"smoke.passed": _cell(False), "train.wall_seconds": _cell(wall)}
        for tk, wall in (("a", 10.0), ("b", 20.0), ("c", 30.0))
    }
    weights = {"smoke.passed": 2.0, "train.wall_seconds": 1.0}
    scores, unweighted = score(criteria, cells, weights, {})
    got = {s.toolkit: s for s in scores}
    assert unweighted == {"smoke.passed": "equal for all toolkits"}
    assert all(s.terms["smoke.passed"].contribution == 0.0 for s in scores)
    # The denominator is the wall time's weight alone: a, b, c score 100, 50, 0.
    assert [got[tk].score for tk in "abc"] == [100.0, 50.0, 0.0]


def test_an_unmeasured_toolkit_keeps_an_otherwise_equal_criterion_weighted() -> None:
    criteria = [_crit("smoke.passed"), _crit("eval.passed")]
    cells = {
        "a": {"smoke.passed": _cell(True), "eval.passed": _cell(None)},
        "b": {"smoke.passed": _cell(None), "eval.passed": _cell(None)},
    }
    scores, unweighted = score(criteria, cells, {"smoke.passed": 1.0, "eval.passed": 1.0}, {})
    # Measured by one toolkit and not the other: that tells them apart; measured by none: nothing does.
    assert unweighted == {"eval.passed": "measured by no toolkit"}
    assert {s.toolkit: s.score for s in scores} == {"a": 100.0, "b": 0.0}


def test_differences_within_the_measurements_uncertainty_carry_no_weight() -> None:
    # Exact match 0.52 vs 0.50 (one document in fifty) with a paired bound margin of 0.14 each.
    criteria = [_crit(DELTA), _crit("train.tokens_per_second")]
    cells = {
        "a": {
            DELTA: _cell(0.52, 0.14),
            "train.tokens_per_second": _cell(100.0, 3.0, "spread between 2 repeats"),
        },
        "b": {
            DELTA: _cell(0.50, 0.14),
            "train.tokens_per_second": _cell(90.0, 3.0, "spread between 2 repeats"),
        },
    }
    scores, unweighted = score(criteria, cells, {DELTA: 1.5, "train.tokens_per_second": 1.0}, {})
    assert unweighted[DELTA].startswith("every difference lies within the values' own uncertainty")
    assert "paired bound" in unweighted[DELTA]
    # 100 +- 3 and 90 +- 3 do not overlap: the throughput keeps its weight and decides alone.
    assert "train.tokens_per_second" not in unweighted
    assert {s.toolkit: s.score for s in scores} == {"a": 100.0, "b": 0.0}


def test_the_same_difference_outside_the_uncertainty_carries_weight() -> None:
    criteria = [_crit(DELTA)]
    cells = {"a": {DELTA: _cell(0.52, 0.005)}, "b": {DELTA: _cell(0.50, 0.005)}}
    scores, unweighted = score(criteria, cells, {DELTA: 1.5}, {})
    assert unweighted == {}
    assert {s.toolkit: s.score for s in scores} == {"a": 100.0, "b": 0.0}


def test_the_score_carries_the_points_its_values_uncertainty_could_move() -> None:
    criteria = [_crit("train.wall_seconds", "lower"), _crit("check.errors", "lower")]
    cells = {
        "a": {"train.wall_seconds": _cell(10.0, 2.0), "check.errors": _cell(0)},
        "b": {"train.wall_seconds": _cell(30.0, 4.0), "check.errors": _cell(1)},
    }
    scores, _ = score(criteria, cells, {"train.wall_seconds": 1.0, "check.errors": 1.0}, {})
    got = {s.toolkit: s for s in scores}
    # Spread 20 s: +-2 s moves a's normalised wall time by 0.1 (5 of 100 points at half the weight),
    # +-4 s moves b's by 0.2 (10 points); the exact error count adds nothing.
    assert got["a"].terms["train.wall_seconds"].uncertainty == pytest.approx(5.0)
    assert got["b"].terms["train.wall_seconds"].uncertainty == pytest.approx(10.0)
    assert got["a"].uncertainty == pytest.approx(5.0) and got["b"].uncertainty == pytest.approx(10.0)
    assert got["a"].terms["check.errors"].uncertainty == 0.0


def _column(tk: str, **verdicts: str) -> ToolkitResult:
    return ToolkitResult(toolkit=tk, version=None, runs=(), cells={}, verdicts=verdicts)


def test_when_no_toolkit_passes_a_gate_the_headline_says_so() -> None:
    columns = [
        _column("a", check="passed", smoke="failed", eval="failed"),
        _column("b", check="passed", smoke="failed", eval="passed"),
    ]
    criteria = [_crit("train.wall_seconds", "lower")]
    cells = {"a": {"train.wall_seconds": _cell(10.0)}, "b": {"train.wall_seconds": _cell(20.0)}}
    weights = {"train.wall_seconds": 1.0}
    scores, unweighted = score(criteria, cells, weights, {})
    lines = headline(columns, scores, weights, unweighted)
    assert lines[0] == "No toolkit passes smoke."
    assert not any("passes check" in x or "passes eval" in x for x in lines)
    assert lines[1].startswith("No toolkit passes every gate: none of these adapters could be released")
    assert lines[2] == "Highest score: a 100.0 ± 0.0."


def test_the_headline_names_who_passes_every_gate_and_scores_that_do_not_separate() -> None:
    columns = [_column(tk, check="passed", smoke="passed", eval="passed") for tk in ("a", "b")]
    criteria = [_crit("train.wall_seconds", "lower"), _crit("check.errors", "lower")]
    cells = {
        "a": {"train.wall_seconds": _cell(10.0, 6.0), "check.errors": _cell(0)},
        "b": {"train.wall_seconds": _cell(30.0, 6.0), "check.errors": _cell(0)},
    }
    weights = {"train.wall_seconds": 1.0, "check.errors": 1.0}
    scores, unweighted = score(criteria, cells, weights, {})
    lines = headline(columns, scores, weights, unweighted)
    assert lines[0] == "Pass every gate: a, b."
    # 100 +- 30 vs 0 +- 30: the gap (100) exceeds 60, so a is separated; b is the one without a lead.
    assert lines[1] == "Highest score: a 100.0 ± 30.0."
    cells["b"]["train.wall_seconds"] = _cell(14.0, 6.0)  # 10 +- 6 and 14 +- 6 overlap
    scores, unweighted = score(criteria, cells, weights, {})
    lines = headline(columns, scores, weights, unweighted)
    assert lines[-1].startswith("No criterion separates the toolkits")


@pytest.fixture
def pilot_root(trained_adapter_run: Path, tmp_path: Path) -> Path:
    return pilot_dir_of(trained_adapter_run, tmp_path / "pilot")


def _build(root: Path, weights: Weights | None = None) -> object:
    return build_matrix(
        root,
        toolkits=["unsloth"],
        repeats=2,
        eval_metrics=["capitals_terse/exact_match,strip"],
        weights=weights or Weights(),
        weights_file=None,
        spec={"name": "train.yaml", "sha256": "0" * 64},
        contract={"name": "smollm2-vllm", "sha256": "1" * 64},
        settings={"toolkits": ["unsloth"], "repeats": 2, "steps": None, "eval_limit": None},
        phases={"total": 1.0},
    )


def test_the_spread_between_repeats_is_a_traced_uncertainty_of_the_training_cells(pilot_root: Path) -> None:
    path = pilot_root / "runs/unsloth-2/run.json"
    record = json.loads(path.read_text())
    record["wall_seconds"] += 4.5
    path.write_text(json.dumps(record))
    m = _build(pilot_root)
    wall = m.cell("unsloth", "train.wall_seconds")  # type: ignore[attr-defined]
    assert (
        wall.uncertainty.value == pytest.approx(4.5) and wall.uncertainty.basis == "spread between 2 repeats"
    )
    assert [s.file for s in wall.uncertainty.sources] == [
        "runs/unsloth-1/run.json",
        "runs/unsloth-2/run.json",
    ]
    assert same_value(trace(wall.uncertainty, pilot_root), wall.uncertainty.value)
    loss = m.cell("unsloth", "train.final_loss")  # type: ignore[attr-defined]
    assert loss.uncertainty.value == 0.0  # the copies trained to the same loss
    assert " ± 4.5 s" in render_markdown(m)  # type: ignore[arg-type]


def test_unsloth_has_no_native_config_to_count_and_that_is_not_a_missing_cell(pilot_root: Path) -> None:
    m = _build(pilot_root)
    for key in ("effort.native_config_lines", "custom.native_config_keys"):
        cell = m.cell("unsloth", key)  # type: ignore[attr-defined]
        assert cell.value is None and cell.not_applicable.startswith(
            "no native config: Unsloth users write Python"
        )
        assert not any(x.startswith(f"unsloth/{key}") for x in m.missing)  # type: ignore[attr-defined]
        assert m.unweighted[key].startswith("not comparable: unsloth: no native config")  # type: ignore[attr-defined]


def test_rescore_rebuilds_a_finished_pilot_with_new_weights_from_the_same_records(pilot_root: Path) -> None:
    from gate.pilot import write_outputs

    write_outputs(_build(pilot_root), pilot_root)  # type: ignore[arg-type]
    wfile = pilot_root.parent / "w.yaml"
    wfile.write_text("train.wall_seconds: 7\n")
    result = rescore(pilot_root, weights_path=wfile)
    on_disk = json.loads((pilot_root / "pilot.json").read_text())
    assert on_disk["weights"]["train.wall_seconds"] == 7.0 and on_disk["weights_source"] == "w.yaml"
    assert (pilot_root / "inputs/weights.yaml").read_text() == wfile.read_text()
    assert result.matrix.settings["repeats"] == 2 and "rescored_at" in result.matrix.settings
    assert result.matrix.criteria == _build(pilot_root).criteria  # type: ignore[attr-defined]
    # One toolkit: nothing separates it from itself, and the chart's legend says so per group.
    assert "training (no weight)" in score_chart_svg(result.matrix)
