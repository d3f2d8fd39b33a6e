"""The verdict arithmetic of ``gate eval``, without a server: pairing, stderr, thresholds, fail-closed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gate.errors import InputError
from gate.evaluate import load_baseline
from gate.evaluate._report import EvalReport, render_markdown
from gate.evaluate._stats import MetricThreshold, judge_metric, paired_delta

GEN = MetricThreshold(
    task="capitals_terse", metric="exact_match", filter="strip", kind="generate", min=0.5, max_regression=0.05
)
MC = MetricThreshold(
    task="smollm2_mc", metric="acc", filter="none", kind="multiple_choice", min=None, max_regression=0.1
)


def docs(values: list[float]) -> dict[str, float]:
    return {f"{i}:{i:016x}": float(v) for i, v in enumerate(values)}


def test_paired_stderr_is_sd_of_differences_over_sqrt_n() -> None:
    # A continuous metric: judged by the paired t bound with n - 1 degrees of freedom.
    adapter = docs([0.9, 0.8, 0.1, 0.7, 0.2, 0.6, 0.9, 0.3])
    base = docs([0.8, 0.5, 0.1, 0.7, 0.3, 0.6, 0.4, 0.2])
    pd = paired_delta(adapter, base, confidence=0.95)
    diffs = [0.1, 0.3, 0.0, 0.0, -0.1, 0.0, 0.5, 0.1]
    mean = sum(diffs) / 8
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 7)
    assert pd.n == 8
    assert pd.test == "paired-t"
    assert pd.delta == pytest.approx(mean)
    assert pd.stderr == pytest.approx(sd / math.sqrt(8))
    # t(0.95, 7 df) = 1.894578605 (tables).
    assert pd.lower_bound == pytest.approx(mean - 1.894578605 * sd / math.sqrt(8), rel=1e-6)


def test_paired_stderr_is_tighter_than_unpaired_when_models_agree_per_document() -> None:
    base = docs([1, 0] * 20)
    adapter = dict(base)
    adapter["1:0000000000000001"] = 1.0  # one document flipped
    pd = paired_delta(adapter, base, confidence=0.95)
    assert pd.stderr < pd.unpaired_stderr / 3


def test_identical_scores_have_zero_stderr_and_pass_a_zero_margin() -> None:
    base = docs([1, 0, 1, 1])
    verdict = judge_metric(
        MetricThreshold("t", "acc", "none", "multiple_choice", None, 0.0), dict(base), base, confidence=0.95
    )
    assert verdict.passed
    assert verdict.stderr == 0.0
    assert verdict.delta == 0.0


def test_regression_beyond_margin_fails_naming_metric_and_margin() -> None:
    base = docs([1] * 30 + [0] * 10)
    adapter = docs([0] * 12 + [1] * 18 + [0] * 10)  # lost 12 of 30
    verdict = judge_metric(MC, adapter, base, confidence=0.95)
    assert not verdict.passed
    assert verdict.lower_bound is not None and verdict.lower_bound < -0.1
    assert verdict.test == "mcnemar-exact" and (verdict.wins, verdict.losses) == (0, 12)
    (reason,) = verdict.reasons
    assert reason.startswith("smollm2_mc/acc,none: regression versus base")
    assert "-0.1000" in reason and "0 won, 12 lost" in reason and "by mcnemar-exact" in reason


def test_small_regression_within_the_confidence_bound_passes() -> None:
    base = docs([1] * 30 + [0] * 10)
    adapter = dict(base)
    adapter["0:0000000000000000"] = 0.0  # one document lost of 40: delta -0.025
    verdict = judge_metric(MC, adapter, base, confidence=0.95)
    assert verdict.delta == pytest.approx(-0.025)
    assert verdict.lower_bound is not None and verdict.lower_bound > -0.1
    assert verdict.passed, verdict.reasons


def test_higher_confidence_widens_the_bound() -> None:
    base = docs([1] * 30 + [0] * 10)
    adapter = docs([0] * 2 + [1] * 28 + [1] * 3 + [0] * 7)  # 2 lost, 3 won
    lo90 = paired_delta(adapter, base, confidence=0.90).lower_bound
    lo99 = paired_delta(adapter, base, confidence=0.99).lower_bound
    assert lo99 < lo90


def test_below_absolute_minimum_fails_even_when_better_than_base() -> None:
    base = docs([0] * 40)
    adapter = docs([1] * 10 + [0] * 30)
    verdict = judge_metric(GEN, adapter, base, confidence=0.95)
    assert verdict.delta == pytest.approx(0.25)
    assert not verdict.passed
    assert verdict.reasons == (
        "capitals_terse/exact_match,strip: adapter 0.2500 is below the minimum 0.5000 (short by 0.2500)",
    )


def test_meets_minimum_and_beats_base_passes() -> None:
    verdict = judge_metric(GEN, docs([1] * 30 + [0] * 10), docs([0] * 40), confidence=0.95)
    assert verdict.passed
    assert verdict.reasons == ()


@pytest.mark.parametrize("side", ["adapter", "base"])
def test_missing_metric_fails_closed(side: str) -> None:
    present = docs([1, 1, 1])
    adapter = None if side == "adapter" else present
    base = None if side == "base" else present
    verdict = judge_metric(GEN, adapter, base, confidence=0.95)
    assert not verdict.passed
    assert any(f"missing from the {side}'s results" in r for r in verdict.reasons)


def test_zero_documents_fail() -> None:
    verdict = judge_metric(GEN, {}, {}, confidence=0.95)
    assert not verdict.passed
    assert "zero documents scored for the adapter" in " ".join(verdict.reasons)


def test_single_document_cannot_estimate_a_stderr_and_fails() -> None:
    verdict = judge_metric(MC, docs([1]), docs([1]), confidence=0.95)
    assert not verdict.passed
    assert "at least 2 are needed" in verdict.reasons[0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_document_score_fails(bad: float) -> None:
    adapter = docs([1, 1, 0, 1])
    adapter["2:0000000000000002"] = bad
    verdict = judge_metric(MC, adapter, docs([1, 1, 0, 1]), confidence=0.95)
    assert not verdict.passed
    assert "not a finite number" in verdict.reasons[0]
    assert verdict.to_dict()["adapter"] is None  # JSON-safe


def test_different_documents_cannot_be_paired() -> None:
    adapter = docs([1, 1, 0, 1])
    base = docs([1, 1, 0, 1])
    base["9:0000000000000009"] = base.pop("3:0000000000000003")
    verdict = judge_metric(MC, adapter, base, confidence=0.95)
    assert not verdict.passed
    assert "scored different documents" in verdict.reasons[0]


def test_invalid_confidence_fails_rather_than_passing() -> None:
    verdict = judge_metric(MC, docs([1, 0]), docs([1, 0]), confidence=1.0)
    assert not verdict.passed


def test_an_empty_report_never_passes_and_renders_the_failure() -> None:
    report = EvalReport(passed=False, verdicts=(), error=None, reference="base")
    data = report.to_dict()
    assert data["kind"] == "gate.eval-report" and data["version"] == "1.1"
    assert data["failures"] == ["no metric was judged (an empty evaluation never passes)"]
    assert "FAILED" in report.to_markdown()


def test_report_markdown_shows_each_metric_and_the_failing_margin() -> None:
    ok = judge_metric(GEN, docs([1] * 30 + [0] * 10), docs([0] * 40), confidence=0.95)
    bad = judge_metric(MC, docs([0] * 20 + [1] * 20), docs([1] * 40), confidence=0.95)
    report = EvalReport(
        passed=False,
        verdicts=(ok, bad),
        error=None,
        reference="base",
        context={"confidence": 0.95},
        scores={"adapter": {"smollm2_mc": {"acc,none": docs([0] * 20 + [1] * 20)}}},
    )
    data = json.loads(json.dumps(report.to_dict()))  # JSON round trip: what a bundle carries
    text = render_markdown(data)
    assert text == report.to_markdown()
    assert "| capitals_terse | exact_match,strip | 40 | 0.0000 | 0.7500 | +0.7500 | paired-normal |" in text
    assert "| smollm2_mc | acc,none | 40 | 1.0000 | 0.5000 | -0.5000 | mcnemar-exact |" in text
    assert "**FAIL**" in text
    assert "smollm2_mc/acc,none: regression versus base" in text


def test_baseline_is_read_back_from_a_report_and_pairs_with_it(tmp_path: Path) -> None:
    released = docs([1] * 36 + [0] * 4)
    report = EvalReport(
        passed=True,
        verdicts=(),
        error=None,
        reference="base",
        scores={"adapter": {"capitals_terse": {"exact_match,strip": released}}},
    )
    report.write(tmp_path / "eval")
    path, scores = load_baseline(tmp_path / "eval" / "report.json")
    assert path == tmp_path / "eval" / "report.json"
    verdict = judge_metric(
        GEN,
        docs([1] * 20 + [0] * 20),
        scores["capitals_terse"]["exact_match,strip"],
        confidence=0.95,
        reference_label="baseline",
    )
    assert not verdict.passed
    assert "regression versus baseline" in verdict.reasons[0]


def test_baseline_null_scores_stay_failing(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text(
        json.dumps(
            {"kind": "gate.eval-report", "per_document": {"adapter": {"t": {"acc,none": {"0:a": None}}}}}
        )
    )
    _, scores = load_baseline(report)
    assert math.isnan(scores["t"]["acc,none"]["0:a"])


@pytest.mark.parametrize(
    ("content", "match"),
    [("not json", "not valid JSON"), (json.dumps({"kind": "other"}), "not a gate eval report")],
)
def test_baseline_that_is_not_a_report_is_an_input_error(tmp_path: Path, content: str, match: str) -> None:
    p = tmp_path / "x.json"
    p.write_text(content)
    with pytest.raises(InputError, match=match):
        load_baseline(p)
