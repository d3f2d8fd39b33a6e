"""Fixtures: tiny random bases (built once, cached under $GATE_HOME) and their generated contracts."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate.cli import main
from tests.contracts._bases import tiny_base


@pytest.fixture(scope="session")
def contracts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("contracts")


def init_contract_cli(base: Path, out: Path, *extra: str) -> Path:
    """``gate contract init`` in-process; the written contract's path."""
    assert main(["contract", "init", "--base", str(base), "--out", str(out), "--force", *extra]) == 0
    return out


@pytest.fixture(scope="session")
def llama_base() -> Path:
    return tiny_base("llama")


@pytest.fixture(scope="session")
def llama_contract(llama_base: Path, contracts_dir: Path) -> Path:
    return init_contract_cli(llama_base, contracts_dir / "llama.yaml")


@pytest.fixture
def clean_llama_adapter(llama_base: Path, llama_contract: Path, tmp_path: Path) -> Path:
    """A rank-8 q/v adapter for the tiny Llama base (the shared adapter writer, real safetensors)."""
    from gate.contract import Contract
    from tests.fixtures.adapters import write_adapter

    return write_adapter(
        tmp_path / "adapter", base_dir=llama_base, contract=Contract.from_yaml(llama_contract)
    )
