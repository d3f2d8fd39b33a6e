"""Serving on real vLLM: the environment, the server manager, a client and the warm pool.

Example::

    from gate.contract import Contract
    from gate.serving import VLLMServer, WarmPool

    contract = Contract.from_yaml(Path("contracts/smollm2-vllm.yaml"))
    with VLLMServer.start(base_dir, contract, log_dir=Path("logs")) as server:
        with server.client() as client:
            print(client.models())

    with WarmPool(contract, log_dir=Path("logs")) as pool:
        with pool.candidate(adapter_dir, base_dir=base_dir) as loaded:
            print(loaded.result.ok, loaded.result.message)
"""

from __future__ import annotations

import os
from pathlib import Path

from gate.serving._client import Completion, LoadResult, ModelCard, StreamTiming, TokenLogprob, VLLMClient
from gate.serving._env import CPU_VLLM, GPU_VLLM, reference_env_spec, vllm_env_spec
from gate.serving._pool import Canary, CanaryReading, CanaryResult, HotLoad, WarmPool, scan_adapter_weights
from gate.serving._server import (
    DEFAULT_READY_TIMEOUT,
    SERVER_TAG,
    VLLMServer,
    free_port,
    server_argv,
    server_processes,
)

__all__ = [
    "CPU_VLLM",
    "DEFAULT_READY_TIMEOUT",
    "GPU_VLLM",
    "SERVER_TAG",
    "Canary",
    "CanaryReading",
    "CanaryResult",
    "Completion",
    "HotLoad",
    "LoadResult",
    "ModelCard",
    "StreamTiming",
    "TokenLogprob",
    "VLLMClient",
    "VLLMServer",
    "WarmPool",
    "free_port",
    "load_adapter",
    "reference_env_spec",
    "scan_adapter_weights",
    "server_argv",
    "server_processes",
    "unload_adapter",
    "vllm_env_spec",
]


def load_adapter(server: VLLMServer, name: str, adapter_dir: str | os.PathLike[str]) -> LoadResult:
    """Hot-load ``adapter_dir`` as ``name`` into ``server`` (a refusal carries vLLM's message).

    The path is resolved here: vLLM treats a relative path that does not exist as a hub id.
    """
    with server.client() as client:
        return client.load_adapter(name, str(Path(adapter_dir).resolve()))


def unload_adapter(server: VLLMServer, name: str) -> LoadResult:
    """Unload adapter ``name`` from ``server``."""
    with server.client() as client:
        return client.unload_adapter(name)
