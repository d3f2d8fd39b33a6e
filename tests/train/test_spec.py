"""The training spec: validation errors name the field or line, and the bundled spec resolves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gate.errors import InputError
from gate.spec import TrainSpec, load_dataset


def _write_spec(tmp_path: Path, base_dir: Path, **changes: object) -> Path:
    data = tmp_path / "train.jsonl"
    if not data.exists():
        data.write_text(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "Capital of Peru?"},
                        {"role": "assistant", "content": "Lima"},
                    ]
                }
            )
            + "\n"
        )
    raw: dict[str, object] = {
        "name": "t",
        "base": {"path": str(base_dir)},
        "dataset": {"path": "train.jsonl"},
        "training": {"max_steps": 2},
    }
    raw.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_bundled_spec_resolves_to_the_serving_template(
    default_spec_path: Path, default_contract_path: Path
) -> None:
    from gate.contract import Contract

    resolved = TrainSpec.from_yaml(default_spec_path).resolve()
    contract = Contract.from_yaml(default_contract_path)
    assert resolved.dataset.rows == 348
    assert resolved.template_is_base
    assert resolved.chat_template_sha256 == contract.prompt.chat_template_sha256
    assert resolved.base_identity == contract.base_model.identity
    assert set(resolved.spec.lora.target_modules) <= set(contract.adapter.allowed_target_modules)


def test_unknown_key_gets_did_you_mean(tmp_path: Path, base_model_dir: Path) -> None:
    path = _write_spec(tmp_path, base_model_dir, lora={"rank": 8})
    with pytest.raises(InputError, match=r"lora\.rank: unknown key; did you mean 'r'\?"):
        TrainSpec.from_yaml(path)


def test_bad_value_names_the_field_and_value(tmp_path: Path, base_model_dir: Path) -> None:
    path = _write_spec(tmp_path, base_model_dir, training={"max_steps": 2, "lr": -1})
    with pytest.raises(InputError, match=r"training\.lr: .*greater than 0.*got -1"):
        TrainSpec.from_yaml(path)


def test_steps_and_epochs_are_exclusive(tmp_path: Path, base_model_dir: Path) -> None:
    path = _write_spec(tmp_path, base_model_dir, training={"max_steps": 2, "epochs": 1})
    with pytest.raises(InputError, match=r"exactly one of training\.max_steps or training\.epochs"):
        TrainSpec.from_yaml(path)


def test_malformed_row_names_its_line(tmp_path: Path) -> None:
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    data = tmp_path / "d.jsonl"
    data.write_text(f"{good}\n{good}\n{{not json\n")
    with pytest.raises(InputError, match=r"d\.jsonl:3: not valid JSON"):
        load_dataset(data)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": []}, "'messages' must be a non-empty list"),
        ({"messages": [{"role": "user", "content": "q"}]}, "last message must be the assistant's"),
        (
            {"messages": [{"role": "usr", "content": "q"}, {"role": "assistant", "content": "a"}]},
            "did you mean 'user'",
        ),
        ({"messages": [{"role": "assistant", "content": "a"}]}, "no user message"),
        ({"text": "x"}, r"unknown key\(s\) \['text'\]"),
    ],
)
def test_invalid_rows_are_refused_with_line_number(tmp_path: Path, row: object, message: str) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError, match=rf"d\.jsonl:2: .*{message}"):
        load_dataset(data)


def test_dataset_digest_is_over_the_exact_bytes(tmp_path: Path) -> None:
    import hashlib

    row = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    data = tmp_path / "d.jsonl"
    data.write_bytes((row + "\r\n").encode())
    snap = load_dataset(data)
    assert snap.sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert snap.rows == 1


def test_unknown_target_module_gets_did_you_mean(tmp_path: Path, base_model_dir: Path) -> None:
    path = _write_spec(tmp_path, base_model_dir, lora={"target_modules": ["q_proj", "v_prj"]})
    with pytest.raises(
        InputError, match=r"'v_prj' \(did you mean 'v_proj'\?\) not a linear module of the base"
    ):
        TrainSpec.from_yaml(path).resolve()


def test_base_identity_mismatch_is_refused(tmp_path: Path, base_model_dir: Path) -> None:
    path = _write_spec(
        tmp_path, base_model_dir, base={"path": str(base_model_dir), "identity": "v2:sha256:" + "0" * 64}
    )
    with pytest.raises(InputError, match=r"base\.identity: the base at .* is v2:sha256:"):
        TrainSpec.from_yaml(path).resolve()


def test_template_file_replaces_the_training_template(tmp_path: Path, base_model_dir: Path) -> None:
    (tmp_path / "t.jinja").write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    path = _write_spec(tmp_path, base_model_dir, prompt={"template_file": "t.jinja"})
    resolved = TrainSpec.from_yaml(path).resolve()
    assert not resolved.template_is_base
    assert resolved.chat_template.startswith("{% for m in messages %}")
