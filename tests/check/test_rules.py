"""Every rule of `gate check` fires on an adapter built with exactly its fault, and only that rule fires.

Each fault is a real PEFT-layout adapter (numpy + safetensors, shapes from the
real SmolLM2 base's header) with one thing wrong, checked against the embedded
contract and the real converted base.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gate.check import run_check
from gate.contract import Contract, LoraSupport
from gate.rules import all_rules
from tests.fixtures.adapters import PEFT_PREFIX, rewrite_tensors

Q0 = "model.layers.0.self_attn.q_proj"
SERVING_TEMPLATE_EOT = "<|im_end|>"


def with_section(contract: Contract, section: str, **changes: Any) -> Contract:
    """The contract with some fields of one section replaced (same source path and digest)."""
    return contract.model_copy(update={section: getattr(contract, section).model_copy(update=changes)})


def edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@dataclass(frozen=True)
class Fault:
    """How to build an adapter with one fault, and which rule must report it."""

    rule: str
    build: dict[str, Any] = field(default_factory=dict)
    mutate: Callable[[Path], None] | None = None
    contract: Callable[[Contract], Contract] | None = None
    also: frozenset[str] = frozenset()  # rules that legitimately fire together with it


def phi3_on_vllm_032(contract: Contract) -> Contract:
    """The contract as if its base were Phi-3 served by vLLM 0.32 (which serves embedding LoRA for it)."""
    phi3 = with_section(contract, "base_model", architecture="Phi3ForCausalLM")
    return with_section(phi3, "serving", vllm_version=">=0.32,<0.33")


EMBED_LORA = {
    f"{PEFT_PREFIX}model.embed_tokens.lora_embedding_A": np.zeros((8, 49152), np.float32),
    f"{PEFT_PREFIX}model.embed_tokens.lora_embedding_B": np.zeros((576, 8), np.float32),
}
LM_HEAD_LORA = {
    f"{PEFT_PREFIX}lm_head.lora_A.weight": np.zeros((8, 576), np.float32),
    f"{PEFT_PREFIX}lm_head.lora_B.weight": np.zeros((49152, 8), np.float32),
}


def _symlink_out(d: Path) -> None:
    os.symlink("/etc/hostname", d / "README.md")


def _fifo_weights(d: Path) -> None:
    (d / "adapter_model.safetensors").unlink()
    os.mkfifo(d / "adapter_model.safetensors")


def _pickle_only(d: Path) -> None:
    (d / "adapter_model.safetensors").rename(d / "adapter_model.bin")


def _pickle_beside(d: Path) -> None:
    (d / "adapter_model.bin").write_bytes(b"\x80\x04\x95 not really a pickle, and never opened")


def _sparse_blob(d: Path) -> None:
    with open(d / "optimizer.pt.partial", "wb") as fh:
        fh.truncate(300 << 20)  # sparse: 300 MiB apparent size, no disk used


def _non_utf8_config(d: Path) -> None:
    (d / "adapter_config.json").write_bytes(b'{"r": 8, "note": "\xff\xfe"}')


def _truncate_weights(d: Path) -> None:
    path = d / "adapter_model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])


def _empty_weights(d: Path) -> None:
    rewrite_tensors(d, lambda t: {})


def _bad_shape(d: Path) -> None:
    def edit(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t[f"{PEFT_PREFIX}{Q0}.lora_B.weight"] = np.zeros((512, 8), np.float32)
        return t

    rewrite_tensors(d, edit)


def _int_tensor(d: Path) -> None:
    def edit(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        name = f"{PEFT_PREFIX}{Q0}.lora_A.weight"
        t[name] = t[name].astype(np.int8)
        return t

    rewrite_tensors(d, edit)


def _grow_vocab(d: Path) -> None:
    edit_json(d / "tokenizer.json", lambda j: j["model"]["vocab"].__setitem__("gate_new_piece", 49152))


def _add_token(d: Path) -> None:
    def edit(j: dict[str, Any]) -> None:
        j["added_tokens"].append(
            {
                "id": 49152,
                "content": "<|tool|>",
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        )

    edit_json(d / "tokenizer.json", edit)


def _tok_config(key: str, value: str) -> Callable[[Path], None]:
    return lambda d: edit_json(d / "tokenizer_config.json", lambda j: j.__setitem__(key, value))


def _template(edit: Callable[[str], str]) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        path = d / "chat_template.jinja"
        path.write_text(edit(path.read_text()))

    return apply


FAULTS: dict[str, Fault] = {
    "symlink": Fault("files.symlink", mutate=_symlink_out),
    "no-config": Fault("files.adapter-config-missing", mutate=lambda d: (d / "adapter_config.json").unlink()),
    "no-weights": Fault("files.weights-missing", mutate=lambda d: (d / "adapter_model.safetensors").unlink()),
    "pickle-only": Fault("files.pickle-weights", mutate=_pickle_only),
    "pickle-beside": Fault("files.pickle-ignored", mutate=_pickle_beside),
    "too-large": Fault("files.too-large", mutate=_sparse_blob),
    "weights-fifo": Fault("files.not-regular", mutate=_fifo_weights),
    "config-not-utf8": Fault("files.unreadable", mutate=_non_utf8_config),
    "missing-target-modules": Fault(
        "config.missing-fields", build={"tweak_config": {"target_modules": None}}
    ),
    "rank-is-string": Fault("config.invalid-value", build={"tweak_config": {"r": "8"}}),
    "backtracking-regex": Fault(
        "config.regex-unsafe", build={"tweak_config": {"target_modules": r"(.*\.)*(q|v)_proj"}}
    ),
    "not-lora": Fault("config.peft-type", build={"tweak_config": {"peft_type": "LOHA"}}),
    "rank-24": Fault("adapter.rank-above-max", build={"rank": 24}),
    "rank-below-min": Fault(
        "adapter.rank-below-min",
        build={"rank": 8},
        contract=lambda c: with_section(c, "adapter", rank_min=16),
    ),
    "rank-pattern-32": Fault("adapter.rank-pattern-above-max", build={"rank_pattern": {"q_proj": 32}}),
    "rank-pattern-ignored": Fault("adapter.rank-pattern-ignored", build={"rank_pattern": {"v_proj": 4}}),
    "modules-to-save": Fault(
        "adapter.modules-to-save", build={"tweak_config": {"modules_to_save": ["embed_tokens", "lm_head"]}}
    ),
    "dora": Fault("adapter.dora", build={"tweak_config": {"use_dora": True}}),
    "bias": Fault("adapter.bias", build={"tweak_config": {"bias": "all"}}),
    "lora-bias": Fault("adapter.lora-bias", build={"tweak_config": {"lora_bias": True}}),
    "pissa": Fault(
        "adapter.init-unsupported", build={"tweak_config": {"init_lora_weights": "pissa_niter_4"}}
    ),
    "layer-replication": Fault(
        "adapter.unsupported-variant", build={"tweak_config": {"layer_replication": [[0, 4], [2, 6]]}}
    ),
    "rslora-forbidden": Fault(
        "adapter.policy-forbidden",
        build={"tweak_config": {"use_rslora": True}},
        contract=lambda c: with_section(c, "adapter", forbidden_features=["use_rslora"]),
    ),
    "target-other-arch": Fault(
        "adapter.target-not-in-base",
        build={"tweak_config": {"target_modules": ["q_proj", "v_proj", "query_key_value"]}},
    ),
    "target-not-allowed": Fault(
        "adapter.target-not-allowed",
        build={"targets": ("q_proj", "v_proj", "gate_proj")},
        contract=lambda c: with_section(
            c, "adapter", allowed_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]
        ),
    ),
    "truncated": Fault("weights.corrupt", mutate=_truncate_weights),
    "no-tensors": Fault("weights.empty", mutate=_empty_weights),
    "dora-magnitude": Fault(
        "weights.unsupported-tensor",
        build={"extra_tensors": {f"{PEFT_PREFIX}{Q0}.lora_magnitude_vector": np.ones(576, np.float32)}},
    ),
    "embed-base-layer": Fault(
        "weights.base-layer-dropped",
        build={
            "extra_tensors": {
                f"{PEFT_PREFIX}model.embed_tokens.base_layer.weight": np.zeros((16, 576), np.float32)
            }
        },
    ),
    "embed-base-layer-other-dtype": Fault(
        "weights.base-layer-unverified",
        # a contract for a 16-token vocabulary makes a small base_layer the base's shape; the base's
        # own embed_tokens is BF16, so the F32 copy cannot be compared byte for byte
        contract=lambda c: with_section(c, "base_model", vocab_size=16),
        also=frozenset({"base.fact-mismatch"}),
        build={
            "extra_tensors": {
                f"{PEFT_PREFIX}model.embed_tokens.base_layer.weight": np.zeros((16, 576), np.float32)
            }
        },
    ),
    "runtime-serves-no-lora": Fault(
        "runtime.lora-unserved",
        contract=lambda c: with_section(
            c,
            "serving",
            lora_support=LoraSupport(served=False, reason="the engine dies on the first LoRA request"),
        ),
    ),
    "unknown-module": Fault(
        "weights.unknown-module",
        build={
            "extra_tensors": {
                f"{PEFT_PREFIX}model.layers.0.self_attn.qkv_proj.lora_A.weight": np.zeros(
                    (8, 576), np.float32
                ),
                f"{PEFT_PREFIX}model.layers.0.self_attn.qkv_proj.lora_B.weight": np.zeros(
                    (960, 8), np.float32
                ),
            }
        },
    ),
    "wrong-prefix": Fault(
        "weights.no-matching-module",
        build={
            "rename": lambda n: n.replace("base_model.model.model.", "base_model.model.language_model.model.")
        },
    ),
    "deeper-model": Fault("weights.layer-out-of-range", build={"layers": range(32)}),
    "shape": Fault("weights.shape-mismatch", mutate=_bad_shape),
    "config-rank-differs": Fault(
        "weights.rank-mismatch", build={"tweak_config": {"r": 16, "lora_alpha": 32}}
    ),
    "lonely-a": Fault(
        "weights.pair-incomplete", build={"drop_tensors": [f"{PEFT_PREFIX}{Q0}.lora_B.weight"]}
    ),
    "int8": Fault("weights.dtype-unsupported", mutate=_int_tensor),
    "embedding-unserved": Fault("weights.embedding-not-served", build={"extra_tensors": EMBED_LORA}),
    "lm-head-target-unserved": Fault(
        "adapter.embedding-not-served",
        build={"tweak_config": {"target_modules": ["q_proj", "v_proj", "lm_head"]}},
    ),
    "embedding-vocab": Fault(
        "weights.embedding-vocab",
        contract=phi3_on_vllm_032,
        # the contract claims Phi-3 for a Llama base: check --base also reports that fact
        also=frozenset({"base.fact-mismatch"}),
        build={
            "extra_tensors": {
                f"{PEFT_PREFIX}model.embed_tokens.lora_embedding_A": np.zeros((8, 49160), np.float32),
                f"{PEFT_PREFIX}model.embed_tokens.lora_embedding_B": np.zeros((576, 8), np.float32),
            }
        },
    ),
    "nan": Fault("weights.nonfinite", build={"nan_in": Q0}),
    "vocab": Fault("tokenizer.vocab-differs", mutate=_grow_vocab),
    "added-token": Fault("tokenizer.added-tokens-differ", mutate=_add_token),
    "eos": Fault("tokenizer.eos-changed", mutate=_tok_config("eos_token", "<|endoftext|>")),
    "pad": Fault("tokenizer.pad-changed", mutate=_tok_config("pad_token", "<|endoftext|>")),
    "template-comment": Fault("template.differs", mutate=_template(lambda t: t + "{# trained with gate #}")),
    "template-system": Fault(
        "template.renders-differently",
        mutate=_template(lambda t: t.replace("named SmolLM, trained by Hugging Face", "named Bob")),
    ),
    "template-eot": Fault(
        "template.never-stops",
        mutate=_template(lambda t: t.replace("'<|im_end|>' + '\n'", "'<|endoftext|>' + '\n'")),
        also=frozenset({"template.renders-differently"}),
    ),
    "template-syntax": Fault("template.invalid", mutate=_template(lambda t: t + "{% for %}")),
    "template-escape": Fault(
        "template.unsafe", mutate=_template(lambda t: "{{ ''.__class__.__mro__[1] }}" + t)
    ),
    "template-loop": Fault(
        "template.resource-limit",
        mutate=_template(
            lambda t: "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}" + t
        ),
    ),
    "other-base": Fault(
        "base.identity-mismatch",
        contract=lambda c: with_section(c, "base_model", identity="v2:sha256:" + "0" * 64),
    ),
    "contract-wrong-hidden-size": Fault(
        "base.fact-mismatch", contract=lambda c: with_section(c, "base_model", hidden_size=577)
    ),
}


@pytest.fixture(scope="module")
def contract(default_contract_path: Path) -> Contract:
    return Contract.from_yaml(default_contract_path)


def test_clean_adapter_passes_against_the_real_base(
    clean_adapter: Path, contract: Contract, base_model_dir: Path
):
    report = run_check(clean_adapter, contract, base_model_dir)
    assert report.findings == (), [f.to_dict() for f in report.findings]
    assert report.passed
    assert report.to_dict()["version"] == "1.0"


def test_clean_adapter_passes_on_the_contract_alone(clean_adapter: Path, contract: Contract):
    report = run_check(clean_adapter, contract)
    assert report.findings == (), [f.to_dict() for f in report.findings]


def test_a_bf16_all_module_rank16_adapter_passes(adapter_factory, contract: Contract, base_model_dir: Path):
    adapter = adapter_factory(
        "big",
        rank=16,
        targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        dtype="float16",
    )
    assert run_check(adapter, contract, base_model_dir).passed


def test_every_rule_has_a_fault_adapter():
    assert {r.id for r in all_rules()} == {f.rule for f in FAULTS.values()}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_is_reported_by_exactly_its_rule(
    name: str, adapter_factory, contract: Contract, base_model_dir: Path
):
    fault = FAULTS[name]
    adapter = adapter_factory(name, **fault.build)
    if fault.mutate:
        fault.mutate(adapter)
    used = fault.contract(contract) if fault.contract else contract
    report = run_check(adapter, used, base_model_dir)
    fired = {f.rule for f in report.findings}
    assert fault.rule in fired, [f.to_dict() for f in report.findings]
    assert fired - {fault.rule} <= fault.also, [f.to_dict() for f in report.findings]
    finding = next(f for f in report.findings if f.rule == fault.rule)
    assert finding.message and finding.hint and finding.path
    severity = next(r.severity for r in all_rules() if r.id == fault.rule)
    assert finding.severity == severity
    # a warning passes unless a rule that legitimately fires with it is an error
    assert report.passed == all(f.severity == "warning" for f in report.findings)


def _embedding_adapter(adapter_factory: Any) -> Path:
    return adapter_factory(
        "embeddings",
        extra_tensors={**EMBED_LORA, **LM_HEAD_LORA},
        tweak_config={"target_modules": ["q_proj", "v_proj", "embed_tokens", "lm_head"]},
    )


@pytest.mark.parametrize("with_base", [True, False])
def test_embedding_lora_passes_where_the_vllm_version_serves_it_for_the_architecture(
    adapter_factory, contract: Contract, base_model_dir: Path, with_base: bool
):
    adapter = _embedding_adapter(adapter_factory)
    phi3 = phi3_on_vllm_032(contract)
    allowed = [*contract.adapter.allowed_target_modules, "embed_tokens", "lm_head"]
    phi3 = with_section(phi3, "adapter", allowed_target_modules=allowed)
    report = run_check(adapter, phi3, base_model_dir if with_base else None)
    # with the (Llama) base given, base.fact-mismatch rightly reports the Phi-3 label; not what this tests
    findings = [f for f in report.findings if f.rule != "base.fact-mismatch"]
    assert findings == [], [f.to_dict() for f in findings]


def test_embedding_lora_on_llama_is_refused_naming_runtime_architecture_and_base_modules(
    adapter_factory, contract: Contract
):
    adapter = _embedding_adapter(adapter_factory)
    found = {f.rule: f for f in run_check(adapter, contract).findings}
    assert set(found) == {"adapter.embedding-not-served", "weights.embedding-not-served"}
    for finding in found.values():
        assert "vLLM >=0.26,<0.33" in finding.message and "LlamaForCausalLM" in finding.message
        assert "SmolLM2-135M-Instruct" in finding.hint and "down_proj" in finding.hint
        assert "lm_head" not in finding.hint


def test_an_admitted_version_without_embedding_lora_refuses_it_even_for_phi3(
    adapter_factory, contract: Contract
):
    adapter = _embedding_adapter(adapter_factory)
    phi3_old_too = with_section(phi3_on_vllm_032(contract), "serving", vllm_version=">=0.26,<0.33")
    rules = {f.rule for f in run_check(adapter, phi3_old_too).findings}
    assert rules == {"adapter.embedding-not-served", "weights.embedding-not-served"}


def test_hints_name_the_contracts_base_modules_not_smollm2s(adapter_factory, contract: Contract):
    fused = with_section(
        contract,
        "base_model",
        name="TinyPhi",
        linear_shapes={"qkv_proj": (960, 576), "o_proj": (576, 576)},
        module_paths={
            "qkv_proj": "model.layers.{layer}.self_attn.qkv_proj",
            "o_proj": "model.layers.{layer}.self_attn.o_proj",
        },
    )
    adapter = adapter_factory("qv", base_dir=None, tokenizer=False)
    found = {f.rule: f for f in run_check(adapter, fused).findings}
    hint = found["adapter.target-not-in-base"].hint
    assert "TinyPhi" in hint and "qkv_proj" in hint and "gate_proj" not in hint
    assert "TinyPhi" in found["weights.unknown-module"].hint


def test_rank_24_says_which_server_rank_it_needs(adapter_factory, contract: Contract):
    adapter = adapter_factory("r24", rank=24)
    [finding] = run_check(adapter, contract).findings
    assert "max_lora_rank 16" in finding.message and "--max-lora-rank 32" in finding.message


def test_rank_24_passes_a_contract_serving_max_lora_rank_32(adapter_factory, contract: Contract):
    adapter = adapter_factory("r24ok", rank=24)
    assert run_check(adapter, with_section(contract, "serving", max_lora_rank=32)).passed


def test_pissa_message_follows_the_contracts_vllm_version(adapter_factory, contract: Contract):
    adapter = adapter_factory("pissa", tweak_config={"init_lora_weights": "pissa"})
    [old] = run_check(adapter, contract).findings
    assert "vLLM 0.26.0 accepts it" in old.message and "silently wrong" in old.message
    new_only = with_section(contract, "serving", vllm_version=">=0.32,<0.33")
    [new] = run_check(adapter, new_only).findings
    assert "vLLM refuses it" in new.message


def test_rank_pattern_within_the_limit_is_fine_on_versions_honouring_it(adapter_factory, contract: Contract):
    adapter = adapter_factory("rp", rank_pattern={"v_proj": 4})
    assert run_check(adapter, with_section(contract, "serving", vllm_version=">=0.32,<0.33")).passed


def test_tensors_matching_no_module_are_called_the_silent_base_model_case(
    adapter_factory, contract: Contract
):
    adapter = adapter_factory("silent", **FAULTS["wrong-prefix"].build)
    [finding] = run_check(adapter, contract).findings
    assert "serve base-model output" in finding.message


def test_nan_finding_names_the_tensor_and_count(adapter_factory, contract: Contract):
    adapter = adapter_factory("nan", nan_in=Q0)
    [finding] = run_check(adapter, contract).findings
    assert f"{Q0}.lora_B.weight (1)" in finding.message


def test_never_stops_names_the_token_and_the_stop_ids(
    adapter_factory, contract: Contract, base_model_dir: Path
):
    adapter = adapter_factory("eot")
    FAULTS["template-eot"].mutate(adapter)  # type: ignore[misc]
    report = run_check(adapter, contract, base_model_dir)
    [finding] = [f for f in report.findings if f.rule == "template.never-stops"]
    assert "'<|endoftext|>' (id 0)" in finding.message and "[2]" in finding.message


def test_unsupported_tensor_kinds_are_each_refused(adapter_factory, contract: Contract):
    for i, name in enumerate(
        (
            "lm_head.weight",
            "model.embed_tokens.weight",
            "model.embed_tokens.token_adapter.trainable_tokens_delta",
        )
    ):
        adapter = adapter_factory(
            f"unsup{i}", extra_tensors={f"{PEFT_PREFIX}{name}": np.zeros((4, 576), np.float32)}
        )
        assert [f.rule for f in run_check(adapter, contract).findings] == ["weights.unsupported-tensor"], name


def test_template_in_tokenizer_config_is_checked_too(
    adapter_factory, contract: Contract, base_model_dir: Path
):
    adapter = adapter_factory("legacy", template=None)
    edit_json(adapter / "tokenizer_config.json", lambda j: j.__setitem__("chat_template", "{{ messages }}"))
    report = run_check(adapter, contract, base_model_dir)
    # "{{ messages }}" renders a Python list: another format, and no end-of-turn token at all
    assert {f.rule for f in report.findings} == {"template.renders-differently", "template.never-stops"}
    assert {f.path for f in report.findings} == {"tokenizer_config.json#chat_template"}


def test_an_adapter_without_template_or_tokenizer_passes(
    adapter_factory, contract: Contract, base_model_dir: Path
):
    adapter = adapter_factory("bare", tokenizer=False, template=None)
    assert run_check(adapter, contract, base_model_dir).findings == ()


def test_a_template_differing_only_by_a_final_newline_passes(
    adapter_factory, contract: Contract, base_model_dir
):
    adapter = adapter_factory("newline", template=contract.prompt.chat_template + "\n")
    assert run_check(adapter, contract, base_model_dir).findings == ()


def test_builder_without_base_uses_the_contract_shapes(
    tmp_path: Path, contract: Contract, base_model_dir: Path
):
    from gate.safetensors_io import read_header
    from tests.fixtures.adapters import write_adapter

    with_base = write_adapter(
        tmp_path / "a", base_dir=base_model_dir, targets=("k_proj", "down_proj"), layers=[0]
    )
    contract_only = write_adapter(tmp_path / "b", targets=("k_proj", "down_proj"), layers=[0])
    shapes = [
        {k: v.shape for k, v in read_header(d / "adapter_model.safetensors").tensors.items()}
        for d in (with_base, contract_only)
    ]
    assert shapes[0] == shapes[1] and len(shapes[0]) == 4
    assert run_check(contract_only, contract).passed
