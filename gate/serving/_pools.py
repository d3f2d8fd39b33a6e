"""The warm pools a long-lived process (a service worker, a Ray pool actor) keeps across jobs.

One :class:`~gate.serving.WarmPool` per pool key (base identity, serving
configuration). A pool idle for ``idle_s`` is closed; before a new pool boots, the
least recently used ones are closed while the host's available memory is below
``min_free_bytes`` (a vLLM server holds its weights and KV cache for as long as it
lives). Each pool announces its servers in ``$GATE_HOME/pools/`` so a CLI on the
same host can attach to one (``gate release --pool`` ...), verified like any
attached server.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from pathlib import Path

from gate.contract import Contract
from gate.serving._pool import WarmPool
from gate.serving._runtime import ServingRuntime
from gate.serving._server import DEFAULT_READY_TIMEOUT
from gate.serving._slots import PoolKey, pool_key

__all__ = ["PoolSet", "announced_server", "available_memory"]


def available_memory() -> int | None:
    """``MemAvailable`` of this host in bytes (None where /proc/meminfo says nothing)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _announce_dir() -> Path:
    from gate.envs import gate_home

    return gate_home() / "pools"


def _key_file(key: PoolKey) -> Path:
    return _announce_dir() / f"{key.base_identity.removeprefix('sha256:')[:24]}-{key.serving[:16]}.json"


def announced_server(contract: Contract) -> str | None:
    """The URL of a live warm server some pool on this host announced for ``contract``'s key."""
    path = _key_file(pool_key(contract))
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 4096:
            return None
        data = json.loads(path.read_bytes())
        pid, url = int(data["pid"]), str(data["url"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url


class PoolSet:
    """Pools by key, with idle timeout and memory-aware eviction (see the module docstring)."""

    def __init__(
        self,
        *,
        log_dir: Path,
        idle_s: float = 1800.0,
        min_free_bytes: int = 4 << 30,
        max_pools: int = 2,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        announce: bool = True,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.idle_s = idle_s
        self.min_free_bytes = min_free_bytes
        self.max_pools = max_pools
        self.ready_timeout = ready_timeout
        self.announce = announce
        self._pools: dict[PoolKey, WarmPool] = {}
        self._lock = threading.Lock()
        #: Pools opened and closed, in order (for the benchmark and the service's logs).
        self.events: list[dict[str, object]] = []

    def for_contract(self, contract: Contract) -> WarmPool:
        """The pool for ``contract``'s key, made (after evicting idle or memory-hungry pools) if needed."""
        key = pool_key(contract)
        with self._lock:
            self._evict_idle()
            pool = self._pools.get(key)
            if pool is None:
                self._make_room()
                pool = WarmPool(
                    contract,
                    log_dir=self.log_dir / f"pool-{len(self.events)}",
                    ready_timeout=self.ready_timeout,
                )
                pool.on_boot = functools.partial(self._announce_boot, pool)
                self._pools[key] = pool
                self.events.append({"event": "pool.open", "key": str(key)})
            pool.last_used = time.monotonic()
            return pool

    def announce_server(self, pool: WarmPool, url: str) -> None:
        """Write where ``pool``'s server listens, for CLIs on this host."""
        if not self.announce:
            return
        path = _key_file(pool.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "key": str(pool.key)}))
        os.replace(tmp, path)

    def _announce_boot(self, pool: WarmPool, server: ServingRuntime) -> None:
        self.announce_server(pool, server.url)

    def _close(self, key: PoolKey, why: str) -> None:
        pool = self._pools.pop(key)
        pool.close()
        self.events.append({"event": "pool.close", "key": str(key), "why": why})
        path = _key_file(key)
        try:
            data = json.loads(path.read_bytes())
            if int(data.get("pid", -1)) == os.getpid():
                path.unlink()
        except (OSError, ValueError, TypeError):
            pass

    def _evict_idle(self) -> None:
        now = time.monotonic()
        for key, pool in list(self._pools.items()):
            if now - pool.last_used > self.idle_s:
                self._close(key, f"idle for more than {self.idle_s:.0f}s")

    def _make_room(self) -> None:
        by_age = sorted(self._pools, key=lambda k: self._pools[k].last_used)
        while by_age and len(self._pools) >= self.max_pools:
            self._close(by_age.pop(0), f"at most {self.max_pools} pools")
        free = available_memory()
        while by_age and free is not None and free < self.min_free_bytes:
            self._close(by_age.pop(0), f"{free >> 20} MiB available < {self.min_free_bytes >> 20} MiB")
            free = available_memory()

    def tick(self) -> None:
        """Close pools idle for too long (a worker calls this between jobs)."""
        with self._lock:
            self._evict_idle()

    def close(self) -> None:
        """Close every pool."""
        with self._lock:
            for key in list(self._pools):
                self._close(key, "shutdown")
