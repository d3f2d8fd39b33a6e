"""A warm pool's identity and per-server state: the server, its canary baseline, the candidates leasing it.

The pool (:class:`gate.serving.WarmPool`) keeps one :class:`Slot` per base directory and
guards its counters with its own lock; this module holds the state, the boot-time
baseline reading and the later readings compared with it, so the pool itself is the
policy (when to read the canary, when to restart) and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gate.contract import Contract
from gate.errors import ServerError
from gate.serving._canary import Canary, CanaryReading, CanaryResult
from gate.serving._runtime import ServingRuntime

__all__ = ["BootCanaryFailed", "PoolKey", "Slot", "pool_key", "read_baseline", "read_canary"]


@dataclass(frozen=True)
class PoolKey:
    """What a warm server is interchangeable for: one base (by identity) under one serving configuration."""

    base_identity: str
    serving: str

    def __str__(self) -> str:
        return f"{self.base_identity[:19]}/{self.serving[:12]}"


def pool_key(contract: Contract) -> PoolKey:
    """The pool a contract's releases can share (its base identity and a digest of its serving section)."""
    serving = json.dumps(contract.serving.model_dump(mode="json"), sort_keys=True)
    return PoolKey(contract.base_model.identity, hashlib.sha256(serving.encode()).hexdigest())


class BootCanaryFailed(ServerError):
    """A server booted, but its first canary reading failed or could not be checked."""


@dataclass
class Slot:
    """One warm server of a pool and what the pool knows about it."""

    server: ServingRuntime
    baseline: CanaryReading
    loads: int = 0
    #: Bumped when the server is handed out and when a lease ends: "something may have run since".
    uses: int = 0
    #: ``uses`` as of the last passed canary taken while no candidate held the server.
    checked_uses: int = 0
    #: Candidates holding the server now (:meth:`WarmPool.lease`).
    active: int = 0
    #: Canary readings skipped because the previous one still stood (nothing ran since).
    reused: int = 0
    #: At most ``serving.max_loras`` candidates at once.
    leases: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(1))
    base_scores: dict[tuple[str, int | None], Any] = field(default_factory=dict)
    #: Held while the base is scored (candidates evaluating at once score it once).
    scoring: threading.Lock = field(default_factory=threading.Lock)


def read_baseline(
    server: ServingRuntime,
    canary: Canary,
    *,
    against_reference: Callable[[CanaryReading], str | None] | None,
    on_event: Callable[[dict[str, object]], None],
    started: float,
) -> CanaryReading:
    """The fresh ``server``'s canary baseline, checked (and against the base without LoRA if asked).

    Raises :class:`BootCanaryFailed` (the server stopped) when the reading is unusable or
    could not be made; any other exception stops the server too.
    """
    booted = time.monotonic()
    try:
        baseline = canary.read(server, server.served_model)
        bad = canary.check_baseline(baseline)
        read = time.monotonic()
        if bad is None and against_reference is not None:
            bad = against_reference(baseline)
        on_event(
            {
                "event": "boot_canary",
                "ok": bad is None,
                "reason": bad,
                "baseline": baseline.to_dict(),
                "start_s": round(booted - started, 2),
                "read_s": round(read - booted, 2),
                "reference_s": round(time.monotonic() - read, 2),
            }
        )
        if bad is not None:
            raise BootCanaryFailed(
                f"a freshly booted server fails the canary: {bad}",
                hint=f"server: {server.describe().get('log')}",
            )
    except ServerError as e:
        server.stop()
        if isinstance(e, BootCanaryFailed):
            raise
        raise BootCanaryFailed(
            f"the canary of a freshly booted server could not be checked: {e.message}", hint=e.hint
        ) from e
    except BaseException:
        server.stop()
        raise
    return baseline


def read_canary(
    slot: Slot, canary: Canary, *, on_event: Callable[[dict[str, object]], None], started: float
) -> CanaryResult:
    """Read the canary on ``slot``'s server and compare it with the slot's baseline (a ``canary`` event).

    A server that does not answer fails the canary; the reading of a failed canary is kept in the
    event (post-mortems).
    """
    reading: CanaryReading | None = None
    try:
        reading = canary.read(slot.server, slot.server.served_model)
        result = canary.compare(slot.baseline, reading, time.monotonic() - started)
    except ServerError as e:
        result = CanaryResult(False, f"the server did not answer the canary: {e.message}", math.inf, 0.0)
    event: dict[str, object] = {
        "event": "canary",
        "ok": result.ok,
        "reason": result.reason,
        "drift": result.max_drift if math.isfinite(result.max_drift) else None,
        "seconds": round(time.monotonic() - started, 3),
    }
    if not result.ok and reading is not None:
        event["reading"] = reading.to_dict()
    on_event(event)
    return result
