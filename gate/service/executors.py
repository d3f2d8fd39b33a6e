"""Where a claimed job runs: ``local`` (in the worker process) or ``ray`` (a Ray pool actor).

Both run the same :func:`gate.service.jobs.execute_job`, and both keep warm
serving pools across jobs (:class:`gate.serving.PoolSet`: one warm server per base
identity and serving configuration, idle timeout, memory-aware eviction): a
release leases a slot of the pool for its contract instead of booting vLLM.

* ``local``: the pools live in the worker process.
* ``ray``: pool actors (one per GPU, each ``num_gpus=1``; one CPU actor where
  ``GATE_SERVICE_RAY_NUM_GPUS`` is 0) hold the warm servers, and each job goes to
  the actor whose pool already serves its contract's key (else the least busy
  actor). An actor runs up to ``serving.max_loras`` jobs at once.

With pools a local worker runs up to ``GATE_SERVICE_WORKER_JOBS`` (default 4) jobs at once,
so several candidates gate concurrently on one warm server (a pool admits at most the
contract's ``serving.max_loras``; prompt log-prob work takes the server alone where the
runtime cannot batch it, :mod:`gate.serving._requests`); without pools one at a time.
``GATE_SERVICE_POOLS=0`` turns the pools off (a vLLM boot per release: the
benchmark's baseline). ``GATE_SERVICE_POOL_IDLE_S`` (default 1800) closes a pool idle that long;
``GATE_SERVICE_POOL_MIN_FREE_MB`` (default 4096) closes the least recently used
pools before a new one boots while the host has less memory available. With
``GATE_SERVICE_VLLM_URL`` set every release attaches to that server instead
(verified against its contract) and no pool is used.
"""

from __future__ import annotations

import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gate.errors import InputError
from gate.registry import Registry
from gate.service.db import sync_engine
from gate.service.jobs import execute_job
from gate.service.settings import Settings, get_settings

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "PoolActor", "RayExecutor", "make_pools", "worker_jobs"]

log = logging.getLogger("gate.service")


class Executor(ABC):
    """Runs one job to completion, calling ``beat`` at least every ``heartbeat_s`` while it runs."""

    #: How many jobs a worker may run on this executor at once (:func:`gate.service.worker.run_worker`).
    concurrency: int = 1

    @abstractmethod
    def __init__(self, settings: Settings) -> None: ...

    @abstractmethod
    def run(self, job_id: int, release_id: int, kind: str, beat: Callable[[], None]) -> None:
        """Run the job; return when its outcome is recorded."""

    @abstractmethod
    def close(self) -> None:
        """Release the executor's resources."""

    def idle(self) -> None:
        """Called between jobs: close pools idle for too long."""
        return None


def worker_jobs() -> int:
    """``GATE_SERVICE_WORKER_JOBS`` (default 4, the shipped contracts' ``serving.max_loras``)."""
    raw = os.environ.get("GATE_SERVICE_WORKER_JOBS", "4")
    try:
        jobs = int(raw)
    except ValueError:
        raise InputError(f"GATE_SERVICE_WORKER_JOBS must be a whole number, not {raw!r}") from None
    if not 1 <= jobs <= 64:
        raise InputError(f"GATE_SERVICE_WORKER_JOBS must be between 1 and 64, not {jobs}")
    return jobs


def make_pools(settings: Settings) -> Any:
    """The warm pools of one worker or pool actor (None when every release attaches to a URL)."""
    if settings.vllm_url or os.environ.get("GATE_SERVICE_POOLS") == "0":
        return None
    from gate.serving import PoolSet

    return PoolSet(
        log_dir=Path(settings.data_dir) / "pools" / f"{os.uname().nodename}-{os.getpid()}",
        idle_s=float(os.environ.get("GATE_SERVICE_POOL_IDLE_S", "1800")),
        min_free_bytes=int(os.environ.get("GATE_SERVICE_POOL_MIN_FREE_MB", "4096")) << 20,
    )


class LocalExecutor(Executor):
    """Runs the pipeline in the worker process itself, on the worker's warm pools."""

    def __init__(self, settings: Settings) -> None:
        from gate.gates import install_pools

        self.settings = settings
        self.engine = sync_engine(settings)
        self.pools = make_pools(settings)
        install_pools(self.pools)
        # On warm pools candidates gate together (each pool admits serving.max_loras at once); a
        # boot per release (no pools) would boot that many servers at once: one job at a time.
        self.concurrency = worker_jobs() if self.pools is not None else 1

    def run(self, job_id: int, release_id: int, kind: str, beat: Callable[[], None]) -> None:
        """Run the job in the calling thread."""
        execute_job(self.settings, self.engine, job_id, release_id, kind)

    def idle(self) -> None:
        """Close pools idle for too long."""
        if self.pools is not None:
            self.pools.tick()

    def close(self) -> None:
        """Stop the warm servers and dispose of the database engine."""
        from gate.gates import install_pools

        install_pools(None)
        if self.pools is not None:
            self.pools.close()
        self.engine.dispose()


