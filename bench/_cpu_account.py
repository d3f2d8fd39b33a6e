"""CPU seconds per process group while a benchmark runs, read from ``/proc`` (Linux only).

The warm-pool benchmark asks where its wall time goes: on a 2-core runner the vLLM CPU
worker is one thread, so the worker's own CPU seconds after the boot bound how fast any
scheduling of the same requests can be. A sampling thread reads every process's
``utime + stime`` once a second and keeps, per process, the first and the last reading
with their wall times (a process seen after the first sample started from zero).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")

#: (group, test on the process title) in order; vLLM retitles its processes ``VLLM::<role>``.
_GROUPS: tuple[tuple[str, str], ...] = (
    ("vllm_worker", "VLLM::Worker"),
    ("vllm_engine_core", "VLLM::EngineCor"),
    ("vllm_api_server", "VLLM::APIServer"),
    ("vllm_api_server", "vllm.entrypoints"),
    ("lm_eval", "lm_eval_run.py"),
    ("parity_reference", "reference_greedy.py"),
    ("gate_worker", "gate.service.worker"),
    ("gate_service", "gate serve"),
)


def _group(title: str) -> str:
    for name, marker in _GROUPS:
        if marker in title:
            return name
    return "other"


@dataclass
class _Proc:
    group: str
    first_cpu: float
    cpu: float
    #: (wall time, cumulative CPU seconds), for the CPU a process spent after a moment.
    samples: list[tuple[float, float]] = field(default_factory=list)


def _cpu(pid: str) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, ValueError, IndexError):
        return None


def _title(pid: str) -> str:
    """The process name and command line (vLLM's ``setproctitle`` rewrites both)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()[:400]
    except OSError:
        return ""
    return f"{comm} " + raw.replace(b"\0", b" ").decode("utf-8", "replace")


def _machine_idle() -> float:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (values[3] + values[4]) / _TICK


class CpuAccount:
    """Samples until :meth:`stop`; then :meth:`summary` gives CPU seconds per group."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval = interval_s
        self._procs: dict[str, _Proc] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-account", daemon=True)
        self._started = time.time()
        self._idle0 = _machine_idle()
        self._idle1 = self._idle0
        self._ended = self._started

    def start(self) -> CpuAccount:
        self._sample(first=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(first=False)
        self._ended = time.time()
        self._idle1 = _machine_idle()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample(first=False)

    def _sample(self, *, first: bool) -> None:
        now = time.time()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            cpu = _cpu(pid)
            if cpu is None:
                continue
            proc = self._procs.get(pid)
            if proc is None:
                proc = self._procs[pid] = _Proc("other", cpu if first else 0.0, cpu)
            if proc.group == "other":
                # vLLM retitles a process some time after spawning it: read the title until it is known.
                proc.group = _group(_title(pid))
            proc.cpu = cpu
            if proc.group != "other":
                proc.samples.append((now, cpu))

    def cpu_after(self, group: str, since: float) -> float:
        """CPU seconds the group's processes spent after wall time ``since``."""
        total = 0.0
        for proc in self._procs.values():
            if proc.group != group:
                continue
            before = [cpu for at, cpu in proc.samples if at <= since]
            total += proc.cpu - (before[-1] if before else proc.first_cpu)
        return round(total, 1)

    def summary(self) -> dict[str, float]:
        groups: dict[str, float] = {}
        for proc in self._procs.values():
            groups[proc.group] = groups.get(proc.group, 0.0) + proc.cpu - proc.first_cpu
        out = {name: round(seconds, 1) for name, seconds in sorted(groups.items(), key=lambda kv: -kv[1])}
        out["wall_s"] = round(self._ended - self._started, 1)
        out["machine_idle_s"] = round(self._idle1 - self._idle0, 1)
        out["cores"] = float(os.cpu_count() or 1)
        return out
