"""The base identity (format v2) names the content: same across transformers versions, not other weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gate.contract import Contract
from gate.digests import files_digest
from gate.errors import InputError
from gate.identity import compute_identity
from gate.safetensors_io import read_header
from tests.contracts._bases import resaved


def test_a_base_saved_by_two_transformers_versions_has_one_identity(llama_base: Path):
    older = resaved(llama_base, "llamafactory")  # transformers 5.6 loads and saves it again
    assert (llama_base / "config.json").read_bytes() != (older / "config.json").read_bytes()
    # the old byte digest (format v1) told them apart; the content identity does not
    v1_files = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")
    assert files_digest(llama_base, v1_files) != files_digest(older, v1_files)
    assert compute_identity(llama_base, use_cache=False) == compute_identity(older, use_cache=False)


def test_changing_one_weight_changes_only_the_weights_part(llama_base: Path, tmp_path: Path):
    other = tmp_path / "other"
    shutil.copytree(llama_base, other)
    weights = other / "model.safetensors"
    header = read_header(weights)
    info = header.tensors["model.layers.1.self_attn.k_proj.weight"]
    offset = header.data_start + info.data_offsets[0] + 6
    data = bytearray(weights.read_bytes())
    data[offset] ^= 0x01  # one bit of one bf16 value
    weights.write_bytes(bytes(data))
    a, b = compute_identity(llama_base), compute_identity(other)
    assert a.identity != b.identity
    assert [k for k in a.parts if a.parts[k] != b.parts[k]] == ["weights"]
    assert [k for k in a.tensors if a.tensors[k] != b.tensors[k]] == [
        "model.layers.1.self_attn.k_proj.weight"
    ]


def test_a_renamed_tensor_or_shard_layout_is_content_not_bytes(llama_base: Path, tmp_path: Path):
    # volatile config keys are not part of the identity; a real config change is
    other = tmp_path / "other"
    shutil.copytree(llama_base, other)
    text = (other / "config.json").read_text()
    (other / "config.json").write_text(text.replace('"use_cache": true', '"use_cache": false'))
    assert compute_identity(other).identity == compute_identity(llama_base).identity
    (other / "config.json").write_text(text.replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e-05'))
    changed = compute_identity(other)
    assert changed.identity != compute_identity(llama_base).identity
    assert changed.parts["weights"] == compute_identity(llama_base).parts["weights"]


def test_a_contract_with_a_v1_identity_gets_the_migration_message(llama_contract: Path, tmp_path: Path):
    text = llama_contract.read_text()
    old = tmp_path / "old.yaml"
    old.write_text(text.replace("identity: v2:sha256:", "identity: sha256:"))
    with pytest.raises(InputError) as err:
        Contract.from_yaml(old)
    assert "base_model.identity" in err.value.message
    assert "identity format v1" in err.value.message
    assert "gate base add" in err.value.message and "gate contract init" in err.value.message
