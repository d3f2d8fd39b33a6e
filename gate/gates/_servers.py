"""Where a gate's server comes from: the one place that decides attach, pool or start.

Every path (release, the service's workers, the pilot, preflight and the single-gate
commands) asks a :class:`ServerSource` for its server; nothing else starts or
attaches one. The order:

1. a URL (``--server`` / ``--vllm-url``): attach to it, verified against the contract
   before any probe (:meth:`gate.serving.ServingRuntime.attach`);
2. a warm pool: the one passed in, or the pool set a long-lived process installed
   (:func:`install_pools`: a service worker, a Ray pool actor) for the contract's pool key;
   with ``use_announced`` (``gate smoke --pool``, or ``GATE_USE_POOL=1`` for every command)
   a warm server that a ``gate serve`` on this host announced is attached to (and verified)
   instead of booting one;
3. otherwise start one server of the contract's runtime on first use, stopped when
   the source closes.

The server is made lazily, so a release whose check fails boots nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from gate.contract import Contract
from gate.errors import Error
from gate.serving import DEFAULT_READY_TIMEOUT, ServingRuntime, WarmPool, runtime_for
from gate.serving._pools import PoolSet, announced_server

__all__ = ["ServerSource", "install_pools", "installed_pools"]

_INSTALLED: PoolSet | None = None


def install_pools(pools: PoolSet | None) -> None:
    """Make ``pools`` the warm pools every :class:`ServerSource` of this process leases from."""
    global _INSTALLED
    _INSTALLED = pools


def installed_pools() -> PoolSet | None:
    """The pools :func:`install_pools` installed (None in a one-shot command)."""
    return _INSTALLED


class ServerSource:
    """Attach, lease from a pool, or start: decided once, made on first use (see the module docstring)."""

    def __init__(
        self,
        contract: Contract,
        base_dir: Path,
        *,
        log_dir: Path,
        url: str | None = None,
        pool: WarmPool | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        use_announced: bool = False,
    ) -> None:
        self.contract = contract
        self.base_dir = Path(base_dir)
        self.log_dir = Path(log_dir)
        if url is None and pool is None and _INSTALLED is not None:
            pool = _INSTALLED.for_contract(contract)
        use_announced = use_announced or os.environ.get("GATE_USE_POOL") == "1"
        if url is None and pool is None and use_announced:
            url = announced_server(contract)
        self.url = url
        self.pool = pool if (pool is not None and url is None and pool.accepts(contract)) else None
        self.ready_timeout = ready_timeout
        self.on_event = on_event or (lambda event: None)
        self._server: ServingRuntime | None = None
        self._failed: Error | None = None
        self._stack = contextlib.ExitStack()

    @property
    def mode(self) -> str:
        """``attached``, ``pooled`` or ``started``: what :meth:`get` does."""
        return "attached" if self.url else "pooled" if self.pool is not None else "started"

    def get(self) -> ServingRuntime:
        """The server (made on first call); a failure to make it is raised again on every later call."""
        if self._failed is not None:
            raise self._failed
        if self.pool is not None:
            server = self.pool.server(self.base_dir)
            self.note_lease(server)
            return server
        if self._server is None:
            runtime = runtime_for(self.contract)
            try:
                if self.url:
                    self.on_event({"event": "server.attach", "url": self.url})
                    self._server = runtime.attach(self.url, self.contract, base_dir=self.base_dir)
                else:
                    self.on_event({"event": "server.start", "base_dir": str(self.base_dir)})
                    self._server = self._stack.enter_context(
                        runtime.start(
                            self.base_dir,
                            self.contract,
                            log_dir=self.log_dir,
                            ready_timeout=self.ready_timeout,
                        )
                    )
            except Error as e:
                self._failed = e
                raise
        return self._server

    def note_lease(self, server: ServingRuntime) -> None:
        """Record (once per server) that this source's gates run on ``server`` of its pool."""
        if self.pool is None or self._server is server:
            return
        self._server = server
        self.on_event(
            {"event": "server.lease", "url": server.url, "pool": str(self.pool.key), "pid": self.pool_pid()}
        )

    def pool_pid(self) -> int | None:
        """The process id of the pooled server (for reports: one pool, one server process)."""
        server = self._server
        return getattr(server, "pid", None)

    def __call__(self) -> ServingRuntime:
        return self.get()

    def close(self) -> None:
        """Stop a server this source started (an attached or pooled one keeps running)."""
        if self.pool is None:
            self._stack.close()
        self._server = None

    def __enter__(self) -> ServerSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
