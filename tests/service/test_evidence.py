"""The evidence tables of a real eval report, and its slices when the task is tagged."""

from __future__ import annotations

import copy

from gate.evaluate._stats import SliceVerdict
from gate.service.evidence import eval_tables
from tests.fixtures.service_seed import seed_reports


def test_eval_slices_get_their_own_table_with_the_failing_documents() -> None:
    report = copy.deepcopy(seed_reports()["reports"]["eval"])
    # The real release's tasks have no slice field: no slice table.
    assert [t.id for t in eval_tables(report)] == ["eval-metrics"]
    metric = report["metrics"][0]
    metric["slices"] = [
        SliceVerdict(
            name="europe",
            n=12,
            adapter=0.5,
            reference_score=0.75,
            delta=-0.25,
            lower_bound=-0.52,
            test="mcnemar-exact",
            regressed=True,
            failing_documents=tuple(f"doc-{i}" for i in range(12)),
            failing_count=12,
        ).to_dict()
    ]
    metrics, slices = eval_tables(report)
    assert metrics.id == "eval-metrics" and slices.id == "eval-slices"
    assert slices.rows == (
        (
            metric["key"],
            "europe",
            "12",
            "0.7500",
            "0.5000",
            "-0.2500",
            "-0.5200",
            "yes",
            ", ".join(f"doc-{i}" for i in range(10)) + " (+2)",
        ),
    )
