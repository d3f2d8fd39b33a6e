"""Hostile contracts and training specs: each is one clear error (exit 2), bounded.

Every case writes a real contract file (the embedded contract's text, edited)
or training spec beside a clean adapter, runs the real command that reads it
through the harness (exit 2 with one ``gate: error:`` line, no traceback,
<= 5 s, <= 512 MiB, nothing written outside out/) and asserts the words of
the error.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gate.resources import contracts_dir, default_contract
from tests.fixtures.adapters import write_adapter
from tests.hostile._harness import run_gate

TEMPLATE = "smollm2-chat.jinja"


def original() -> str:
    return default_contract().read_text()


def text(edit: Callable[[str], str]) -> Callable[[Path], Path]:
    """A contract whose YAML text is ``edit(embedded contract)``."""

    def build(d: Path) -> Path:
        path = d / "contract.yaml"
        path.write_text(edit(original()))
        return path

    return build


def sub(pattern: str, repl: str) -> Callable[[Path], Path]:
    def edit(src: str) -> str:
        out, n = re.subn(pattern, repl, src, count=1, flags=re.M)
        assert n == 1, pattern
        return out

    return text(edit)


def raw(data: bytes) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        path = d / "contract.yaml"
        path.write_bytes(data)
        return path

    return build


def alias_bomb(d: Path) -> Path:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    path = d / "contract.yaml"
    path.write_text(original() + "\n".join(lines) + "\n")
    return path


def fifo(d: Path) -> Path:
    os.mkfifo(d / "contract.yaml")
    return d / "contract.yaml"


def escape_named_fifo(d: Path) -> Path:
    path = d / "c\x1b]0;owned\x07\x1b[2J.yaml"
    os.mkfifo(path)
    return path


def directory(d: Path) -> Path:
    (d / "contract.yaml").mkdir()
    return d / "contract.yaml"


def symlinked(d: Path) -> Path:
    real = text(lambda s: s)(d)
    os.symlink(real, d / "link.yaml")
    return d / "link.yaml"


def sparse_contract(d: Path) -> Path:
    path = d / "contract.yaml"
    with open(path, "wb") as fh:
        fh.truncate(2 << 20)
    return path


def template_via_symlink(d: Path) -> Path:
    os.symlink(d / TEMPLATE, d / "linked.jinja")
    return sub(r"^  chat_template_file: .*$", "  chat_template_file: linked.jinja")(d)


def template_fifo(d: Path) -> Path:
    os.mkfifo(d / "fifo.jinja")
    return sub(r"^  chat_template_file: .*$", "  chat_template_file: fifo.jinja")(d)


def template_in_symlinked_dir(d: Path) -> Path:
    (d / "real").mkdir()
    shutil.copy(d / TEMPLATE, d / "real" / TEMPLATE)
    os.symlink(d / "real", d / "tpl")
    return sub(r"^  chat_template_file: .*$", f"  chat_template_file: tpl/{TEMPLATE}")(d)


def giant_template(d: Path) -> Path:
    (d / "big.jinja").write_text("x" * (300 << 10))
    return sub(r"^  chat_template_file: .*$", "  chat_template_file: big.jinja")(d)


def spec(body: str) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        path = d / "train.yaml"
        path.write_text(body)
        return path

    return build


GOOD_SPEC = """version: 1
name: hostile
base: {builtin: smollm2}
dataset: {path: data.jsonl}
prompt: {template: base}
lora: {r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj]}
training: {max_steps: 1, batch_size: 1, grad_accum: 1, lr: 1.0e-4, lr_scheduler: linear, warmup_steps: 0,
  seq_len: 64, seed: 1}
