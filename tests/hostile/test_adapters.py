"""Hostile adapter directories through ``gate check``: each ends in its own finding, bounded.

Every case builds a real adapter directory (real safetensors written by the
safetensors library, raw bytes where the file must be corrupt, FIFOs, sockets,
sparse files), runs ``gate check`` on it in a fresh process through the
harness (exit 1, no traceback, <= 5 s, <= 512 MiB, nothing written outside
out/) and asserts the rule id and the words of the finding it must give.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from gate.resources import default_contract
from tests.fixtures.adapters import PEFT_PREFIX, write_adapter
from tests.hostile._harness import Outcome, run_gate

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
Q0 = "model.layers.0.self_attn.q_proj"


def raw_safetensors(
    path: Path, header: bytes | dict[str, Any], data: bytes = b"", length: int | None = None
) -> None:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob) if length is None else length) + blob + data)


def edit_config(d: Path, **changes: Any) -> None:
    cfg = json.loads((d / CONFIG).read_text())
    cfg.update(changes)
    (d / CONFIG).write_text(json.dumps(cfg))


def config_text(d: Path, text: str | bytes) -> None:
    (d / CONFIG).write_bytes(text.encode() if isinstance(text, str) else text)


def replace_with_fifo(d: Path, name: str) -> None:
    (d / name).unlink(missing_ok=True)
    os.mkfifo(d / name)


def replace_with_socket(d: Path, name: str) -> None:
    (d / name).unlink(missing_ok=True)
    here = os.getcwd()
    os.chdir(d)  # a socket path is limited to 108 bytes; bind relative to the directory
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind(name)
        s.close()
    finally:
        os.chdir(here)


def sparse(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)


def huge_sparse_weights(d: Path) -> None:
    # a valid header for one 16 GiB tensor; the data is a hole that costs no disk
    size = 16 << 30
    header = json.dumps(
        {
            f"{PEFT_PREFIX}{Q0}.lora_A.weight": {
                "dtype": "F32",
                "shape": [size // 4],
                "data_offsets": [0, size],
            }
        }
    ).encode()
    path = d / WEIGHTS
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with open(path, "r+b") as fh:
        fh.truncate(8 + len(header) + size)


def tensors(d: Path, arrays: dict[str, np.ndarray]) -> None:
    save_file(arrays, str(d / WEIGHTS), metadata={"format": "pt"})


def many_tiny_tensors(d: Path) -> None:
    one = np.zeros((1,), dtype=np.float32)
    tensors(d, {f"t{i}": one for i in range(100_000)})


def nan_weights(d: Path) -> None:
    a = np.zeros((8, 576), dtype=np.float32)
    b = np.zeros((576, 8), dtype=np.float32)
    b[3, 3] = np.inf
    tensors(d, {f"{PEFT_PREFIX}{Q0}.lora_A.weight": a, f"{PEFT_PREFIX}{Q0}.lora_B.weight": b})
    edit_config(d, target_modules=["q_proj"])


def markup_tensor(name: str) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        tensors(d, {name: np.zeros((2,), dtype=np.float32)})

    return build


def odd_symlink(name: bytes, target: str = "/etc/hostname") -> Callable[[Path], None]:
    def build(d: Path) -> None:
        os.symlink(target, os.path.join(os.fsencode(d), name))

    return build


def pickle_bomb(d: Path) -> None:
    (d / WEIGHTS).unlink()
    marker = d.parent / "pwned"
    (d / "adapter_model.bin").write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")


def deep_tokenizer(d: Path) -> None:
    (d / "tokenizer.json").write_text('{"model": ' + "[" * 100_000 + "]" * 100_000 + "}")


def many_entries(d: Path) -> None:
    sub = d / "junk"
    sub.mkdir()
    for i in range(10_050):
        (sub / str(i)).touch()


def rank_pattern_keys(count: int, value: int, *, regex: bool = False) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        if regex:
            keys = {f"layers\\.{i}\\..*q_proj": value for i in range(count)}
        else:
            keys = {f"k{i}": value for i in range(count)}
            keys["q_proj"] = value
        edit_config(d, rank_pattern=keys)

    return build


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], None]
    rule: str
    text: str
    table: bool = False  # run the table renderer instead of --json (terminal output cases)


def _cfg(**changes: Any) -> Callable[[Path], None]:
    return lambda d: edit_config(d, **changes)


def _raw(
    header: bytes | dict[str, Any], data: bytes = b"", length: int | None = None
) -> Callable[[Path], None]:
    return lambda d: raw_safetensors(d / WEIGHTS, header, data, length)


def _t(dtype: Any, shape: Any, offsets: Any) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


CASES: dict[str, Case] = {
    # --- file types: only regular files are read, nothing blocks --------------------------------
    "weights-fifo": Case(
        lambda d: replace_with_fifo(d, WEIGHTS), "files.not-regular", f"{WEIGHTS} is a FIFO"
    ),
    "config-fifo": Case(lambda d: replace_with_fifo(d, CONFIG), "files.not-regular", f"{CONFIG} is a FIFO"),
    "template-fifo": Case(
        lambda d: replace_with_fifo(d, "chat_template.jinja"),
        "files.not-regular",
        "chat_template.jinja is a FIFO",
    ),
    "weights-directory": Case(
        lambda d: ((d / WEIGHTS).unlink(), (d / WEIGHTS).mkdir()), "files.not-regular", "is a directory"
    ),
    "tokenizer-socket": Case(
        lambda d: replace_with_socket(d, "tokenizer.json"), "files.not-regular", "tokenizer.json is a socket"
    ),
    "config-symlink-to-passwd": Case(
        lambda d: ((d / CONFIG).unlink(), os.symlink("/etc/passwd", d / CONFIG)),
        "files.symlink",
        "outside the adapter directory",
    ),
    "weights-symlink-to-device": Case(
        lambda d: ((d / WEIGHTS).unlink(), os.symlink("/dev/zero", d / WEIGHTS)),
        "files.symlink",
        "'/dev/zero'",
    ),
    "dangling-symlink": Case(
        lambda d: ((d / WEIGHTS).unlink(), os.symlink("nowhere.safetensors", d / WEIGHTS)),
        "files.symlink",
        "nowhere.safetensors",
    ),
    "dotdot-symlink-name": Case(odd_symlink(b"..evil..", "../../.."), "files.symlink", "..evil.."),
    # --- sizes: refused before reading; nothing scanned after a size rule failed ----------------
    "sparse-16gib-weights": Case(huge_sparse_weights, "files.too-large", "were not scanned further"),
    "sparse-1gib-config": Case(lambda d: sparse(d / CONFIG, 1 << 30), "files.unreadable", "1073741824 bytes"),
    "ten-thousand-entries": Case(many_entries, "files.too-large", "more than 10000 entries"),
    "zero-length-weights": Case(lambda d: (d / WEIGHTS).write_bytes(b""), "weights.corrupt", "too short"),
    "zero-length-config": Case(lambda d: config_text(d, ""), "files.unreadable", "is not valid JSON"),
    "giant-template-file": Case(
        lambda d: (d / "chat_template.jinja").write_text("x" * (300 << 10)),
        "files.unreadable",
        "more than the 262144-byte limit",
    ),
    # --- JSON: finite numbers, no duplicates, bounded depth and digits -------------------------
    "alpha-nan": Case(
        lambda d: config_text(d, '{"r": 8, "lora_alpha": NaN, "target_modules": ["q_proj", "v_proj"]}'),
        "files.unreadable",
        "NaN is not a finite number",
    ),
    "alpha-infinity": Case(
        lambda d: config_text(d, '{"r": 8, "lora_alpha": Infinity, "target_modules": ["q_proj"]}'),
        "files.unreadable",
        "Infinity is not a finite number",
    ),
    "alpha-minus-infinity": Case(
        lambda d: config_text(d, '{"r": 8, "lora_alpha": -Infinity, "target_modules": ["q_proj"]}'),
        "files.unreadable",
        "-Infinity is not a finite number",
    ),
    "dropout-overflows-to-inf": Case(
        lambda d: config_text(
            d, '{"r": 8, "lora_alpha": 16, "lora_dropout": 1e999, "target_modules": ["q_proj"]}'
        ),
        "files.unreadable",
        "1e999 is not a finite number",
    ),
    "rank-of-5000-digits": Case(
        lambda d: config_text(d, '{"r": ' + "9" * 5000 + ', "lora_alpha": 16, "target_modules": ["q_proj"]}'),
        "files.unreadable",
        "an integer of 5000 digits",
    ),
    "duplicate-rank": Case(
        lambda d: config_text(d, '{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "r": 64}'),
        "files.unreadable",
        "duplicate key 'r'",
    ),
    "config-nested-100k": Case(
        lambda d: config_text(d, '{"r": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        "files.unreadable",
        "nested deeper than 64 levels",
    ),
    "config-is-array": Case(
        lambda d: config_text(d, '["r", 8]'), "files.unreadable", "must hold a JSON object"
    ),
    "config-not-utf8": Case(lambda d: config_text(d, b'{"r": "\xff\xfe"}'), "files.unreadable", "not UTF-8"),
    "tokenizer-nested-100k": Case(
        deep_tokenizer, "files.unreadable", "tokenizer.json is refused: nested deeper"
    ),
    # --- adapter_config.json: wrong types and ranges everywhere --------------------------------
    "rank-zero": Case(_cfg(r=0), "config.invalid-value", "r must be a positive integer (got 0)"),
    "rank-negative": Case(_cfg(r=-8), "config.invalid-value", "r must be a positive integer (got -8)"),
    "rank-float": Case(_cfg(r=8.5), "config.invalid-value", "(got 8.5)"),
    "rank-bool": Case(_cfg(r=True), "config.invalid-value", "(got True)"),
    "rank-string": Case(_cfg(r="8"), "config.invalid-value", "(got '8')"),
    "alpha-string": Case(
        _cfg(lora_alpha="16"), "config.invalid-value", "lora_alpha must be a positive number"
    ),
    "alpha-negative": Case(
        _cfg(lora_alpha=-1), "config.invalid-value", "lora_alpha must be a positive number"
    ),
    "targets-number": Case(
        _cfg(target_modules=7), "config.invalid-value", "target_modules must be a non-empty"
    ),
    "targets-empty-list": Case(_cfg(target_modules=[]), "config.invalid-value", "(got [])"),
    "targets-bad-regex": Case(
        _cfg(target_modules="(unclosed"), "config.invalid-value", "is not a valid regex"
    ),
    "rank-pattern-not-numbers": Case(
        _cfg(rank_pattern={"q_proj": "x"}), "config.invalid-value", "rank_pattern must map module patterns"
    ),
    "rank-pattern-bad-regex": Case(
        _cfg(rank_pattern={"(": 4}), "config.invalid-value", "rank_pattern key '(' is not a valid regex"
    ),
    "peft-type-number": Case(_cfg(peft_type=3), "config.peft-type", "peft_type is 3"),
    "huge-modules-to-save": Case(
        _cfg(modules_to_save=[f"m{i}" for i in range(50_000)]), "adapter.modules-to-save", "..."
    ),
    "missing-everything": Case(lambda d: config_text(d, "{}"), "config.missing-fields", "r, lora_alpha"),
    # --- regexes PEFT and vLLM run with Python's backtracking re ------------------------------
    "targets-nested-quantifier": Case(
        _cfg(target_modules="(a+)+$"), "config.regex-unsafe", "nests a variable repetition"
    ),
    "targets-repeated-alternation": Case(
        _cfg(target_modules="(.|model)*q_proj"), "config.regex-unsafe", "repeats an alternation"
    ),
    "targets-backreference": Case(
        _cfg(target_modules=r"(\w)\1.*"), "config.regex-unsafe", "only a backtracking engine"
    ),
    "targets-lookahead": Case(
        _cfg(target_modules="(?=.*q_proj).*"), "config.regex-unsafe", "only a backtracking engine"
    ),
    "targets-many-stars": Case(
        _cfg(target_modules=".*" * 12 + "q_proj"), "config.regex-unsafe", "unbounded repetitions"
    ),
    "targets-5000-chars": Case(
        _cfg(target_modules="a" * 5000), "config.regex-unsafe", "5000 characters long"
    ),
    "rank-pattern-catastrophic-key": Case(
        _cfg(rank_pattern={"(x+x+)+y": 4}), "config.regex-unsafe", "rank_pattern key '(x+x+)+y' nests"
    ),
    "alpha-pattern-catastrophic-key": Case(
        _cfg(alpha_pattern={"([a-z]*)*q": 4}), "config.regex-unsafe", "alpha_pattern key"
    ),
    "rank-pattern-50000-keys": Case(rank_pattern_keys(50_000, 4), "config.regex-unsafe", "has 50001 keys"),
    "rank-pattern-5000-literal-keys": Case(
        rank_pattern_keys(5_000, 4), "weights.rank-mismatch", "has rank 8"
    ),
    "rank-pattern-200-regex-keys": Case(
        rank_pattern_keys(200, 4, regex=True), "config.regex-unsafe", "one regex key too many"
    ),
    # --- safetensors header lies ------------------------------------------------------------------
    "header-length-2-63": Case(
        _raw(b"{}", length=1 << 63), "weights.corrupt", "exceeds the 16777216-byte limit"
    ),
    "header-past-eof": Case(_raw(b'{"a": 1}', length=5000), "weights.corrupt", "runs past the end"),
    "offsets-overlap": Case(
        _raw({"a": _t("U8", [4], [0, 4]), "b": _t("U8", [4], [2, 6])}, b"\0" * 6),
        "weights.corrupt",
        "overlaps",
    ),
    "offsets-gap": Case(
        _raw({"b": _t("U8", [2], [4, 6]), "a": _t("U8", [2], [0, 2])}, b"\0" * 6),
        "weights.corrupt",
        "gap of 2",
    ),
    "offsets-negative": Case(
        _raw({"a": _t("U8", [2], [-2, 0])}, b"\0" * 2), "weights.corrupt", "data_offsets"
    ),
    "offsets-reversed": Case(
        _raw({"a": _t("U8", [2], [2, 0])}, b"\0" * 2), "weights.corrupt", "begin <= end"
    ),
    "offsets-float": Case(
        _raw({"a": _t("U8", [2], [0.0, 2.0])}, b"\0" * 2), "weights.corrupt", "data_offsets"
    ),
    "shape-product-overflow": Case(
        _raw({"a": _t("F32", [1 << 62, 1 << 62], [0, 8])}, b"\0" * 8), "weights.corrupt", "needs"
    ),
    "shape-bool": Case(
        _raw({"a": _t("U8", [True], [0, 1])}, b"\0"), "weights.corrupt", "non-negative integers"
    ),
    "shape-negative": Case(
        _raw({"a": _t("U8", [-1], [0, 1])}, b"\0"), "weights.corrupt", "non-negative integers"
    ),
    "dtype-unknown": Case(
        _raw({"a": _t("F128", [1], [0, 16])}, b"\0" * 16), "weights.corrupt", "unknown dtype"
    ),
    "dtype-list": Case(_raw({"a": _t(["F32"], [1], [0, 4])}, b"\0" * 4), "weights.corrupt", "unknown dtype"),
    "header-array": Case(_raw(b"[1, 2]"), "weights.corrupt", "not a JSON object"),
    "header-duplicate-tensor": Case(
        _raw(b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": 1}', b"\0"),
        "weights.corrupt",
        "duplicate key 'a'",
    ),
    "header-nested-metadata": Case(
        _raw(b'{"__metadata__": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"),
        "weights.corrupt",
        "nested too deeply",
    ),
    "header-metadata-not-strings": Case(_raw({"__metadata__": {"x": 1}}), "weights.corrupt", "map strings"),
    "header-nan-offset": Case(
        _raw(b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, NaN]}}'), "weights.corrupt", "NaN"
    ),
    "header-not-utf8": Case(_raw(b"\xff\xfe{}"), "weights.corrupt", "not UTF-8 JSON"),
    "data-truncated": Case(_raw({"a": _t("F32", [4], [0, 16])}, b"\0" * 8), "weights.corrupt", "truncated"),
    "data-trailing": Case(_raw({"a": _t("U8", [2], [0, 2])}, b"\0" * 9), "weights.corrupt", "trailing bytes"),
    "hundred-thousand-tensors": Case(many_tiny_tensors, "weights.unsupported-tensor", "100000 tensor(s)"),
    "inf-in-weights": Case(nan_weights, "weights.nonfinite", "1 NaN/Inf value(s)"),
    "pickle-that-runs-code": Case(pickle_bomb, "files.pickle-weights", "it was not opened"),
    # --- terminal output: markup and escapes are shown, never acted on -----------------------------
    "tensor-named-bold-markup": Case(
        markup_tensor("[bold]x[/bold]"), "weights.unsupported-tensor", "[bold]x[/bold]", table=True
    ),
    "tensor-named-closing-tag": Case(markup_tensor("[/]"), "weights.unsupported-tensor", "[/]", table=True),
    "tensor-named-link": Case(
        markup_tensor("[link=https://evil.example]click[/link]"),
        "weights.unsupported-tensor",
        "[link=https://evil.example]",
        table=True,
    ),
    "file-named-csi": Case(
        odd_symlink(b"\x1b[2J\x1b[31mred"), "files.symlink", "\\x1b[2J\\x1b[31mred", table=True
    ),
    "file-named-osc": Case(
        odd_symlink(b"\x1b]0;owned\x07title"), "files.symlink", "\\x1b]0;owned\\x07title", table=True
    ),
    "file-named-bidi": Case(
        odd_symlink("evil\u202egnp.json".encode()), "files.symlink", "evil\\u202egnp.json", table=True
    ),
    "file-named-c1-csi": Case(odd_symlink("x\u009b31m".encode()), "files.symlink", "x\\x9b31m", table=True),
    "file-named-not-utf8": Case(
        odd_symlink(b"\xff\xfe.json"), "files.symlink", "\\xff\\xfe.json", table=True
    ),
    "file-named-carriage-return": Case(
        odd_symlink(b"ok\rFAKE PASSED"), "files.symlink", "ok\\x0dFAKE", table=True
    ),
    # --- chat templates are code: sandboxed, bounded ------------------------------------------------
    "template-sandbox-escape": Case(
        lambda d: (d / "chat_template.jinja").write_text(
            "{{ cycler.__init__.__globals__.os.system('touch " + str(d.parent / "pwned") + "') }}"
        ),
        "template.unsafe",
        "the sandbox blocked",
    ),
    # (a template that loops forever is killed at the 2 s render deadline: tests/check/test_hostile.py)
    "template-allocates": Case(
        lambda d: (d / "chat_template.jinja").write_text("{{ 'x' * 10**12 }}"),
        "template.resource-limit",
        "repetition would make",
    ),
    "template-includes-passwd": Case(
        lambda d: (d / "chat_template.jinja").write_text("{% include '/etc/passwd' %}"),
        "template.invalid",
        "the chat template fails",
    ),
}


@pytest.fixture(scope="module")
def clean_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A passing adapter (two layers, no tokenizer copy: cheap) to copy per case."""
    return write_adapter(tmp_path_factory.mktemp("clean") / "adapter", layers=[0, 1], tokenizer=False)


