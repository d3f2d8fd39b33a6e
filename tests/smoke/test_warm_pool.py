"""The warm pool stays trustworthy: NaN weights are refused, and a poisoned server is caught and restarted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gate.errors import ServerError
from gate.serving import WarmPool, server_processes
from gate.smoke import run_smoke_pooled
from tests.fixtures.serving import write_lora

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(smoke_contract, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarmPool]:  # type: ignore[no-untyped-def]
    """A pool of its own: these tests poison and restart its server, which the shared one must not suffer."""
    with WarmPool(smoke_contract, log_dir=tmp_path_factory.mktemp("pool-logs")) as p:
        yield p


def test_pool_refuses_to_hot_load_nan_weights(pool: WarmPool, base_model_dir: Path, tmp_path: Path) -> None:
    adapter = write_lora(tmp_path / "nan", nan_in="layers.0.self_attn.q_proj")
    loaded = pool.hot_load(adapter, base_dir=base_model_dir)
    assert not loaded.result.ok
    assert "non-finite weights" in loaded.result.message
    assert "layers.0.self_attn.q_proj" in loaded.result.message
    with loaded.server.client() as client:
        assert loaded.name not in {c.id for c in client.models()}


def test_nan_adapter_poisons_the_server_and_the_canary_restarts_it_before_the_next_verdict(
    pool: WarmPool, smoke_adapter: Path, base_model_dir: Path, tmp_path: Path
) -> None:
    first = pool.server(base_model_dir)
    nan = write_lora(tmp_path / "nan", nan_in="layers.0.self_attn.q_proj")
    loaded = pool.hot_load(nan, base_dir=base_model_dir, scan=False)  # bypass the scan on purpose
    assert loaded.result.ok, loaded.result.message  # vLLM itself accepts a NaN adapter
    with first.client() as client:
        with pytest.raises(ServerError):
            client.chat(loaded.name, [{"role": "user", "content": "Hi"}], max_tokens=4)
        assert client.health()  # and still looks healthy
    pool.unload(loaded)

    # The verdict after the restart is on the trained adapter, whose answers pass on any CPU; a random
    # synthetic LoRA's text depends on bf16 ties that differ between CPU models.
    report = run_smoke_pooled(pool, smoke_adapter, base_dir=base_model_dir, out_dir=tmp_path / "verdict")

    assert [e["event"] for e in pool.events].count("canary_failed") == 1
    assert pool.restarts == 1
    second = pool.server(base_model_dir)
    assert second is not first and not first.owned
    assert server_processes(int(first.url.rsplit(":", 1)[1])) == []
    assert report.passed, report.summary()
    canary = report.probe("canary")
    assert canary is not None and canary.passed
