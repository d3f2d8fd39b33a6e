"""`gate contract init` writes a complete contract whose base facts are read from the base itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gate.cli import main
from gate.contract import Contract
from gate.contracts import verify_against_base
from tests.contracts._bases import tiny_base
from tests.contracts.conftest import init_contract_cli


def test_llama_contract_has_gqa_shapes_paths_eos_and_rendered_fixtures(
    llama_contract: Path, llama_base: Path
):
    c = Contract.from_yaml(llama_contract)
    spec = c.base_model
    assert spec.architecture == "LlamaForCausalLM"
    assert (spec.hidden_size, spec.num_hidden_layers, spec.vocab_size) == (64, 2, 49152)
    assert (spec.num_attention_heads, spec.num_key_value_heads) == (4, 2)
    # GQA: 2 kv heads of 16 dims each, read from the safetensors header
    assert spec.linear_shapes["k_proj"] == (32, 64)
    assert spec.linear_shapes["q_proj"] == (64, 64)
    assert spec.linear_shapes["down_proj"] == (64, 128)
    assert spec.module_paths["v_proj"] == "model.layers.{layer}.self_attn.v_proj"
    assert spec.module_paths["up_proj"] == "model.layers.{layer}.mlp.up_proj"
    assert "lm_head" not in spec.linear_shapes and "embed_tokens" not in spec.linear_shapes
    assert spec.eos_token_ids == [2] and c.prompt.eos_token_ids == [2]
    assert c.prompt.end_of_turn == "<|im_end|>"
    assert c.prompt.chat_template == (llama_base / "chat_template.jinja").read_text()
    fixtures = {f.name: f.expected for f in c.prompt.fixtures}
    assert fixtures["closed_conversation"].endswith("<|im_start|>assistant\nMadrid<|im_end|>\n")
    assert fixtures["system_prompt"].startswith(
        "<|im_start|>system\nAnswer with the city name only.<|im_end|>"
    )
    assert spec.source is not None and (llama_contract.parent / spec.source).resolve() == llama_base.resolve()


def test_generated_contract_marks_what_the_user_must_fill(llama_contract: Path):
    text = llama_contract.read_text()
    raw = yaml.safe_load(text)
    assert "TODO(gate contract init)" in raw["smoke"]["prompts"][0]["messages"][0]["content"]
    assert raw["eval"]["tasks"][0]["task"] == "todo_your_task"
    # each base fact section is commented
    assert "# What the adapter must agree with." in text
    assert text.count("TODO(gate contract init)") >= 4


def test_qwen2_contract_records_tied_embeddings_and_no_lm_head(contracts_dir: Path):
    base = tiny_base("qwen2")
    c = Contract.from_yaml(init_contract_cli(base, contracts_dir / "qwen2.yaml"))
    assert c.base_model.architecture == "Qwen2ForCausalLM"
    assert c.base_model.tie_word_embeddings is True
    assert "lm_head" not in c.base_model.linear_shapes
    assert c.base_model.linear_shapes["v_proj"] == (32, 64)
    assert verify_against_base(c, base, render=False) == []


def test_phi3_packed_modules_and_embeddings_only_where_every_admitted_vllm_serves_them(contracts_dir: Path):
    base = tiny_base("phi3")
    default = Contract.from_yaml(init_contract_cli(base, contracts_dir / "phi3.yaml"))
    assert default.base_model.linear_shapes["qkv_proj"] == (192, 64)
    assert default.base_model.linear_shapes["gate_up_proj"] == (256, 64)
    assert "q_proj" not in default.base_model.linear_shapes
    # >=0.26 admits 0.26.0, which was never measured serving Phi-3 embedding LoRA
    assert "lm_head" not in default.adapter.allowed_target_modules
    new = Contract.from_yaml(
        init_contract_cli(base, contracts_dir / "phi3-032.yaml", "--runtime-version", ">=0.32,<0.33")
    )
    assert new.base_model.linear_shapes["lm_head"] == (49152, 64)
    assert new.base_model.module_paths["lm_head"] == "lm_head"
    assert new.base_model.module_paths["embed_tokens"] == "model.embed_tokens"
    assert {"lm_head", "embed_tokens"} <= set(new.adapter.allowed_target_modules)
    assert verify_against_base(new, base, render=False) == []


def test_qwen2_moe_contract_describes_experts_and_shared_expert_with_their_shapes(contracts_dir: Path):
    base = tiny_base("qwen2_moe")
    c = Contract.from_yaml(init_contract_cli(base, contracts_dir / "qwen2-moe.yaml"))
    spec = c.base_model
    assert spec.num_experts == 4
    assert spec.module_paths["gate_proj"] == "model.layers.{layer}.mlp.shared_expert.gate_proj"
    assert spec.linear_shapes["gate_proj"] == (96, 64)
    (expert,) = spec.extra_placements["gate_proj"]
    assert expert.path == "model.layers.{layer}.mlp.experts.{expert}.gate_proj"
    assert expert.shape == (32, 64)
    modules = spec.expected_modules()
    assert modules["model.layers.1.mlp.experts.3.down_proj"] == (64, 32)
    assert modules["model.layers.0.mlp.shared_expert.down_proj"] == (64, 96)
    # routers are not LoRA targets
    assert not any(name.endswith((".mlp.gate", "shared_expert_gate")) for name in modules)
    assert verify_against_base(c, base, render=False) == []


def test_mixtral_experts_are_the_only_placement_of_w1(contracts_dir: Path):
    base = tiny_base("mixtral")
    c = Contract.from_yaml(init_contract_cli(base, contracts_dir / "mixtral.yaml"))
    assert c.base_model.module_paths["w1"] == "model.layers.{layer}.block_sparse_moe.experts.{expert}.w1"
    assert c.base_model.linear_shapes["w2"] == (64, 128)
    assert len([n for n in c.base_model.expected_modules() if n.endswith(".w3")]) == 2 * 4
    assert verify_against_base(c, base, render=False) == []


def test_init_refuses_to_overwrite_and_names_the_flag(llama_base: Path, llama_contract: Path, capsys):
    assert main(["contract", "init", "--base", str(llama_base), "--out", str(llama_contract)]) == 2
    assert "pass --force" in capsys.readouterr().err


def test_init_json_summary_lists_identity_modules_and_todos(llama_base: Path, tmp_path: Path, capsys):
    out = tmp_path / "c.yaml"
    assert (
        main(
            ["contract", "init", "--base", str(llama_base), "--out", str(out), "--name", "my-llama", "--json"]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["name"] == "my-llama"
    assert summary["identity"] == Contract.from_yaml(out).base_model.identity
    assert summary["modules"] == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert "smoke.prompts" in summary["todo"]


@pytest.mark.parametrize("missing", ["generation_config.json"])
def test_init_reads_a_base_without_optional_files(llama_base: Path, tmp_path: Path, missing: str):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(llama_base, base)
    (base / missing).unlink()
    c = Contract.from_yaml(init_contract_cli(base, tmp_path / "c.yaml"))
    # without generation_config.json the EOS comes from config.json and the tokenizer
    assert c.base_model.eos_token_ids == [2]
