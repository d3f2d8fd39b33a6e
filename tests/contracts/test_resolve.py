"""One resolver for the base (explicit, run, contract source, store); never SmolLM2 by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate.cli import main
from gate.contract import Contract
from gate.contracts import resolve_base, resolve_contract
from gate.errors import InputError


def _sourceless(llama_contract: Path, tmp_path: Path) -> Contract:
    text = llama_contract.read_text()
    line = next(x for x in text.splitlines() if x.startswith("  source: "))
    out = tmp_path / "c.yaml"
    out.write_text(text.replace(line + "\n", ""))
    return Contract.from_yaml(out)


def test_a_contract_without_source_or_store_entry_names_the_flag(
    llama_base: Path, llama_contract: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("GATE_HOME", str(tmp_path / "home"))
    contract = _sourceless(llama_contract, tmp_path)
    with pytest.raises(InputError) as err:
        resolve_base(contract)
    assert "pass --base DIR" in err.value.message
    assert "base_model.source" in (err.value.hint or "") and "gate base add" in (err.value.hint or "")


def test_gate_base_add_registers_the_base_for_contracts_that_name_only_its_identity(
    llama_base: Path, llama_contract: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("GATE_HOME", str(tmp_path / "home"))
    contract = _sourceless(llama_contract, tmp_path)
    assert main(["base", "add", str(llama_base)]) == 0
    assert resolve_base(contract) == llama_base.resolve()


def test_the_contract_source_and_the_explicit_flag_win_in_that_order(
    llama_base: Path, llama_contract: Path, tmp_path: Path
):
    contract = Contract.from_yaml(llama_contract)
    assert resolve_base(contract).resolve() == llama_base.resolve()
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_base(contract, other) == other
    with pytest.raises(InputError, match=r"--base .*missing: not a directory"):
        resolve_base(contract, tmp_path / "missing")


def test_a_contract_is_never_defaulted_only_named(tmp_path: Path):
    with pytest.raises(InputError, match="no contract given: pass --contract FILE"):
        resolve_contract(None)
    assert resolve_contract("smollm2").name == "smollm2-vllm.yaml"
    with pytest.raises(InputError, match="no such contract file"):
        resolve_contract(tmp_path / "nope.yaml")


def test_a_source_relative_to_the_contract_may_lead_out_of_its_directory(
    llama_base: Path, llama_contract: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import os

    where = tmp_path / "repo" / "contracts"
    where.mkdir(parents=True)
    text = llama_contract.read_text()
    line = next(x for x in text.splitlines() if x.startswith("  source: "))
    relative = os.path.relpath(llama_base, where)
    assert relative.startswith("..")
    (where / "c.yaml").write_text(text.replace(line, f"  source: {relative}"))
    monkeypatch.chdir(tmp_path)  # and named relatively, from another directory
    contract = Contract.from_yaml(Path("repo/contracts/c.yaml"))
    assert resolve_base(contract) == llama_base.resolve()
