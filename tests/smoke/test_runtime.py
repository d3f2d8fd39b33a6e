"""The serving-runtime registry, the gate runner's parts and the pure judgement rules (no server)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from gate.errors import InputError, ServerError
from gate.gates import GATES, ServerSource, gates_named
from gate.safetensors_io import read_header
from gate.serving import RUNTIMES, VLLMServer, WarmPool, candidate_name, pool_key, runtime_for
from gate.serving._answers import Completion, TokenLogprob
from gate.serving._verify import parse_max_loras, write_probe_adapter
from gate.smoke import judge_positions
from tests.fixtures.serving import write_lora


def test_the_contracts_runtime_name_picks_vllm_and_an_unknown_name_gets_a_did_you_mean(
    smoke_contract,
) -> None:  # type: ignore[no-untyped-def]
    assert runtime_for(smoke_contract) is VLLMServer
    with pytest.raises(InputError) as e:
        RUNTIMES.get("vlm")
    assert "did you mean 'vllm'" in (e.value.hint or "")


def test_the_release_gates_are_objects_found_by_name_in_order() -> None:
    gates = gates_named(["check", "smoke", "eval"])
    assert [g.name for g in gates] == ["check", "smoke", "eval"]
    assert [g.needs_server for g in gates] == [False, True, True]
    assert {"check", "smoke", "eval"} <= set(GATES.names())


def test_a_position_within_the_tie_margin_is_a_tie_and_beyond_it_a_mismatch() -> None:
    positions = [
        {"token_id": 5, "logprob": -0.1, "best_id": 5, "best_logprob": -0.1},  # the reference's best
        {"token_id": 6, "logprob": -0.70, "best_id": 7, "best_logprob": -0.69},  # 0.01 nats: a tie
        {"token_id": 8, "logprob": -3.0, "best_id": 9, "best_logprob": -0.2},  # 2.8 nats: a mismatch
    ]
    assert judge_positions(positions, 0.05) == (1, 1, 3)
    assert judge_positions(positions, 0.001) == (1, 0, 3)


def test_max_loras_is_read_from_vllms_lora_gauge() -> None:
    metrics = (
        "# HELP vllm:lora_requests_info Running stats on lora requests.\n"
        'vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 1.7e9\n'
    )
    assert parse_max_loras(metrics) == 4
    assert parse_max_loras("vllm:num_requests_running 0\n") is None


def test_the_rank_probe_adapter_is_real_safetensors_with_zero_lora_b(smoke_contract, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = write_probe_adapter(tmp_path / "probe", smoke_contract, rank=17)
    header = read_header(out / "adapter_model.safetensors")
    shapes = {name: tuple(t.shape) for name, t in header.tensors.items()}
    assert shapes == {
        "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight": (17, 1536),
        "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight": (576, 17),
    }
    data = (out / "adapter_model.safetensors").read_bytes()
    assert set(data[-576 * 17 * 4 :]) == {0}
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 17


def test_candidate_names_follow_the_digest_and_never_repeat_on_one_server(tmp_path: Path) -> None:
    a = write_lora(tmp_path / "a", seed=1, layers=(0,))
    b = write_lora(tmp_path / "b", seed=2, layers=(0,))
    assert candidate_name(a, 1) != candidate_name(b, 1)
    assert candidate_name(a, 1)[:21] == candidate_name(a, 2)[:21]
    assert candidate_name(a, 1) != candidate_name(a, 2)


def test_the_pool_key_is_the_base_identity_and_the_serving_configuration(smoke_contract) -> None:  # type: ignore[no-untyped-def]
    other = smoke_contract.model_copy(
        update={"serving": smoke_contract.serving.model_copy(update={"max_loras": 2})}
    )
    assert pool_key(smoke_contract) == pool_key(smoke_contract.model_copy())
    assert pool_key(other) != pool_key(smoke_contract)
    assert pool_key(other).base_identity == pool_key(smoke_contract).base_identity


def test_a_server_source_attaches_to_a_url_and_otherwise_leases_from_a_matching_pool(
    smoke_contract,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    pool = WarmPool(smoke_contract, log_dir=tmp_path)  # boots nothing until asked
    other = smoke_contract.model_copy(
        update={"serving": smoke_contract.serving.model_copy(update={"max_loras": 2})}
    )
    assert ServerSource(smoke_contract, tmp_path, log_dir=tmp_path, url="http://x:1").mode == "attached"
    assert ServerSource(smoke_contract, tmp_path, log_dir=tmp_path, pool=pool).mode == "pooled"
    assert ServerSource(other, tmp_path, log_dir=tmp_path, pool=pool).mode == "started"
    assert ServerSource(smoke_contract, tmp_path, log_dir=tmp_path).mode == "started"


class _CountingServer:
    """Stands in for a booted server in the pool's bookkeeping: answers the canary, counts the readings."""

    served_model = "base"
    url = "http://127.0.0.1:1"

    def __init__(self) -> None:
        self.reads = 0

    def complete(self, model: str, prompt: str, **kwargs: object) -> Completion:
        self.reads += 1
        tokens = tuple(TokenLogprob(i, "x", -0.5) for i in (1, 2))
        return Completion("xx", "length", tokens, 2, 0.0)

    def stop(self) -> None:
        return None

    def describe(self) -> dict[str, object]:
        return {"log": None}


