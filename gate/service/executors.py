"""Where a claimed job runs: ``local`` (in the worker process) or ``ray`` (a Ray task).

Both run the same :func:`gate.service.jobs.execute_job`. With Ray each job is a
task with resource requests (``GATE_SERVICE_RAY_NUM_GPUS`` GPUs for the smoke and
eval servers), so a team can spread releases over a cluster; the task writes its
events and outcome to the same database.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from gate.registry import Registry
from gate.service.db import sync_engine
from gate.service.jobs import execute_job
from gate.service.settings import Settings, get_settings

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor"]

log = logging.getLogger("gate.service")


class Executor(ABC):
    """Runs one job to completion, calling ``beat`` at least every ``heartbeat_s`` while it runs."""

    @abstractmethod
    def __init__(self, settings: Settings) -> None: ...

    @abstractmethod
    def run(self, job_id: int, release_id: int, kind: str, beat: Callable[[], None]) -> None:
        """Run the job; return when its outcome is recorded."""

    @abstractmethod
    def close(self) -> None:
        """Release the executor's resources."""


class LocalExecutor(Executor):
    """Runs the pipeline in the worker process itself (the heartbeat comes from a thread)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = sync_engine(settings)

    def run(self, job_id: int, release_id: int, kind: str, beat: Callable[[], None]) -> None:
        """Run the job inline."""
        execute_job(self.settings, self.engine, job_id, release_id, kind)

    def close(self) -> None:
        """Dispose of the database engine."""
        self.engine.dispose()


def _ray_task(env: dict[str, str], job_id: int, release_id: int, kind: str) -> str:
    """Body of the Ray task: rebuild the settings from ``env`` and run the job."""
    settings = get_settings(env)
    engine = sync_engine(settings)
    try:
        execute_job(settings, engine, job_id, release_id, kind)
    finally:
        engine.dispose()
    return f"{os.uname().nodename}:{os.getpid()}"


class RayExecutor(Executor):
    """Submits each job as a Ray task (local instance unless ``GATE_SERVICE_RAY_ADDRESS`` is set)."""

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
        self._remote = ray.remote(_ray_task)

    def run(self, job_id: int, release_id: int, kind: str, beat: Callable[[], None]) -> None:
        """Submit the job as a Ray task and wait for it, heartbeating while it runs."""
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
        if self.settings.ray_num_gpus:
            options["num_gpus"] = self.settings.ray_num_gpus
        ref = self._remote.options(**options).remote(self.settings.to_env(), job_id, release_id, kind)
        try:
            while True:
                ready, _ = self._ray.wait([ref], timeout=self.settings.heartbeat_s)
                beat()
                if ready:
                    where = self._ray.get(ref)
                    log.info("job %s ran as a Ray task on %s", job_id, where)
                    return
        except BaseException:
            # The worker is stopping: the task must not go on publishing behind the queue's back.
            self._ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        """Disconnect from Ray."""
        self._ray.shutdown()


#: Executors by name; another package adds one through the ``gate.executors`` entry-point group.
EXECUTORS: Registry[Executor] = Registry(
    "executor",
    Executor,  # type: ignore[type-abstract]
    entry_point_group="gate.executors",
)
EXECUTORS.register_lazy("local", "gate.service.executors:LocalExecutor")
EXECUTORS.register_lazy("ray", "gate.service.executors:RayExecutor")
