"""A warm pool's event record: every boot, canary, lease and stop, in memory and as JSON lines.

The record is evidence for people (post-mortems read ``pool-events.jsonl`` beside the
server logs) and for benchmarks and tests (``WarmPool.events``); writing it never fails
a candidate.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from gate.serving._runtime import ServingRuntime

__all__ = ["PoolEvents"]


class PoolEvents:
    """The events of one pool, in order; each also a line of ``log_dir/pool-events.jsonl``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.events: list[dict[str, object]] = []

    def record(self, event: dict[str, object]) -> None:
        """Record ``event``, stamped with the wall-clock time."""
        stamped = {"at": round(time.time(), 3), **event}
        self.events.append(stamped)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_dir / "pool-events.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(stamped, default=str) + "\n")
        except OSError:
            pass  # the log is evidence for people, never a reason to fail a candidate

    def count(self, name: str) -> int:
        """How many ``name`` events were recorded."""
        return sum(1 for e in self.events if e["event"] == name)

    def server_stop(self, server: ServingRuntime) -> None:
        """Record how long ``server``, about to stop, ran prompt-logprob work alone (if it serializes)."""
        lock = getattr(server, "request_lock", None)
        if lock is not None and lock.serialize:
            # The serial part of concurrent gating.
            self.record(
                {
                    "event": "server_stop",
                    "url": server.url,
                    "exclusive_s": round(lock.exclusive_s, 2),
                    "exclusive_count": lock.exclusive_count,
                }
            )
