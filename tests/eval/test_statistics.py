"""The eval gate's statistics on planted score tables: exact tests, power up front, slices."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gate.contract import Contract
from gate.evaluate._dist import (
    binom_cdf,
    clopper_pearson_lower,
    clopper_pearson_upper,
    mcnemar_exact_p,
    t_quantile,
)
from gate.evaluate._power import power_plan
from gate.evaluate._report import EvalReport
from gate.evaluate._stats import (
    MetricThreshold,
    Planning,
    judge_metric,
    min_detectable_regression,
    paired_delta,
)

MC = MetricThreshold("guard", "acc", "none", "multiple_choice", None, 0.1)


def docs(values: list[float]) -> dict[str, float]:
    return {f"{i}:{i:016x}": float(v) for i, v in enumerate(values)}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (t_quantile(0.95, 4), 2.131847),  # Student t tables
        (t_quantile(0.975, 29), 2.045230),
        (t_quantile(0.99, 1), 31.820516),
        (binom_cdf(3, 10, 0.3), 0.6496107184),
        (clopper_pearson_lower(3, 3, 0.95), 0.05 ** (1 / 3)),  # closed form for k = n
        (clopper_pearson_upper(0, 5, 0.975), 1 - 0.025 ** (1 / 5)),  # closed form for k = 0
        (mcnemar_exact_p(0, 5), 2 * 0.5**5),
        (mcnemar_exact_p(2, 8), 2 * (1 + 10 + 45) / 2**10),
    ],
)
def test_distributions_match_tables_and_closed_forms(value: float, expected: float) -> None:
    assert value == pytest.approx(expected, rel=1e-6)


def test_exact_test_refuses_what_the_normal_approximation_passes_at_small_n() -> None:
    # Three documents, the adapter wins all three: the differences have zero variance, so the
    # normal approximation's bound is +1.0 (certainty from three documents). McNemar's exact bound,
    # conditional on the three discordant documents, is (3/3) * (2 * 0.05**(1/3) - 1) = -0.263.
    adapter, base = docs([1, 1, 1]), docs([0, 0, 0])
    pd = paired_delta(adapter, base, confidence=0.95)
    normal_bound = pd.delta - 1.6448536269514722 * pd.stderr
    assert normal_bound == pytest.approx(1.0)
    assert pd.test == "mcnemar-exact"
    assert pd.lower_bound == pytest.approx(2 * 0.05 ** (1 / 3) - 1)
    verdict = judge_metric(MC, adapter, base, confidence=0.95)
    assert not verdict.passed
    assert "by mcnemar-exact" in verdict.reasons[0]


def test_normal_approximation_is_used_only_from_25_discordant_documents() -> None:
    base = docs([0] * 100)
    below = judge_metric(MC, docs([1] * 24 + [0] * 76), base, confidence=0.95)
    at = judge_metric(MC, docs([1] * 25 + [0] * 75), base, confidence=0.95)
    assert (below.test, at.test) == ("mcnemar-exact", "paired-normal")


def test_continuous_metric_uses_the_t_bound() -> None:
    verdict = judge_metric(
        MetricThreshold("t", "bleu", "none", "generate", None, 0.1),
        docs([0.5, 0.6, 0.7]),
        docs([0.5, 0.5, 0.5]),
        confidence=0.95,
    )
    sd = math.sqrt(((0.0 - 0.1) ** 2 + 0.0 + (0.2 - 0.1) ** 2) / 2)
    assert verdict.test == "paired-t"
    assert verdict.lower_bound == pytest.approx(0.1 - 2.919986 * sd / math.sqrt(3), rel=1e-5)


def test_task_too_small_to_detect_max_regression_is_flagged_and_the_contract_decides() -> None:
    base = docs([1, 0] * 10)
    adapter = dict(base)
    adapter["1:0000000000000001"] = 1.0  # one document won, 20 documents
    warned = judge_metric(MC, adapter, base, confidence=0.95)
    assert warned.passed and warned.underpowered
    assert warned.min_detectable_regression is not None and warned.min_detectable_regression > 0.1
    assert warned.warnings == (
        f"guard/acc,none: underpowered: 20 documents can detect a regression of "
        f"{warned.min_detectable_regression:.4f} at 95% confidence and 80% power, more than max_regression "
        f"0.1000 (observed: 20 documents, 1 discordant, discordance up to 0.216 at 95%)",
    )
    failed = judge_metric(MC, adapter, base, confidence=0.95, planning=Planning(underpowered="fail"))
    assert not failed.passed
    assert failed.reasons == warned.warnings


def test_a_large_task_is_not_flagged() -> None:
    base = docs([1, 0] * 500)
    adapter = dict(base)
    for i in range(1, 41, 2):
        adapter[f"{i}:{i:016x}"] = 1.0  # 20 of 1000 documents won
    verdict = judge_metric(MC, adapter, base, confidence=0.95)
    assert not verdict.underpowered and verdict.warnings == ()
    assert verdict.min_detectable_regression is not None and verdict.min_detectable_regression < 0.1


def test_minimum_detectable_regression_shrinks_with_more_documents() -> None:
    values = [
        min_detectable_regression(n, binary=True, confidence=0.95, discordance=0.2)
        for n in (20, 50, 200, 2000)
    ]
    assert values == sorted(values, reverse=True)
    assert min_detectable_regression(1, binary=True, confidence=0.95, discordance=0.2) == math.inf


def test_power_plan_counts_documents_and_flags_the_small_task(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    (tasks / "data").mkdir(parents=True)
    for name, n in (("small", 30), ("large", 3000)):
        (tasks / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data/{name}.jsonl\n"
            "test_split: test\noutput_type: multiple_choice\n"
        )
        (tasks / "data" / f"{name}.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(n)))
    contract_path = tmp_path / "c.yaml"
    text = Path(__file__).parents[2].joinpath("contracts", "smollm2-vllm.yaml").read_text()
    head, _, rest = text.partition("\neval:\n")
    tail = rest[rest.index("\nsigning:") :]
    chat = Path(__file__).parents[2] / "contracts" / "smollm2-chat.jinja"
    (tmp_path / chat.name).write_bytes(chat.read_bytes())
    contract_path.write_text(
        head
        + "\neval:\n  tasks_dir: tasks\n  tasks:\n"
        + "    - {task: small, metric: acc, kind: multiple_choice, max_regression: 0.05}\n"
        + "    - {task: large, metric: acc, kind: multiple_choice, max_regression: 0.05}\n"
        + tail
    )
    plans = {p.key: p for p in power_plan(Contract.from_yaml(contract_path))}
    assert plans["small/acc,none"].n == 30 and plans["small/acc,none"].underpowered
    assert plans["large/acc,none"].n == 3000 and not plans["large/acc,none"].underpowered
    limited = {p.key: p for p in power_plan(Contract.from_yaml(contract_path), limit=10)}
    assert limited["large/acc,none"].n == 10 and limited["large/acc,none"].underpowered


def test_slice_that_regresses_while_the_aggregate_passes_is_named_with_its_documents() -> None:
    # 200 documents in two slices; the adapter wins 12 "general" documents and loses 6 "legal" ones.
    base = docs([0, 1] * 100)
    adapter = dict(base)
    keys = sorted(base, key=lambda k: int(k.split(":")[0]))
    tags = {k: ("legal",) if int(k.split(":")[0]) < 20 else ("general",) for k in keys}
    ids = {k: f"doc-{int(k.split(':')[0]):03d}" for k in keys}
    lost = [k for k in keys[:20] if base[k] == 1.0][:6]
    won = [k for k in keys[20:] if base[k] == 0.0][:12]
    for k in lost:
        adapter[k] = 0.0
    for k in won:
        adapter[k] = 1.0
    verdict = judge_metric(MC, adapter, base, confidence=0.95, tags=tags, doc_ids=ids)
    assert verdict.passed  # the aggregate: +6 of 200
    by_name = {s.name: s for s in verdict.slices}
    legal = by_name["legal"]
    assert legal.regressed and not by_name["general"].regressed
    assert legal.n == 20 and legal.delta == pytest.approx(-6 / 20)
    assert legal.failing_documents == tuple(ids[k] for k in sorted(lost))
    (warning,) = [w for w in verdict.warnings if "slice" in w]
    assert warning.startswith("guard/acc,none: slice 'legal' regressed: 20 documents, delta -0.3000")
    assert ids[lost[0]] in warning
    strict = judge_metric(
        MC, adapter, base, confidence=0.95, tags=tags, doc_ids=ids, planning=Planning(slice_regression="fail")
    )
    assert not strict.passed and any("slice 'legal' regressed" in r for r in strict.reasons)
    # The report carries the breakdown in JSON and Markdown.
    report = EvalReport(passed=True, verdicts=(verdict,), error=None, reference="base")
    data = report.to_dict()
    assert data["metrics"][0]["slices"][1]["failing_documents"] == [ids[k] for k in sorted(lost)]
    assert "| legal | 20 |" in report.to_markdown()


def test_every_judged_metric_names_its_test_and_minimum_detectable_regression() -> None:
    verdict = judge_metric(MC, docs([1, 0, 1, 1]), docs([1, 0, 0, 1]), confidence=0.95)
    data = verdict.to_dict()
    assert data["test"] == "mcnemar-exact"
    assert isinstance(data["min_detectable_regression"], float)


def test_shipped_contract_named_by_a_relative_path_states_its_power(
    base_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gate.cli import main
    from gate.resources import contracts_dir

    monkeypatch.chdir(contracts_dir().parent)
    code = main(
        [
            "contract",
            "verify",
            "contracts/smollm2-vllm.yaml",
            "--base",
            str(base_model_dir),
            "--no-render",
            "--json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["ok"] is True  # underpowered is a warning under this contract
    assert [p["key"] for p in data["power"]] == ["capitals_terse/exact_match,strip", "smollm2_mc/acc,none"]
    assert [p["n"] for p in data["power"]] == [50, 32]
    assert len(data["underpowered"]) == 2 and "cannot detect max_regression 0.1000" in data["underpowered"][1]
