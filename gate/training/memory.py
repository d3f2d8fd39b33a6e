"""Peak memory of a running toolkit, sampled from /proc."""

from __future__ import annotations

import os
import threading
from pathlib import Path


class MemorySampler:
    """Peak resident memory of every process carrying this run's marker in its environment."""

    def __init__(self, marker: str, interval: float = 0.5) -> None:
        self.marker = f"GATE_RUN_ID={marker}".encode()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gate-mem-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        if Path("/proc/self/environ").exists():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            total = 0
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/environ", "rb") as fh:
                        if self.marker not in fh.read(1 << 20).split(b"\0"):
                            continue
                    with open(f"/proc/{pid}/statm") as fh:
                        total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                except (OSError, ValueError, IndexError):
                    continue
            self.peak = max(self.peak, total)
