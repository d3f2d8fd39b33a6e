"""`gate contract verify` re-derives every base fact and lists each mismatch, not only the first."""

from __future__ import annotations

import json
from pathlib import Path

from gate.check import run_check
from gate.cli import main
from gate.contract import Contract


def _edit(src: Path, dst: Path, *pairs: tuple[str, str]) -> Path:
    text = src.read_text()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    dst.write_text(text)
    return dst


def test_a_generated_contract_verifies_clean(llama_contract: Path, llama_base: Path, capsys):
    assert main(["contract", "verify", str(llama_contract), "--base", str(llama_base)]) == 0
    assert "every base fact matches" in capsys.readouterr().out


def test_verify_reports_each_planted_mistake(llama_contract: Path, llama_base: Path, tmp_path: Path, capsys):
    import hashlib

    template = Contract.from_yaml(llama_contract).prompt.chat_template
    edited = template.replace("You are a helpful", "You are a useful")
    text = llama_contract.read_text()
    indented = "\n".join("    " + line if line else line for line in template.split("\n"))
    assert indented in text
    bad = _edit(
        llama_contract,
        tmp_path / "bad.yaml",
        ("    k_proj: [32, 64]", "    k_proj: [64, 64]"),  # wrong shape
        ("  num_hidden_layers: 2", "  num_hidden_layers: 3"),  # layer count
        ("v_proj: model.layers.{layer}.self_attn.v_proj", "v_proj: model.layers.{layer}.attn.v_proj"),  # path
        ("  vocab_size: 49152", "  vocab_size: 49153"),
        ("  hidden_size: 64", "  hidden_size: 128"),
        ("  eos_token_ids: [2]\n  tokenizer", "  eos_token_ids: [0]\n  tokenizer"),  # base_model EOS
        ("      What is the capital of Japan?<|im_end|>", "      What is the capital of Japan?<|im_end|> "),
        (indented, "\n".join("    " + line if line else line for line in edited.split("\n"))),
        (hashlib.sha256(template.encode()).hexdigest(), hashlib.sha256(edited.encode()).hexdigest()),
    )
    assert main(["contract", "verify", str(bad), "--base", str(llama_base), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    fields = {m["field"] for m in report["mismatches"]}
    assert {
        "base_model.linear_shapes.k_proj",
        "base_model.num_hidden_layers",
        "base_model.module_paths.v_proj",
        "base_model.vocab_size",
        "base_model.hidden_size",
        "base_model.eos_token_ids",
        "prompt.chat_template_sha256",
        "prompt.fixtures[1].expected",
    } <= fields
    by_field = {m["field"]: m for m in report["mismatches"]}
    assert by_field["base_model.linear_shapes.k_proj"]["base"] == [32, 64]
    assert by_field["base_model.hidden_size"]["base"] == 64
    # the rendered fixture differs by the planted trailing space only
    assert "first difference" in by_field["prompt.fixtures[1].expected"]["message"]


def test_gate_check_with_base_runs_the_same_comparison(
    llama_contract: Path, llama_base: Path, tmp_path: Path, clean_llama_adapter: Path
):
    bad = Contract.from_yaml(
        _edit(llama_contract, tmp_path / "bad.yaml", ("  num_hidden_layers: 2", "  num_hidden_layers: 3"))
    )
    report = run_check(clean_llama_adapter, bad, llama_base)
    hits = [f for f in report.findings if f.rule == "base.fact-mismatch"]
    assert hits and "base_model.num_hidden_layers" in hits[0].message
    good = run_check(clean_llama_adapter, Contract.from_yaml(llama_contract), llama_base)
    assert not [f for f in good.findings if f.rule.startswith("base.")]
