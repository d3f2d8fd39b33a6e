"""The durable job queue, held in the service database.

A job is claimed with a conditional UPDATE (``... WHERE status = 'queued'``), so
two workers never run the same job on SQLite or PostgreSQL. A running job carries
its worker's identity and a heartbeat; :func:`recover` finds jobs whose worker died
(stale heartbeat, or a dead process on this host) and re-queues them (or fails them
after ``max_attempts``), so a crash never loses a release and never leaves one
"running" forever.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from gate.service.db import sync_session
from gate.service.models import TERMINAL_STATUSES, AuditEntry, Event, Job, Release, utcnow

__all__ = ["ClaimedJob", "claim", "finish_job", "heartbeat", "recover", "worker_id"]


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker now owns."""

    id: int
    release_id: int
    kind: str
    attempt: int


def claim(engine: Engine, me: str) -> ClaimedJob | None:
    """Take the oldest queued job, or None when the queue is empty."""
    with sync_session(engine) as s:
        candidates = s.scalars(select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(5)).all()
        for job_id in candidates:
            now = utcnow()
            res = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued")
                .values(
                    status="running", worker=me, heartbeat_at=now, started_at=now, attempts=Job.attempts + 1
                )
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                job = s.get_one(Job, job_id)
                s.commit()
                return ClaimedJob(id=job.id, release_id=job.release_id, kind=job.kind, attempt=job.attempts)
    return None


def heartbeat(engine: Engine, job_id: int, me: str) -> bool:
    """Refresh the job's heartbeat; False if this worker no longer owns it."""
    with sync_session(engine) as s:
        res = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.worker == me, Job.status == "running")
            .values(heartbeat_at=utcnow())
        )
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]


def finish_job(engine: Engine, job_id: int, me: str, *, status: str, error: str | None = None) -> None:
    """Mark the job ``done`` or ``failed`` (only if this worker still owns it)."""
    with sync_session(engine) as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id, Job.worker == me, Job.status == "running")
            .values(status=status, error=error, finished_at=utcnow())
        )


def requeue_interrupted(engine: Engine, job_id: int, me: str, reason: str) -> None:
    """Give back a job this worker cannot finish (it is stopping): retried or failed like a crash."""
    with sync_session(engine) as s:
        job = s.get(Job, job_id)
        if job is None or job.status != "running" or job.worker != me:
            return
        _interrupt(s, job, reason)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_dead(worker: str | None, heartbeat_at: dt.datetime | None, lease_s: float) -> bool:
    if heartbeat_at is None or utcnow() - heartbeat_at > dt.timedelta(seconds=lease_s):
        return True
    host, _, pid = (worker or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not _pid_alive(int(pid))
    return False


def _event(s: Session, release_id: int, kind: str, **data: Any) -> None:
    s.add(Event(release_id=release_id, kind=kind, data={"event": kind, **data}))


def _interrupt(s: Session, job: Job, reason: str) -> None:
    release = s.get_one(Release, job.release_id)
    now = utcnow()
    if release.status in TERMINAL_STATUSES:
        # The job got as far as recording its outcome: nothing to redo.
        job.status, job.finished_at = "done", now
        return
    if job.attempts < job.max_attempts:
        job.status, job.worker, job.heartbeat_at = "queued", None, None
        release.status, release.updated_at = "queued", now
        _event(s, release.id, "interrupted", reason=reason, attempt=job.attempts, retry=True)
        s.add(
            AuditEntry(
                actor="gate-service",
                action="interrupted",
                release_id=release.id,
                name=release.name,
                version=release.version,
                detail={"reason": reason, "attempt": job.attempts, "retry": True},
            )
        )
    else:
        job.status, job.finished_at, job.error = "failed", now, f"interrupted: {reason}"
        release.status, release.updated_at = "error", now
        release.error = f"interrupted {job.attempts} time(s), not retried again: {reason}"
        _event(s, release.id, "interrupted", reason=reason, attempt=job.attempts, retry=False)
        _event(s, release.id, "finished", status="error", error=release.error)
        s.add(
            AuditEntry(
                actor="gate-service",
                action="interrupted",
                release_id=release.id,
                name=release.name,
                version=release.version,
                detail={"reason": reason, "attempt": job.attempts, "retry": False},
            )
        )


def recover(engine: Engine, lease_s: float) -> int:
    """Re-queue (or fail) running jobs whose worker is gone; return how many were recovered."""
    n = 0
    with sync_session(engine) as s:
        running = s.scalars(
            select(Job).where(Job.status == "running").with_for_update(skip_locked=True)
        ).all()
        for job in running:
            if _worker_dead(job.worker, job.heartbeat_at, lease_s):
                _interrupt(s, job, f"worker {job.worker} stopped while the job was running")
                n += 1
    return n