class PoolActor:
    """Body of a Ray pool actor: warm pools in the actor process, jobs run against them."""

    def __init__(self, env: dict[str, str]) -> None:
        from gate.gates import install_pools

        self.settings = get_settings(env)
        self.engine = sync_engine(self.settings)
        self.pools = make_pools(self.settings)
        install_pools(self.pools)

    def run(self, job_id: int, release_id: int, kind: str) -> str:
        """Run one job; return where it ran."""
        execute_job(self.settings, self.engine, job_id, release_id, kind)
        return f"{os.uname().nodename}:{os.getpid()}"

    def where(self) -> str:
        """The actor's host and process id."""
        return f"{os.uname().nodename}:{os.getpid()}"

    def close(self) -> None:
        """Stop the warm servers."""
        if self.pools is not None:
            self.pools.close()
        self.engine.dispose()


def release_pool_key(settings: Settings, release_id: int) -> str | None:
    """The pool key (base identity, serving configuration) of a release's contract, for routing."""
    from gate.contract import Contract
    from gate.errors import Error
    from gate.service.db import sync_session
    from gate.service.models import Release
    from gate.serving import pool_key

    engine = sync_engine(settings)
    try:
        with sync_session(engine) as s:
            release = s.get(Release, release_id)
            path = release.contract_path if release is not None else None
        if not path:
            return None
        return str(pool_key(Contract.from_yaml(Path(path))))
    except (Error, OSError):
        return None  # the job itself reports the unusable contract
    finally:
        engine.dispose()


class RayExecutor(Executor):
    """Sends each job to a Ray pool actor (local instance unless ``GATE_SERVICE_RAY_ADDRESS`` is set)."""

    def __init__(self, settings: Settings) -> None:
        try:
            import ray
        except ImportError as e:  # pragma: no cover - ray is in the service extra
            from gate.errors import EnvironmentBuildError

            raise EnvironmentBuildError(
                "the ray executor needs Ray", hint="pip install 'lora-gate[service]' (ray[default]==2.60.0)"
            ) from e
        self.settings = settings
        self._ray: Any = ray
        if not ray.is_initialized():
            try:
                if settings.ray_address:
                    ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=True)
                else:
                    ray.init(num_cpus=settings.ray_num_cpus, include_dashboard=False, log_to_driver=True)
            except Exception:
                # A half-started local instance would make the next attempt attach to a dead GCS.
                ray.shutdown()
                raise
        gpus = int(settings.ray_num_gpus)
        #: One actor per GPU (num_gpus=1 each), or one CPU actor.
        self.slots = max(1, gpus)
        self._options: dict[str, Any] = {"num_cpus": 1, "max_concurrency": 4, "max_restarts": 0}
        if gpus:
            self._options["num_gpus"] = 1
        self._actor_cls = ray.remote(PoolActor)
        self._actors: list[Any] = []
        #: pool key -> index of the actor whose pool serves it.
        self.routes: dict[str, int] = {}
        self._busy: list[int] = []
        self._lock = threading.Lock()

    def _actor_for(self, key: str | None) -> int:
        with self._lock:
            if key is not None and key in self.routes:
                return self.routes[key]
            if len(self._actors) < self.slots:
                self._actors.append(self._actor_cls.options(**self._options).remote(self.settings.to_env()))
                self._busy.append(0)
                index = len(self._actors) - 1
            else:
                index = min(range(len(self._actors)), key=lambda i: self._busy[i])
            if key is not None:
                self.routes[key] = index
            return index

    def run(self, job_id: int, release_id: int, kind: str, beat: Callable[[], None]) -> None:
        """Send the job to the actor whose pool matches its base and wait, heartbeating while it runs."""
        index = self._actor_for(release_pool_key(self.settings, release_id))
        actor = self._actors[index]
        with self._lock:
            self._busy[index] += 1
        ref = actor.run.remote(job_id, release_id, kind)
        try:
            while True:
                ready, _ = self._ray.wait([ref], timeout=self.settings.heartbeat_s)
                beat()
                if ready:
                    where = self._ray.get(ref)
                    log.info("job %s ran in Ray pool actor %d on %s", job_id, index, where)
                    return
        except BaseException:
            # The worker is stopping: the job must not go on publishing behind the queue's back, and an
            # actor task cannot be force-cancelled, so the actor goes (its warm servers with it).
            self._ray.kill(actor)
            with self._lock:
                self.routes = {k: v for k, v in self.routes.items() if v != index}
                self._actors[index] = self._actor_cls.options(**self._options).remote(self.settings.to_env())
            raise
        finally:
            with self._lock:
                self._busy[index] -= 1

    def close(self) -> None:
        """Stop the pool actors (and their warm servers) and disconnect from Ray."""
        for actor in self._actors:
            try:
                self._ray.get(actor.close.remote(), timeout=60)
            except Exception:
                log.exception("a Ray pool actor did not close cleanly")
            self._ray.kill(actor)
        self._ray.shutdown()


#: Executors by name; another package adds one through the ``gate.executors`` entry-point group.
EXECUTORS: Registry[Executor] = Registry(
    "executor",
    Executor,  # type: ignore[type-abstract]
    entry_point_group="gate.executors",
)
EXECUTORS.register_lazy("local", "gate.service.executors:LocalExecutor")
EXECUTORS.register_lazy("ray", "gate.service.executors:RayExecutor")
