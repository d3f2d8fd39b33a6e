"""Fixtures: a run on a tiny random Qwen2 base (not SmolLM2), its contract, and a training spec for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class OwnRun:
    """A user's own base, the contract ``gate contract init`` wrote for it, and a run trained on it."""

    base: Path
    #: the generated contract with ``base_model.source`` removed: it names its base by identity only
    contract: Path
    run: Path
    spec: Path
    #: a signing key (private PEM) for the commands that sign
    key: Path


def _without_source(contract: Path, out: Path) -> Path:
    text = contract.read_text()
    line = next(x for x in text.splitlines() if x.startswith("  source: "))
    out.write_text(text.replace(line + "\n", ""))
    return out


@pytest.fixture(scope="session")
def own_run(tmp_path_factory: pytest.TempPathFactory) -> OwnRun:
    from gate.cli import main
    from gate.contract import Contract
    from gate.signing import generate_key
    from tests.contracts._bases import tiny_base
    from tests.fixtures.adapters import write_adapter
    from tests.fixtures.run_records import write_run_record

    root = tmp_path_factory.mktemp("own-run")
    base = tiny_base("qwen2")
    written = root / "written.yaml"
    assert main(["contract", "init", "--base", str(base), "--out", str(written)]) == 0
    contract = _without_source(written, root / "qwen2-vllm.yaml")
    (root / "eval").mkdir()  # the tasks directory the generated contract asks the user to fill
    run = root / "run"
    write_adapter(run / "adapter", base_dir=base, contract=Contract.from_yaml(contract))
    write_run_record(run)
    spec = root / "train.yaml"
    spec.write_text(
        "version: 1\nname: own-base\n"
        f"base: {{path: {base}}}\n"
        "dataset: {path: data.jsonl}\nprompt: {template: base}\n"
        "lora: {r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj, v_proj]}\n"
        "training: {max_steps: 1, batch_size: 1, grad_accum: 1, lr: 1.0e-4, lr_scheduler: linear, "
        "warmup_steps: 0, seq_len: 64, seed: 1}\n"
    )
    (root / "data.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}\n'
    )
    generate_key(root / "release.key", root / "release.pub")
    return OwnRun(base=base, contract=contract, run=run, spec=spec, key=root / "release.key")