def test_the_canary_after_one_candidate_is_the_canary_before_the_next_and_any_handout_needs_a_new_one(
    smoke_contract,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    import gate.serving._pool as pool_module

    server = _CountingServer()
    monkeypatch.setattr(
        pool_module, "runtime_for", lambda contract: SimpleNamespace(start=lambda *a, **k: server)
    )
    pool = WarmPool(smoke_contract, log_dir=tmp_path, reference=False)
    with pool.lease(tmp_path):  # boots: the boot reading is the baseline
        assert server.reads == 1
    assert pool.check(tmp_path).ok and server.reads == 2  # after candidate 1
    with pool.lease(tmp_path):  # nothing ran since the reading after candidate 1: it stands
        assert server.reads == 2
    assert pool.check(tmp_path).ok and server.reads == 3
    pool.server(tmp_path)  # handed out outside a lease: whatever its holder does is unchecked
    with pool.lease(tmp_path):
        assert server.reads == 4
    assert pool.check(tmp_path).ok and server.reads == 5
    with pool.lease(tmp_path):
        assert server.reads == 5
        with pool.lease(tmp_path):  # beside a running candidate a reading proves nothing about quiet
            assert server.reads == 6
    assert [e["event"] for e in pool.events].count("canary") == 5


class _SilentServer(_CountingServer):
    """A booted server whose base answers the canary with nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped = False

    def complete(self, model: str, prompt: str, **kwargs: object) -> Completion:
        self.reads += 1
        return Completion("", "length", (), 0, 0.0)

    def stop(self) -> None:
        self.stopped = True


def test_a_fresh_server_failing_its_boot_canary_is_replaced_once_before_the_candidate_fails(
    smoke_contract,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    import gate.serving._pool as pool_module

    booted = [_SilentServer(), _CountingServer(), _SilentServer(), _SilentServer()]
    servers = iter(booted)
    monkeypatch.setattr(
        pool_module, "runtime_for", lambda contract: SimpleNamespace(start=lambda *a, **k: next(servers))
    )
    pool = WarmPool(smoke_contract, log_dir=tmp_path, reference=False)
    assert pool.server(tmp_path) is booted[1]
    assert booted[0].stopped and [e["event"] for e in pool.events].count("boot_retry") == 1
    pool.close()
    with pytest.raises(
        ServerError, match="fails the canary: the base model answered the canary with no text"
    ):
        pool.server(tmp_path)  # two bad boots in a row: the candidate fails, naming why
    assert booted[2].stopped and booted[3].stopped


def test_concurrent_evaluations_each_get_a_warm_lm_eval_process_up_to_the_pools_limit(tmp_path: Path) -> None:
    import threading

    from gate.evaluate import WarmEvaluators

    evaluators = WarmEvaluators(log_dir=tmp_path, size=2)  # processes start on their first run only
    got: list[object] = []
    with evaluators.lease() as a, evaluators.lease() as b:
        assert a is not b
        third = threading.Thread(target=lambda: got.append(evaluators.lease().__enter__()))
        third.start()
        third.join(0.3)
        assert third.is_alive() and not got  # both are busy: the third evaluation waits
    third.join(5)
    assert got and got[0] in (a, b)  # and then reuses a warm one
    evaluators.close()


class _DyingServer(_CountingServer):
    """A booted server that answers the canary until it is told it died (then with nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.dead = False

    def complete(self, model: str, prompt: str, **kwargs: object) -> Completion:
        if self.dead:
            self.reads += 1
            return Completion("", "length", (), 0, 0.0)
        return super().complete(model, prompt, **kwargs)


def _pool_of(servers: list[_CountingServer], contract, tmp_path: Path, monkeypatch) -> WarmPool:  # type: ignore[no-untyped-def]
    import gate.serving._pool as pool_module

    booted = iter(servers)
    monkeypatch.setattr(
        pool_module, "runtime_for", lambda contract: SimpleNamespace(start=lambda *a, **k: next(booted))
    )
    one_slot = contract.model_copy(update={"serving": contract.serving.model_copy(update={"max_loras": 1})})
    return WarmPool(one_slot, log_dir=tmp_path, reference=False)


def test_a_candidate_waiting_for_a_slot_while_the_server_restarts_leases_the_fresh_server(
    smoke_contract,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    import threading

    first, fresh = _CountingServer(), _CountingServer()
    pool = _pool_of([first, fresh], smoke_contract, tmp_path, monkeypatch)
    got: list[object] = []

    def waiting_candidate() -> None:
        with pool.lease(tmp_path) as server:
            got.append(server)

    with pool.lease(tmp_path) as held:
        assert held is first
        waiter = threading.Thread(target=waiting_candidate)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive()  # the only slot is taken: it waits on the first server's slot
        pool.restart(tmp_path)  # another candidate's failed canary replaced the server meanwhile
    waiter.join(5)
    assert got == [fresh]  # not the stopped server whose slot it had waited on
    assert pool.is_current(tmp_path, fresh) and not pool.is_current(tmp_path, first)


def _eval_context(pool: WarmPool, tmp_path: Path):  # type: ignore[no-untyped-def]
    from gate.gates import GateContext

    servers = ServerSource(pool.contract, tmp_path, log_dir=tmp_path, pool=pool)
    return GateContext(tmp_path, pool.contract, tmp_path, tmp_path, servers)


def test_an_evaluation_whose_server_dies_under_it_runs_again_on_the_restarted_server(
    smoke_contract,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from gate.gates._builtin import EvalGate

    dying, fresh = _DyingServer(), _CountingServer()
    pool = _pool_of([dying, fresh], smoke_contract, tmp_path, monkeypatch)
    ran_on: list[object] = []

    def run(self: EvalGate, ctx: object, server: object) -> str:
        ran_on.append(server)
        if server is dying:
            dying.dead = True
            raise ServerError(f"the vLLM server at {dying.url} died during the evaluation")
        return "report from the fresh server"

    monkeypatch.setattr(EvalGate, "_run", run)
    assert EvalGate().run(_eval_context(pool, tmp_path)) == "report from the fresh server"
    assert ran_on == [dying, fresh] and pool.restarts == 1


def test_an_evaluation_error_on_a_server_that_still_passes_its_canary_is_the_evaluations_own(
    smoke_contract,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from gate.gates._builtin import EvalGate

    pool = _pool_of([_CountingServer()], smoke_contract, tmp_path, monkeypatch)
    calls: list[object] = []

    def run(self: EvalGate, ctx: object, server: object) -> str:
        calls.append(server)
        raise ServerError("lm-eval answered 400 to the adapter's requests")

    monkeypatch.setattr(EvalGate, "_run", run)
    with pytest.raises(ServerError, match="answered 400"):
        EvalGate().run(_eval_context(pool, tmp_path))
    assert len(calls) == 1 and pool.restarts == 0  # not retried: the server it ran on stands
