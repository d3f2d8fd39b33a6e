"""The durable queue on SQLite and PostgreSQL: exclusive claims, crash recovery, bounded retries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import sqlalchemy as sa

from gate.service.db import migrate, sync_engine, sync_session
from gate.service.models import AuditEntry, Event, Job, Release
from gate.service.queue import claim, finish_job, heartbeat, recover
from gate.service.settings import Settings


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _setup(database_url: str, tmp_path: Path, *, max_attempts: int = 2) -> tuple[sa.Engine, int]:
    settings = Settings(data_dir=tmp_path / "svc", database_url=database_url)
    migrate(settings)
    engine = sync_engine(settings)
    with sync_session(engine) as s:
        r = Release(
            name="q",
            version="1",
            status="queued",
            contract_name="c",
            contract_path="/c",
            contract_sha256="x",
            approval_required=False,
            source_kind="reference",
            run_dir="/r",
            target="oci://h/r:1",
            submitted_by="token:t",
        )
        s.add(r)
        s.flush()
        s.add(Job(release_id=r.id, kind="release", status="queued", max_attempts=max_attempts))
        rid = r.id
    return engine, rid


def test_a_job_is_claimed_by_exactly_one_of_many_concurrent_workers(
    database_url: str, tmp_path: Path
) -> None:
    engine, _ = _setup(database_url, tmp_path)
    got: list[object] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        got.append(claim(engine, f"{socket.gethostname()}:{os.getpid()}-{i}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [g for g in got if g is not None]
    assert len(claimed) == 1
    assert claim(engine, "another") is None
    engine.dispose()


def test_a_crashed_workers_job_is_requeued_once_then_failed_never_lost(
    database_url: str, tmp_path: Path
) -> None:
    engine, rid = _setup(database_url, tmp_path, max_attempts=2)
    dead = f"{socket.gethostname()}:{_dead_pid()}"
    job = claim(engine, dead)
    assert job is not None and job.attempt == 1
    # Alive and beating: not touched.
    me = f"{socket.gethostname()}:{os.getpid()}"
    assert recover(engine, lease_s=60) == 1  # the claimer's process is dead
    with sync_session(engine) as s:
        assert s.get_one(Job, job.id).status == "queued"
        assert s.get_one(Release, rid).status == "queued"
    job = claim(engine, me)
    assert job is not None and job.attempt == 2
    assert heartbeat(engine, job.id, me)
    assert recover(engine, lease_s=60) == 0  # our own, live job stays running
    # Now this worker "dies" (its heartbeat goes stale): the second interruption fails the release.
    with sync_session(engine) as s:
        s.execute(sa.update(Job).where(Job.id == job.id).values(heartbeat_at=None))
    assert recover(engine, lease_s=60) == 1
    with sync_session(engine) as s:
        j, r = s.get_one(Job, job.id), s.get_one(Release, rid)
        assert j.status == "failed" and r.status == "error"
        assert r.error is not None and "interrupted 2 time(s), not retried again" in r.error
        actions = s.scalars(sa.select(AuditEntry.action).where(AuditEntry.release_id == rid)).all()
        assert actions == ["interrupted", "interrupted"]
        kinds = s.scalars(sa.select(Event.kind).where(Event.release_id == rid).order_by(Event.id)).all()
        assert kinds == ["interrupted", "interrupted", "finished"]
    # A finished job cannot be finished again by a stale worker.
    finish_job(engine, job.id, me, status="done")
    with sync_session(engine) as s:
        assert s.get_one(Job, job.id).status == "failed"
    engine.dispose()
