"""Serving: the runtime interface and its vLLM implementation, verification, the warm pool, the reference.

Example::

    from gate.contract import Contract
    from gate.serving import WarmPool, runtime_for

    contract = Contract.from_yaml(Path("contracts/smollm2-vllm.yaml"))
    with runtime_for(contract).start(base_dir, contract, log_dir=Path("logs")) as server:
        print(server.models())

    with WarmPool(contract, log_dir=Path("logs")) as pool:
        with pool.candidate(adapter_dir, base_dir=base_dir) as loaded:
            print(loaded.result.ok, loaded.result.message)

Layout: :mod:`._runtime` (the interface and the registry), :mod:`._server` (vLLM) with
:mod:`._launch` (its command line, environment and processes), :mod:`._verify` (an
attached server checked against the contract), :mod:`._client` (HTTP) with
:mod:`._answers` (what vLLM answers, typed), :mod:`._requests` (per-server request
serialization), :mod:`._pool` (the warm pool) with :mod:`._canary`, :mod:`._slots` and
:mod:`._hotload`, :mod:`._pools` (the pools a service keeps), :mod:`._reference` (the
warm transformers + PEFT reference), :mod:`._env` (the isolated environments).
"""

from __future__ import annotations

import os
from pathlib import Path

from gate.serving._answers import Completion, LoadResult, ModelCard, StreamTiming, TokenLogprob
from gate.serving._canary import Canary, CanaryReading, CanaryResult
from gate.serving._client import VLLMClient
from gate.serving._env import CPU_VLLM, GPU_VLLM, reference_env_spec, vllm_env_spec
from gate.serving._hotload import HotLoad, candidate_name, scan_adapter_weights
from gate.serving._launch import SERVER_TAG, free_port, server_argv, server_processes
from gate.serving._pool import WarmPool
from gate.serving._pools import PoolSet, announced_server, available_memory
from gate.serving._reference import REFERENCE_SCRIPT, ReferenceProcess, check_reference_result
from gate.serving._requests import RequestLock
from gate.serving._runtime import RUNTIMES, PromptLogprobs, ServerFacts, ServingRuntime, runtime_for
from gate.serving._server import DEFAULT_READY_TIMEOUT, VLLMServer
from gate.serving._slots import PoolKey, pool_key

__all__ = [
    "CPU_VLLM",
    "DEFAULT_READY_TIMEOUT",
    "GPU_VLLM",
    "REFERENCE_SCRIPT",
    "RUNTIMES",
    "SERVER_TAG",
    "Canary",
    "CanaryReading",
    "CanaryResult",
    "Completion",
    "HotLoad",
    "LoadResult",
    "ModelCard",
    "PoolKey",
    "PoolSet",
    "PromptLogprobs",
    "ReferenceProcess",
    "RequestLock",
    "ServerFacts",
    "ServingRuntime",
    "StreamTiming",
    "TokenLogprob",
    "VLLMClient",
    "VLLMServer",
    "WarmPool",
    "announced_server",
    "available_memory",
    "candidate_name",
    "check_reference_result",
    "free_port",
    "load_adapter",
    "pool_key",
    "reference_env_spec",
    "runtime_for",
    "scan_adapter_weights",
    "server_argv",
    "server_processes",
    "unload_adapter",
    "vllm_env_spec",
]


def load_adapter(server: ServingRuntime, name: str, adapter_dir: str | os.PathLike[str]) -> LoadResult:
    """Hot-load ``adapter_dir`` as ``name`` into ``server`` (a refusal carries the runtime's message)."""
    return server.load_adapter(name, Path(adapter_dir).resolve())


def unload_adapter(server: ServingRuntime, name: str) -> LoadResult:
    """Unload adapter ``name`` from ``server``."""
    return server.unload_adapter(name)
