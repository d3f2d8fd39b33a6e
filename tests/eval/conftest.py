"""Fixtures of the eval tests: the base scored once per session, a trained and a damaged adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def eval_contract(default_contract_path: Path):  # type: ignore[no-untyped-def]
    """The embedded default contract (its eval section names capitals_terse and smollm2_mc)."""
    from gate.contract import Contract

    return Contract.from_yaml(default_contract_path)


@pytest.fixture(scope="session")
def base_scores(vllm_server, eval_contract, base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The base model's lm-eval scores on the shared server, computed once for every eval test."""
    from gate.evaluate import score_base

    return score_base(
        eval_contract,
        server=vllm_server,
        base_dir=base_model_dir,
        out_dir=tmp_path_factory.mktemp("eval-base"),
    )


@pytest.fixture(scope="session")
def trained_adapter(trained_adapter_run: Path) -> Path:
    """The adapter trained on the terse-capitals set by the cheapest toolkit."""
    return trained_adapter_run / "adapter"


_SIGN_BIT = {"F32": np.uint32(1 << 31), "F16": np.uint16(1 << 15), "BF16": np.uint16(1 << 15)}


def flip_lora_b(src: Path, dst: Path) -> int:
    """Copy the safetensors file ``src`` to ``dst`` with every lora_B tensor negated; return how many.

    Works on the raw bytes (the sign bit), so bf16 adapters need no bf16 support in numpy.
    """
    raw = src.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    data = bytearray(raw[8 + n :])
    flipped = 0
    for name, info in header.items():
        if name == "__metadata__" or "lora_B" not in name:
            continue
        sign = _SIGN_BIT[info["dtype"]]
        start, end = info["data_offsets"]
        view = np.frombuffer(data, dtype=sign.dtype, count=(end - start) // sign.itemsize, offset=start)
        view ^= sign
        flipped += 1
    dst.write_bytes(raw[: 8 + n] + bytes(data))
    return flipped


@pytest.fixture(scope="session")
def damaged_adapter(trained_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained adapter with every LoRA B matrix sign-flipped: it undoes what training taught."""
    out = tmp_path_factory.mktemp("damaged") / "adapter"
    shutil.copytree(trained_adapter, out)
    flipped = flip_lora_b(trained_adapter / "adapter_model.safetensors", out / "adapter_model.safetensors")
    assert flipped > 0, "the trained adapter has no lora_B tensors"
    return out


@pytest.fixture(scope="session")
def trained_eval(  # type: ignore[no-untyped-def]
    trained_adapter: Path, eval_contract, vllm_server, base_model_dir: Path, base_scores, tmp_path_factory
):
    """``run_eval`` of the trained adapter (report and its output directory), once per session."""
    from gate.evaluate import run_eval

    out = tmp_path_factory.mktemp("eval-trained")
    report = run_eval(
        trained_adapter,
        eval_contract,
        base_dir=base_model_dir,
        server=vllm_server,
        out_dir=out,
        base_scores=base_scores,
    )
    return report, out


@pytest.fixture(scope="session")
def baseline_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(private, public) PEM pairs: the release key and one nobody pinned."""
    from gate.signing import generate_key

    root = tmp_path_factory.mktemp("baseline-keys")
    pairs = {}
    for name in ("release", "stranger"):
        generate_key(root / f"{name}.key", root / f"{name}.pub")
        pairs[name] = (root / f"{name}.key", root / f"{name}.pub")
    return pairs
