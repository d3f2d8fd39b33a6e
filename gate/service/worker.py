"""A worker process: claims jobs from the database queue and runs them with the configured executor.

``gate serve`` starts ``GATE_SERVICE_WORKERS`` of these beside the API server
(``python -m gate.service.worker``, settings from the environment). A worker runs
up to its executor's ``concurrency`` jobs at once: on warm pools several candidates
gate together on one server (each pool still admits at most ``serving.max_loras``);
without pools one job at a time, in the main thread. A worker heartbeats each job
from a thread; SIGTERM (server shutdown) interrupts the running pipelines, whose
cleanup stops their subprocesses, and the jobs go back to the queue. If the server
dies, the worker notices its parent is gone and does the same.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

from sqlalchemy import Engine

from gate.service.db import sync_engine
from gate.service.executors import EXECUTORS, Executor
from gate.service.queue import (
    ClaimedJob,
    claim,
    finish_job,
    heartbeat,
    recover,
    requeue_interrupted,
    worker_id,
)
from gate.service.settings import Settings, get_settings

__all__ = ["main", "run_worker"]

log = logging.getLogger("gate.service.worker")


class _Stop(BaseException):
    """Raised in the main thread to interrupt a running job (SIGTERM, parent gone)."""


def _start_executor(settings: Settings, stop: threading.Event, attempts: int = 5) -> Executor | None:
    """The configured executor; a slow start (Ray on a busy host) is retried, not fatal at once."""
    cls = EXECUTORS.get(settings.executor)
    for attempt in range(1, attempts + 1):
        try:
            return cls(settings)
        except Exception:
            log.exception("executor %s failed to start (try %d of %d)", settings.executor, attempt, attempts)
            if attempt == attempts:
                raise
            if stop.wait(5.0 * attempt):
                return None
    return None


def run_worker(settings: Settings, *, stop: threading.Event | None = None) -> None:
    """Claim and run jobs (up to the executor's ``concurrency`` at once) until ``stop`` or SIGTERM."""
    stop = stop or threading.Event()
    engine = sync_engine(settings)
    executor = _start_executor(settings, stop)
    if executor is None:
        engine.dispose()
        return
    me = worker_id()
    parent = os.getppid()
    in_job = threading.Event()
    capacity = max(1, executor.concurrency)
    slots = threading.BoundedSemaphore(capacity)
    threads: dict[int, threading.Thread] = {}
    threads_lock = threading.Lock()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if in_job.is_set():
            raise _Stop(f"signal {signum}")

    def run_threaded(job: ClaimedJob) -> None:
        try:
            _run_claimed(settings, engine, executor, job, me, parent, threading.Event(), stop)
        finally:
            with threads_lock:
                threads.pop(job.id, None)
            slots.release()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
    log.info("worker %s started (executor %s, %d job(s) at once)", me, settings.executor, capacity)
    last_recover = 0.0
    try:
        while not stop.is_set():
            if os.getppid() != parent:
                log.warning("worker %s: the server is gone; stopping", me)
                break
            if time.monotonic() - last_recover > settings.lease_s / 2:
                recover(engine, settings.lease_s)
                last_recover = time.monotonic()
            if not slots.acquire(timeout=settings.poll_s):
                continue  # every slot runs a job
            job = claim(engine, me)
            if job is None:
                slots.release()
                if not threads:  # a pool leased by a running job is never idle
                    executor.idle()
                stop.wait(settings.poll_s)
                continue
            log.info(
                "worker %s: job %s (%s) of release %s, attempt %s",
                me,
                job.id,
                job.kind,
                job.release_id,
                job.attempt,
            )
            if capacity == 1:
                # One job at a time runs in the main thread, where SIGTERM interrupts it directly.
                keep_going = _run_claimed(settings, engine, executor, job, me, parent, in_job, stop)
                slots.release()
                if not keep_going:
                    break
                continue
            thread = threading.Thread(target=run_threaded, args=(job,), name=f"job-{job.id}", daemon=True)
            with threads_lock:
                threads[job.id] = thread
            thread.start()
    finally:
        with threads_lock:
            running = list(threads.values())
        _stop_threads(running, executor)
        engine.dispose()
        log.info("worker %s stopped", me)


def _stop_threads(running: list[threading.Thread], executor: Executor, grace: float = 60.0) -> None:
    """Interrupt the jobs running in threads, then close the executor (its warm servers) and wait.

    A job thread cannot take a signal: it gets :class:`_Stop` raised asynchronously (at its
    next Python instruction), and closing the executor stops the servers it may be waiting
    on; a job that ends while the worker stops is re-queued, not failed (:func:`_run_claimed`).
    """
    for thread in running:
        if thread.ident is not None and thread.is_alive():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_Stop))
    deadline = time.monotonic() + 5.0
    for thread in running:
        thread.join(max(0.0, deadline - time.monotonic()))
    executor.close()
    deadline = time.monotonic() + grace
    for thread in running:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("job thread %s did not stop within %.0fs", thread.name, grace)


def _run_claimed(
    settings: Settings,
    engine: Engine,
    executor: Executor,
    job: ClaimedJob,
    me: str,
    parent: int,
    in_job: threading.Event,
    stopping: threading.Event,
) -> bool:
    """Run one claimed job with a heartbeat thread; False when the worker must stop.

    A job that raises while the worker is stopping was interrupted (its server stopped under
    it, or :class:`_Stop` reached it): it goes back to the queue rather than failing.
    """
    done = threading.Event()

    def beat() -> None:
        heartbeat(engine, job.id, me)

    def beat_loop() -> None:
        while not done.wait(settings.heartbeat_s):
            beat()
            if os.getppid() != parent:
                # The server was killed: interrupt the job so its cleanup runs.
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=beat_loop, name=f"heartbeat-{job.id}", daemon=True).start()
    in_job.set()
    try:
        executor.run(job.id, job.release_id, job.kind, beat)
    except _Stop as e:
        in_job.clear()
        requeue_interrupted(engine, job.id, me, f"worker {me} stopped ({e})")
        return False
    except Exception as e:
        in_job.clear()
        if stopping.is_set():
            requeue_interrupted(engine, job.id, me, f"worker {me} stopped ({type(e).__name__})")
            return False
        log.exception("job %s failed", job.id)
        finish_job(engine, job.id, me, status="failed", error=str(e))
    else:
        in_job.clear()
        finish_job(engine, job.id, me, status="done")
    finally:
        done.set()
    return True


def main() -> int:
    """Entry point of ``python -m gate.service.worker``."""
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    run_worker(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
