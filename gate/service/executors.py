"""Where a claimed job runs: ``local`` (in the worker process) or ``ray`` (a Ray pool actor).

Both run the same :func:`gate.service.jobs.execute_job`, and both keep warm
serving pools across jobs (:class:`gate.serving.PoolSet`: one warm server per base
identity and serving configuration, idle timeout, memory-aware eviction): a
release leases a slot of the pool for its contract instead of booting vLLM.

* ``local``: the pools live in the worker process.
* ``ray``: pool actors (one per GPU, each ``num_gpus=1``; one CPU actor where
  ``GATE_SERVICE_RAY_NUM_GPUS`` is 0) hold the warm servers, and each job goes to
  the actor whose pool already serves its contract's key (else the actor serving
  the fewest keys, then the least busy).

How many jobs run at once is one rule for both (:func:`jobs_at_once`): a holder of warm
pools (the local worker process; each Ray pool actor, a threaded actor) runs up to
``GATE_SERVICE_WORKER_JOBS`` (default 4) jobs at once, so several candidates gate
concurrently on one warm server (a pool admits at most the contract's
``serving.max_loras``; prompt log-prob work takes the server alone where the runtime
cannot batch it, :mod:`gate.serving._requests`); without pools one at a time. A worker
dispatches up to that many jobs per actor. Each job's release records where it ran and
how many jobs that process ran at that moment (its ``job.where`` event). The jobs of a Ray
actor that dies, or that a stopping worker kills, go back to the queue.
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

from sqlalchemy import Engine

from gate.errors import InputError
from gate.registry import Registry
from gate.service.db import sync_engine
from gate.service.jobs import EventRecorder, execute_job
from gate.service.queue import requeue_interrupted, worker_id
from gate.service.settings import Settings, get_settings

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "PoolActor",
    "RayExecutor",
    "jobs_at_once",
    "make_pools",
    "pools_enabled",
    "worker_jobs",
]

log = logging.getLogger("gate.service")


class Executor(ABC):
    """Runs one job to completion, calling ``beat`` at least every ``heartbeat_s`` while it runs."""

    #: How many jobs a worker may run on this executor at once (:func:`gate.service.worker.run_worker`).
    concurrency: int = 1

    @abstractmethod
    def __init__(self, settings: Settings) -> None: ...

    @abstractmethod
    def run(self, job_id: int, release_id: int, kind: str, beat: Callable[[], None]) -> None:
        """Run the job; return when its outcome is recorded (or, where it ran was lost, it is re-queued)."""

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


def pools_enabled(settings: Settings) -> bool:
    """Whether releases lease warm pools (not when they attach to a URL or ``GATE_SERVICE_POOLS=0``)."""
    return not settings.vllm_url and os.environ.get("GATE_SERVICE_POOLS") != "0"


def jobs_at_once(settings: Settings) -> int:
    """How many jobs one holder of warm pools (a local worker, a Ray pool actor) runs at once.

    On warm pools candidates gate together (each pool admits ``serving.max_loras`` at once);
    a boot per release (no pools) would boot that many servers at once: one job at a time.
    """
    return worker_jobs() if pools_enabled(settings) else 1


class _Running:
    """The jobs one pool holder runs now; each release records where it ran and beside how many."""

    def __init__(self, executor: str) -> None:
        self.executor = executor
        self.count = 0
        self._lock = threading.Lock()

    def run(self, settings: Settings, engine: Engine, job_id: int, release_id: int, kind: str) -> str:
        """Run the job in the calling thread; return where it ran."""
        with self._lock:
            self.count += 1
            at_once = self.count
        try:
            here = worker_id()
            # Evidence for people and tests: which process ran the job, and how many jobs it
            # ran at that moment (the job itself included).
            EventRecorder(engine, release_id)(
                {
                    "event": "job.where",
                    "job": job_id,
                    "executor": self.executor,
                    "where": here,
                    "at_once": at_once,
                }
            )
            execute_job(settings, engine, job_id, release_id, kind)
            return here
        finally:
            with self._lock:
                self.count -= 1


def make_pools(settings: Settings) -> Any:
    """The warm pools of one worker or pool actor (None when every release attaches to a URL)."""
    if not pools_enabled(settings):
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
        self.concurrency = jobs_at_once(settings)
        self._running = _Running("local")

    def run(self, job_id: int, release_id: int, kind: str, beat: Callable[[], None]) -> None:
        """Run the job in the calling thread."""
        self._running.run(self.settings, self.engine, job_id, release_id, kind)

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
    """Body of a Ray pool actor: warm pools in the actor process, jobs run against them.

    A threaded actor (``max_concurrency`` = :func:`jobs_at_once`): each job runs in one of
    the actor's threads, like a local worker's job threads, on the same pools.
    """

    def __init__(self, env: dict[str, str]) -> None:
        from gate.gates import install_pools

        self.settings = get_settings(env)
        self.engine = sync_engine(self.settings)
        self.pools = make_pools(self.settings)
        install_pools(self.pools)
        self._running = _Running("ray")

    def run(self, job_id: int, release_id: int, kind: str) -> str:
        """Run one job; return where it ran."""
        return self._running.run(self.settings, self.engine, job_id, release_id, kind)

    def where(self) -> str:
        """The actor's host and process id."""
        return worker_id()

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
        #: Jobs one actor runs at once (its threads), by the local worker's rule; the worker
        #: dispatches that many per actor.
        self.per_actor = jobs_at_once(settings)
        self.concurrency = self.slots * self.per_actor
        self._options: dict[str, Any] = {"num_cpus": 1, "max_concurrency": self.per_actor, "max_restarts": 0}
        if gpus:
            self._options["num_gpus"] = 1
        self._actor_cls = ray.remote(PoolActor)
        #: The actor of each slot (None until a job needs it, or after it was killed).
        self._actors: list[Any | None] = [None] * self.slots
        #: pool key -> index of the actor whose pool serves it.
        self.routes: dict[str, int] = {}
        self._busy: list[int] = [0] * self.slots
        self._lock = threading.Lock()
        self._engine = sync_engine(settings)

    def _take(self, key: str | None) -> tuple[int, Any]:
        """The slot and actor for a job of pool ``key`` (counted busy until :meth:`_give_back`)."""
        with self._lock:
            index = self.routes.get(key) if key is not None else None
            if index is None:
                # A new key goes where no pool is warm yet (another GPU), else to the least busy actor.
                served = [sum(1 for i in self.routes.values() if i == slot) for slot in range(self.slots)]
                index = min(range(self.slots), key=lambda i: (served[i], self._busy[i], i))
                if key is not None:
                    self.routes[key] = index
            actor = self._actors[index]
            if actor is None:
                actor = self._actors[index] = self._actor_cls.options(**self._options).remote(
                    self.settings.to_env()
                )
            self._busy[index] += 1
            return index, actor

    def _give_back(self, index: int) -> None:
        with self._lock:
            self._busy[index] -= 1

    def _drop(self, index: int, actor: Any) -> None:
        """Forget ``actor`` (dead or killed): its routes go, the slot gets a fresh actor when next used."""
        with self._lock:
            if self._actors[index] is actor:  # not already replaced by a sibling job of the same actor
                self._actors[index] = None
                self.routes = {k: v for k, v in self.routes.items() if v != index}

    def run(self, job_id: int, release_id: int, kind: str, beat: Callable[[], None]) -> None:
        """Send the job to the actor whose pool matches its base and wait, heartbeating while it runs."""
        # Without pools (every release attaches to a URL) no actor holds anything warm: least busy wins.
        key = release_pool_key(self.settings, release_id) if pools_enabled(self.settings) else None
        index, actor = self._take(key)
        try:
            ref = actor.run.remote(job_id, release_id, kind)
            while True:
                ready, _ = self._ray.wait([ref], timeout=self.settings.heartbeat_s)
                beat()
                if ready:
                    where = self._ray.get(ref)
                    log.info("job %s ran in Ray pool actor %d on %s", job_id, index, where)
                    return
        except self._ray.exceptions.RayActorError as e:
            # The actor died under its jobs (each job in it sees this): like a crashed worker's, they go
            # back to the queue (retried up to max_attempts), and the next job gets a fresh actor.
            self._drop(index, actor)
            reason = f"Ray pool actor {index} died ({type(e).__name__})"
            log.warning("job %s: %s; re-queued", job_id, reason)
            requeue_interrupted(self._engine, job_id, worker_id(), reason)
        except Exception:
            raise  # the job's own failure; the actor and the jobs beside it go on
        except BaseException:
            # The worker is stopping: the job must not go on publishing behind the queue's back, and an
            # actor task cannot be force-cancelled, so the actor goes (its warm servers with it). The
            # jobs beside it in the actor stop with it and, the worker stopping, are re-queued too.
            self._ray.kill(actor)
            self._drop(index, actor)
            raise
        finally:
            self._give_back(index)

    def close(self) -> None:
        """Stop the pool actors (and their warm servers) and disconnect from Ray."""
        with self._lock:
            actors, self._actors = [a for a in self._actors if a is not None], [None] * self.slots
        for actor in actors:
            try:
                self._ray.get(actor.close.remote(), timeout=60)
            except Exception:
                log.exception("a Ray pool actor did not close cleanly")
            self._ray.kill(actor)
        self._ray.shutdown()
        self._engine.dispose()


#: Executors by name; another package adds one through the ``gate.executors`` entry-point group.
EXECUTORS: Registry[Executor] = Registry(
    "executor",
    Executor,  # type: ignore[type-abstract]
    entry_point_group="gate.executors",
)
EXECUTORS.register_lazy("local", "gate.service.executors:LocalExecutor")
EXECUTORS.register_lazy("ray", "gate.service.executors:RayExecutor")
