"""The contract model, the shipped SmolLM2 contract and its JSON Schema."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from gate.base_model import base_identity
from gate.contract import Contract, schema_json
from gate.contract_files import contract_digest
from gate.errors import InputError
from gate.safetensors_io import read_header
from gate.templates import RenderCase, render_many


@pytest.fixture(scope="module")
def contract(default_contract_path: Path) -> Contract:
    return Contract.from_yaml(default_contract_path)


def write_variant(tmp_path: Path, source: Path, old: str, new: str, *, count: int = 1) -> Path:
    """A copy of the shipped contract (and its template file) with one text edit."""
    text = source.read_text()
    assert old in text, old
    (tmp_path / "smollm2-chat.jinja").write_bytes((source.parent / "smollm2-chat.jinja").read_bytes())
    target = tmp_path / "variant.yaml"
    target.write_text(text.replace(old, new, count))
    return target


def test_checked_in_schema_is_generated_from_the_model(default_contract_path: Path):
    checked_in = (default_contract_path.parent / "contract.schema.json").read_text()
    assert checked_in == schema_json(), "run: python -m gate.contract --write-schema"


def test_shipped_contract_validates_against_the_json_schema(default_contract_path: Path):
    schema = json.loads((default_contract_path.parent / "contract.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(default_contract_path.read_text()), schema)


def test_shipped_contract_pins_the_real_base(contract: Contract, base_model_dir: Path):
    assert contract.base_model.identity == base_identity(base_model_dir)
    config = json.loads((base_model_dir / "config.json").read_text())
    assert contract.base_model.architecture == config["architectures"][0]
    assert contract.base_model.vocab_size == config["vocab_size"]
    assert contract.base_model.num_hidden_layers == config["num_hidden_layers"]
    assert contract.base_model.eos_token_ids == [config["eos_token_id"]]
    tokenizer = (base_model_dir / "tokenizer.json").read_bytes()
    assert contract.base_model.tokenizer_sha256 == hashlib.sha256(tokenizer).hexdigest()


def test_shipped_linear_shapes_are_the_base_header_shapes(contract: Contract, base_model_dir: Path):
    tensors = read_header(base_model_dir / "model.safetensors").tensors
    for layer in (0, contract.base_model.num_hidden_layers - 1):
        for module, shape in contract.base_model.linear_shapes.items():
            assert tensors[contract.base_model.module_path(module, layer) + ".weight"].shape == shape
    assert sorted(contract.adapter.allowed_target_modules) == sorted(contract.base_model.linear_shapes)


def test_serving_template_is_the_bases_own(contract: Contract, base_model_dir: Path):
    assert contract.prompt.chat_template == (base_model_dir / "chat_template.jinja").read_text()
    assert (
        contract.prompt.chat_template_sha256
        == hashlib.sha256(contract.prompt.chat_template.encode()).hexdigest()
    )


def test_fixtures_render_exactly_with_the_serving_template(contract: Contract):
    cases = [
        RenderCase(
            messages=[m.model_dump() for m in f.messages], add_generation_prompt=f.add_generation_prompt
        )
        for f in contract.prompt.fixtures
    ]
    results = render_many(contract.prompt.chat_template, cases)
    assert [r.text for r in results] == [f.expected for f in contract.prompt.fixtures]


def test_defaults_match_vllm(contract: Contract):
    assert contract.serving.max_lora_rank == 16 and contract.serving.max_loras == 4
    assert contract.serving.specifier().contains("0.26.0") and contract.serving.specifier().contains("0.32.0")
    assert any("capital of France" in m.content for p in contract.smoke.prompts for m in p.messages)
    assert {t.task for t in contract.eval.tasks} == {"capitals_terse", "smollm2_mc"}
    assert contract.signing.method == "key" and contract.approval.required is False


def test_contract_exposes_source_path_and_digest(contract: Contract, default_contract_path: Path):
    assert contract.source_path == default_contract_path
    assert contract.yaml_sha256 == hashlib.sha256(default_contract_path.read_bytes()).hexdigest()
    # The contract's digest covers its YAML and every file it references (eval tasks + data, template).
    files = {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in contract.referenced_files().items()}
    assert contract.sha256 == contract_digest(contract.yaml_sha256, files)
    assert (
        contract.resolve(contract.eval.tasks_dir)
        == default_contract_path.parent.parent / "examples/smollm2/eval"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("max_lora_rank: 16", "max_lora_rank: 24", "serving.max_lora_rank: must be one of 1, 8, 16, 32"),
        ("  max_loras: 4", "  max_lora: 4", "serving.max_lora: unknown key; did you mean 'max_loras'?"),
        ("  architecture: LlamaForCausalLM\n", "", "base_model.architecture: required field is missing"),
        ('vllm_version: ">=0.26,<0.33"', 'vllm_version: "newest"', "serving.vllm_version: not a PEP 440"),
        ("  max_loras: 4", "  max_loras: 0", "serving.max_loras: Input should be greater than or equal to 1"),
        ("chat_template_sha256: 872b", "chat_template_sha256: 972b", "prompt: chat_template_sha256"),
        ("    - task: smollm2_mc", "    - task: smollm2_mc\n      kind: generate", "duplicate key 'kind'"),
        ("      kind: multiple_choice", "      kind: choices", "eval.tasks.1.kind: must be one of generate"),
        (
            "  identity: v2:sha256:",
            "  identity: md5:",
            "base_model.identity: Value error, not a base identity",
        ),
        (
            "  identity: v2:sha256:",
            "  identity: sha256:",
            "base_model.identity: Value error, identity format v1",
        ),
        ("[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]", "[q_proj, qkv_proj]", "qkv_proj"),
        ("  method: key", "  method: sigstore", "signing: Value error, method sigstore needs"),
    ],
)
def test_malformed_contract_names_the_field(
    default_contract_path: Path, tmp_path: Path, old: str, new: str, message: str
):
    path = write_variant(tmp_path, default_contract_path, old, new)
    with pytest.raises(InputError) as err:
        Contract.from_yaml(path)
    assert str(path) in err.value.message
    assert message.replace("Value error, ", "") in err.value.message


def test_every_error_is_listed_not_just_the_first(default_contract_path: Path, tmp_path: Path):
    path = write_variant(
        tmp_path, default_contract_path, "max_lora_rank: 16", "max_lora_rank: 24\n  extra: 1"
    )
    with pytest.raises(InputError) as err:
        Contract.from_yaml(path)
    assert "serving.max_lora_rank" in err.value.message and "serving.extra: unknown key" in err.value.message


def test_unreadable_contracts_are_input_errors(tmp_path: Path):
    cases = {
        "binary.yaml": b"name: \xff\xfe",
        "list.yaml": b"- a\n- b\n",
        "broken.yaml": b"name: [unclosed",
        "python.yaml": b"!!python/object/apply:os.system ['true']",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=name):
            Contract.from_yaml(tmp_path / name)
    with pytest.raises(InputError, match="no such contract"):
        Contract.from_yaml(tmp_path / "absent.yaml")


def test_oversized_contract_is_refused_before_parsing(tmp_path: Path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:
        fh.truncate(2 << 20)
    with pytest.raises(InputError, match="more than the 262144-byte limit"):
        Contract.from_yaml(big)


def test_template_file_that_is_a_symlink_is_refused(default_contract_path: Path, tmp_path: Path):
    path = write_variant(tmp_path, default_contract_path, "name: smollm2-vllm", "name: smollm2-vllm")
    (tmp_path / "smollm2-chat.jinja").unlink()
    os.symlink(default_contract_path.parent / "smollm2-chat.jinja", tmp_path / "smollm2-chat.jinja")
    with pytest.raises(InputError, match="symlink"):
        Contract.from_yaml(path)


def test_resolve_refuses_paths_through_symlinks(default_contract_path: Path, tmp_path: Path):
    path = write_variant(tmp_path, default_contract_path, "name: smollm2-vllm", "name: smollm2-vllm")
    os.symlink("/etc", tmp_path / "evil")
    contract = Contract.from_yaml(path)
    assert contract.resolve("tasks") == tmp_path / "tasks"
    with pytest.raises(InputError, match="symlink"):
        contract.resolve("evil/passwd")


def test_contract_models_are_frozen(contract: Contract):
    with pytest.raises(Exception, match="frozen"):
        contract.serving.max_lora_rank = 32  # type: ignore[misc]


@pytest.mark.parametrize(
    ("rel", "error"),
    [
        ("../../../etc", "leads outside"),
        ("/etc", "is an absolute path"),
        ("~/tasks", "is an absolute path"),
        ("", "non-empty relative path"),
    ],
)
def test_referenced_paths_stay_inside_the_contracts_directory(tmp_path: Path, rel: str, error: str) -> None:
    from gate.resources import contracts_dir, default_contract

    shutil.copy(contracts_dir() / "smollm2-chat.jinja", tmp_path / "smollm2-chat.jinja")
    (tmp_path / "c.yaml").write_text(default_contract().read_text())
    contract = Contract.from_yaml(tmp_path / "c.yaml")
    with pytest.raises(InputError, match=error):
        contract.resolve(rel)


def test_a_referenced_directory_behind_a_symlink_is_refused(tmp_path: Path) -> None:
    from gate.resources import contracts_dir, default_contract

    shutil.copy(contracts_dir() / "smollm2-chat.jinja", tmp_path / "smollm2-chat.jinja")
    (tmp_path / "c.yaml").write_text(default_contract().read_text())
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "tasks")
    with pytest.raises(InputError, match="goes through the symlink"):
        Contract.from_yaml(tmp_path / "c.yaml").resolve("tasks/x.yaml")


def test_the_shipped_contract_may_reach_the_shipped_examples() -> None:
    from gate.resources import default_contract, examples_dir

    contract = Contract.from_yaml(default_contract())
    assert contract.resolve("../examples/smollm2/eval") == examples_dir() / "smollm2" / "eval"
