"""Hostile adapter directories: each gives a clear finding or exit 2; nothing hangs, crashes or executes."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pytest

from gate.check import run_check
from gate.contract import Contract
from gate.errors import InputError
from gate.safetensors_io import read_header


@pytest.fixture(scope="module")
def contract(default_contract_path: Path) -> Contract:
    return Contract.from_yaml(default_contract_path)


def rules_of(adapter: Path, contract: Contract, base: Path | None = None) -> dict[str, str]:
    return {f.rule: f.message for f in run_check(adapter, contract, base).findings}


def write_raw_safetensors(path: Path, header: bytes, data: bytes = b"", length: int | None = None) -> None:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)


def test_symlink_out_of_the_directory_is_refused_and_never_read(
    clean_adapter: Path, contract: Contract, tmp_path
):
    secret = tmp_path / "secret.json"
    secret.write_text('{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}')
    (clean_adapter / "adapter_config.json").unlink()
    os.symlink(secret, clean_adapter / "adapter_config.json")
    found = rules_of(clean_adapter, contract)
    assert set(found) == {"files.symlink"}
    assert "outside the adapter directory" in found["files.symlink"]


def test_symlinked_weights_are_not_followed(clean_adapter: Path, contract: Contract, tmp_path):
    real = tmp_path / "elsewhere.safetensors"
    (clean_adapter / "adapter_model.safetensors").rename(real)
    os.symlink(real, clean_adapter / "adapter_model.safetensors")
    assert set(rules_of(clean_adapter, contract)) == {"files.symlink"}


def test_adapter_dir_that_is_a_symlink_is_input_error(clean_adapter: Path, contract: Contract, tmp_path):
    link = tmp_path / "link"
    os.symlink(clean_adapter, link)
    with pytest.raises(InputError, match="symlink"):
        run_check(link, contract)


def test_missing_adapter_dir_is_input_error(contract: Contract, tmp_path):
    with pytest.raises(InputError, match="no such adapter directory"):
        run_check(tmp_path / "nope", contract)


def test_header_length_of_gigabytes_is_a_corrupt_finding(clean_adapter: Path, contract: Contract):
    write_raw_safetensors(clean_adapter / "adapter_model.safetensors", b"{}", length=3 << 30)
    found = rules_of(clean_adapter, contract)
    assert set(found) == {"weights.corrupt"}
    assert "exceeds the 16777216-byte limit" in found["weights.corrupt"]


def test_header_length_past_end_of_file_is_a_corrupt_finding(clean_adapter: Path, contract: Contract):
    write_raw_safetensors(clean_adapter / "adapter_model.safetensors", b'{"a": 1}', length=5000)
    assert "runs past the end" in rules_of(clean_adapter, contract)["weights.corrupt"]


@pytest.mark.parametrize(
    ("header", "data", "expect"),
    [
        (b'{"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', b"\0" * 8, "truncated"),
        (b'{"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}', b"\0" * 12, "needs 16"),
        (b'{"t": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 4]}}', b"\0" * 4, "unknown dtype"),
        (
            b'{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},'
            b' "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}',
            b"\0" * 6,
            "overlaps",
        ),
        (b'{"t": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}', b"\0" * 9, "trailing bytes"),
        (b'{"t": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 2]}}', b"\0" * 2, "non-negative"),
        (b"\xff\xfe{}", b"", "not UTF-8 JSON"),
        (b"[1, 2]", b"", "not a JSON object"),
        (b'{"t": 1, "t": 2}', b"", "duplicate key"),
    ],
)
def test_forged_safetensors_headers_are_refused(tmp_path: Path, header: bytes, data: bytes, expect: str):
    path = tmp_path / "x.safetensors"
    write_raw_safetensors(path, header, data)
    with pytest.raises(InputError, match=expect):
        read_header(path)


def test_truncated_data_is_a_corrupt_finding_not_a_crash(clean_adapter: Path, contract: Contract):
    path = clean_adapter / "adapter_model.safetensors"
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    assert "truncated" in rules_of(clean_adapter, contract)["weights.corrupt"]


def test_non_utf8_json_is_a_finding(clean_adapter: Path, contract: Contract):
    (clean_adapter / "tokenizer_config.json").write_bytes(b'{"eos_token": "\xc3\x28"}')
    found = rules_of(clean_adapter, contract)
    assert set(found) == {"files.unreadable"}
    assert "tokenizer_config.json is not UTF-8" in found["files.unreadable"]


def test_one_gigabyte_adapter_config_is_refused_before_reading(clean_adapter: Path, contract: Contract):
    with open(clean_adapter / "adapter_config.json", "wb") as fh:
        fh.truncate(1 << 30)  # sparse: a 1 GiB file that costs no disk
    started = time.monotonic()
    found = run_check(clean_adapter, contract).findings
    assert time.monotonic() - started < 10
    unreadable = [f for f in found if f.rule == "files.unreadable"]
    assert unreadable and "1073741824 bytes, more than the" in unreadable[0].message


def test_deeply_nested_json_is_a_finding(clean_adapter: Path, contract: Contract):
    (clean_adapter / "adapter_config.json").write_text("[" * 200_000 + "]" * 200_000)
    assert (
        "adapter_config.json is refused: nested deeper than 64 levels"
        in rules_of(clean_adapter, contract)["files.unreadable"]
    )


def test_json_that_is_not_an_object_is_a_finding(clean_adapter: Path, contract: Contract):
    (clean_adapter / "adapter_config.json").write_text(json.dumps(["r", 8]))
    assert "must hold a JSON object" in rules_of(clean_adapter, contract)["files.unreadable"]


def test_a_fifo_named_adapter_config_does_not_block(clean_adapter: Path, contract: Contract):
    (clean_adapter / "adapter_config.json").unlink()
    os.mkfifo(clean_adapter / "adapter_config.json")
    assert (
        "adapter_config.json is a FIFO, not a regular file"
        in rules_of(clean_adapter, contract)["files.not-regular"]
    )


def test_template_that_loops_forever_is_killed(clean_adapter: Path, contract: Contract):
    forever = "{% for i in range(99999) %}{% for j in range(99999) %}{{ i }}{% endfor %}{% endfor %}"
    (clean_adapter / "chat_template.jinja").write_text(forever)
    started = time.monotonic()
    found = rules_of(clean_adapter, contract)
    assert time.monotonic() - started < 10
    assert set(found) == {"template.resource-limit"}


def test_template_that_allocates_without_bound_is_stopped(clean_adapter: Path, contract: Contract):
    (clean_adapter / "chat_template.jinja").write_text("{{ 'x' * 10**12 }}")
    assert set(rules_of(clean_adapter, contract)) == {"template.resource-limit"}


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.system('touch {marker}') }}",
        "{{ joiner.__init__.__globals__['os'].popen('touch {marker}').read() }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ messages.append({'role': 'user', 'content': 'x'}) }}",
        "{{ raise_exception.__globals__['__builtins__']['open']('{marker}', 'w') }}",
        "{% set x = messages.pop() %}",
    ],
)
def test_sandbox_escapes_are_blocked_and_never_execute(
    clean_adapter: Path, contract: Contract, tmp_path: Path, payload: str
):
    marker = tmp_path / "pwned"
    (clean_adapter / "chat_template.jinja").write_text(payload.replace("{marker}", str(marker)))
    found = rules_of(clean_adapter, contract)
    assert set(found) <= {"template.unsafe", "template.invalid"} and found, found
    assert not marker.exists()


def test_template_with_an_include_cannot_read_files(clean_adapter: Path, contract: Contract):
    (clean_adapter / "chat_template.jinja").write_text("{% include '/etc/passwd' %}")
    assert set(rules_of(clean_adapter, contract)) == {"template.invalid"}


def test_pickle_weights_are_never_opened(clean_adapter: Path, contract: Contract, tmp_path: Path):
    (clean_adapter / "adapter_model.safetensors").unlink()
    pickle_path = clean_adapter / "adapter_model.bin"
    pickle_path.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    found = rules_of(clean_adapter, contract)
    assert set(found) == {"files.pickle-weights"}
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "config",
    [
        {"r": 8.0, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        {"r": 10**40, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        {"r": None, "lora_alpha": "x", "target_modules": [1, None]},
        {"r": True, "lora_alpha": float("nan"), "target_modules": "(unclosed"},
        {
            "r": 8,
            "lora_alpha": 16,
            "target_modules": {"q_proj": 1},
            "rank_pattern": ["q"],
            "alpha_pattern": 3,
        },
        {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "rank_pattern": {"(": 4}},
        {"r": 8, "lora_alpha": 16, "target_modules": [], "modules_to_save": {"x": 1}, "bias": 7},
        {"r": -8, "lora_alpha": 0, "target_modules": "", "init_lora_weights": ["pissa"], "peft_type": 3},
    ],
)
def test_nonsense_config_values_give_findings_never_exceptions(
    clean_adapter: Path, contract: Contract, config
):
    (clean_adapter / "adapter_config.json").write_text(json.dumps(config))
    report = run_check(clean_adapter, contract)
    assert not report.passed
    assert all(f.message and f.hint for f in report.findings)


def test_a_rule_that_crashes_fails_the_gate_closed(clean_adapter: Path, contract: Contract, monkeypatch):
    from gate import rules

    def broken(ctx: object) -> list[rules.Hit]:
        raise ZeroDivisionError("boom")

    [dora] = [r for r in rules.all_rules() if r.id == "adapter.dora"]
    replacement = rules.Rule(dora.id, dora.severity, dora.title, dora.hint, broken)
    monkeypatch.setitem(rules._RULES, "adapter.dora", replacement)
    report = run_check(clean_adapter, contract)
    assert not report.passed
    [finding] = report.findings
    assert finding.rule == "adapter.dora" and "ZeroDivisionError: boom" in finding.message


def test_symlink_loops_are_findings(clean_adapter: Path, contract: Contract):
    os.symlink("loop_b", clean_adapter / "loop_a")
    os.symlink("loop_a", clean_adapter / "loop_b")
    os.symlink("tokenizer.json", clean_adapter / "tokenizer_copy.json")
    report = run_check(clean_adapter, contract)
    assert [f.rule for f in report.findings] == ["files.symlink"] * 3