def check(sandbox: Path, adapter: Path, *, table: bool) -> Outcome:
    # packaging checks alone: the sandbox has no base (the identity is proved in tests/check)
    args = ["check", str(adapter), "--contract", str(default_contract()), "--no-base"]
    # a wide terminal keeps each finding on one line of the table
    return run_gate(args if table else [*args, "--json"], sandbox=sandbox, env={"COLUMNS": "1000"})


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_adapter_ends_in_its_finding(name: str, clean_template: Path, tmp_path: Path) -> None:
    import shutil

    case = CASES[name]
    sandbox = tmp_path / "box"
    adapter = sandbox / "in" / "adapter"
    shutil.copytree(clean_template, adapter)
    case.build(adapter)
    outcome = check(sandbox, adapter, table=case.table)
    outcome.assert_clean(expect_exit=1)
    if case.table:
        assert (
            "\x1b" not in outcome.stdout and "\x9b" not in outcome.stdout and "\u202e" not in outcome.stdout
        )
        assert case.rule in outcome.stdout, outcome.stdout[-2000:]
        assert case.text in outcome.stdout.replace("\n", ""), outcome.stdout[-2000:]
    else:
        findings = json.loads(outcome.stdout)["findings"]
        messages = [f["message"] for f in findings if f["rule"] == case.rule]
        assert messages, f"no {case.rule} finding: {[(f['rule'], f['message'][:120]) for f in findings]}"
        assert any(case.text in m for m in messages), messages
    assert not (adapter.parent / "pwned").exists()


def test_clean_template_adapter_passes(clean_template: Path, tmp_path: Path) -> None:
    """The baseline every case mutates passes, so each finding above comes from its mutation."""
    import shutil

    adapter = tmp_path / "box" / "in" / "adapter"
    shutil.copytree(clean_template, adapter)
    check(tmp_path / "box", adapter, table=False).assert_clean(expect_exit=0)