"""


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], Path]
    error: str
    command: str = "check"


CASES: dict[str, Case] = {
    "alias-bomb": Case(alias_bomb, "YAML aliases (*name) are not allowed"),
    "single-alias": Case(
        sub(r"^  eos_token_ids: \[2\].*$", "  eos_token_ids: &eos [2]\n  fake: *eos"), "YAML aliases"
    ),
    "nested-10000": Case(
        text(lambda s: s + "deep: " + "[" * 10_000 + "]" * 10_000 + "\n"), "exceeded maximum nesting depth"
    ),
    "nested-block-100": Case(
        text(lambda s: s + "".join(f"{'  ' * i}k{i}:\n" for i in range(100)) + "  " * 100 + "v: 1\n"),
        "nested deeper than 64 levels",
    ),
    "integer-of-5000-digits": Case(
        sub(r"^  max_loras: \d+", "  max_loras: " + "9" * 5000), "an integer of 5000"
    ),
    "hex-integer-huge": Case(sub(r"^  max_loras: \d+", "  max_loras: 0x" + "f" * 100), "an integer of"),
    "nan-rank": Case(sub(r"^  max_lora_rank: \d+", "  max_lora_rank: .nan"), ".nan is not a finite number"),
    "inf-size": Case(sub(r"^  max_size_bytes: \d+", "  max_size_bytes: .inf"), ".inf is not a finite number"),
    "minus-inf": Case(sub(r"^  rank_min: \d+", "  rank_min: -.Inf"), "-.Inf is not a finite number"),
    "duplicate-key": Case(sub(r"^name: .*$", "name: a\nname: b"), "duplicate key 'name'"),
    "duplicate-nested-key": Case(
        sub(r"^  max_loras: 4", "  max_loras: 4\n  max_loras: 400"), "duplicate key 'max_loras'"
    ),
    "oversize-sparse": Case(sparse_contract, "more than the 262144-byte limit"),
    "contract-fifo": Case(fifo, "not a regular file (a FIFO)"),
    "contract-directory": Case(directory, "not a regular file (a directory)"),
    "contract-named-with-escapes": Case(escape_named_fifo, "c\\x1b]0;owned\\x07\\x1b[2J.yaml"),
    "contract-symlink": Case(symlinked, "is a symlink; gate does not follow symlinks"),
    "python-object-tag": Case(
        text(lambda s: s + "x: !!python/object/apply:os.system ['touch pwned']\n"), "not valid YAML"
    ),
    "not-utf8": Case(raw(b"name: \xff\xfe\n"), "not UTF-8 text"),
    "top-level-list": Case(raw(b"- a\n- b\n"), "a contract is a YAML mapping"),
    "empty-file": Case(raw(b""), "a contract is a YAML mapping"),
    "two-documents": Case(text(lambda s: s + "---\nname: other\n"), "not valid YAML"),
    "template-absolute": Case(
        sub(r"^  chat_template_file: .*$", "  chat_template_file: /etc/passwd"), "is an absolute path"
    ),
    "template-home": Case(
        sub(r"^  chat_template_file: .*$", "  chat_template_file: ~/x.jinja"), "absolute path"
    ),
    "template-escapes": Case(
        sub(r"^  chat_template_file: .*$", "  chat_template_file: ../../../../etc/passwd"), "leads outside"
    ),
    "template-symlink": Case(template_via_symlink, "goes through the symlink"),
    "template-symlinked-dir": Case(template_in_symlinked_dir, "goes through the symlink"),
    "template-fifo": Case(template_fifo, "not a regular file (a FIFO)"),
    "template-oversize": Case(giant_template, "more than the 262144-byte limit"),
    "template-missing": Case(
        sub(r"^  chat_template_file: .*$", "  chat_template_file: nope.jinja"), "no such chat template file"
    ),
    "template-path-not-string": Case(
        sub(r"^  chat_template_file: .*$", "  chat_template_file: [1, 2]"), "chat_template_file"
    ),
    "wrong-types-everywhere": Case(
        sub(r"^  max_lora_rank: \d+", "  max_lora_rank: sixteen"), "serving.max_lora_rank"
    ),
    "spec-alias-bomb": Case(
        spec(GOOD_SPEC + 'a: &a ["x", "x"]\nb: &b [*a, *a]\nc: [*b, *b]\n'), "YAML aliases", command="train"
    ),
    "spec-nan-lr": Case(
        spec(GOOD_SPEC.replace("lr: 1.0e-4", "lr: .nan")), "not a finite number", command="train"
    ),
    "spec-duplicate-key": Case(spec(GOOD_SPEC + "name: again\n"), "duplicate key 'name'", command="train"),
    "spec-deep": Case(
        spec(GOOD_SPEC + "x: " + "[" * 5000 + "]" * 5000 + "\n"), "maximum nesting depth", command="train"
    ),
    "spec-huge-int": Case(
        spec(GOOD_SPEC.replace("max_steps: 1", "max_steps: " + "1" * 300)),
        "an integer of 300",
        command="train",
    ),
}


@pytest.fixture(scope="module")
def clean_adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_adapter(tmp_path_factory.mktemp("clean") / "adapter", layers=[0], tokenizer=False)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_contract_is_one_clear_error(name: str, clean_adapter_dir: Path, tmp_path: Path) -> None:
    case = CASES[name]
    sandbox = tmp_path / "box"
    where = sandbox / "in"
    where.mkdir(parents=True)
    shutil.copy(contracts_dir() / TEMPLATE, where / TEMPLATE)
    path = case.build(where)
    if case.command == "check":
        args = ["check", str(clean_adapter_dir), "--contract", str(path), "--no-base"]
    else:
        args = ["train", str(path), "--toolkit", "unsloth", "--out", str(sandbox / "out" / "run")]
    outcome = run_gate(args, sandbox=sandbox)
    outcome.assert_clean(expect_exit=2)

    assert case.error in outcome.stderr, outcome.stderr[-1500:]
    assert "\x1b" not in outcome.stderr and "\x07" not in outcome.stderr
    assert not (sandbox / "pwned").exists()


def test_the_unedited_contract_copy_loads(clean_adapter_dir: Path, tmp_path: Path) -> None:
    """The baseline the cases edit is valid, so each error above comes from its edit."""
    sandbox = tmp_path / "box"
    (sandbox / "in").mkdir(parents=True)
    shutil.copy(contracts_dir() / TEMPLATE, sandbox / "in" / TEMPLATE)
    path = text(lambda s: s)(sandbox / "in")
    run_gate(
        ["check", str(clean_adapter_dir), "--contract", str(path), "--no-base"], sandbox=sandbox
    ).assert_clean(expect_exit=0)
