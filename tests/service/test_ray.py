"""The ``ray`` executor: releases run in a Ray pool actor on a local Ray instance, several at once.

The worker claims jobs from the database queue and sends them to a pool actor (one
per GPU with ``num_gpus=1``, one CPU actor here); the actor is threaded and runs as
many jobs at once as a local worker does on its warm pools, each on the same
pipeline, writing events and outcome to the same database. Kept cheap: the
releases are NaN adapters that the check gate stops, so no server boots.

Overlap without timing luck: the pipeline's test-only pause hook holds every job
right after its check gate, so the first job cannot leave the actor before the
second arrives; the second job's ``job.where`` event, recorded by the actor as the
job enters it, counts two jobs there. The actor process then dies (SIGKILL): both
jobs in it go back to the queue and run again, together, in a fresh actor.
Stopping the server interrupts both again: both are re-queued (as on the local
executor), and after a restart both reach their outcome.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gate.service.db import sync_engine, sync_session
from gate.service.models import Event, Release
from tests.fixtures.service import ServiceFactory, ServiceProcess, wait_for
from tests.fixtures.training import edited_run
from tests.service.test_release_e2e import follow_events, release_server

pytestmark = pytest.mark.slow


def _events(svc: ServiceProcess, rid: int, kind: str) -> list[dict[str, Any]]:
    """The recorded events of one kind of a release, in order (read from the service's database)."""
    engine = sync_engine(svc.settings)
    try:
        with sync_session(engine) as s:
            q = sa.select(Event.data).where(Event.release_id == rid, Event.kind == kind).order_by(Event.id)
            return [dict(d) for d in s.scalars(q).all()]
    finally:
        engine.dispose()


def _status(svc: ServiceProcess, rid: int) -> str:
    engine = sync_engine(svc.settings)
    try:
        with sync_session(engine) as s:
            return s.get_one(Release, rid).status
    finally:
        engine.dispose()


def _pid(where: str) -> str:
    return where.rpartition(":")[2]


def test_two_releases_run_at_once_in_one_ray_pool_actor_which_dying_or_stopping_requeues_both(
    service_factory: ServiceFactory, trained_adapter_run: Path, docker_registry: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    run = edited_run(trained_adapter_run, runs / "nan", float("nan"))
    svc = release_server(
        service_factory,
        runs_root=runs,
        registry=docker_registry,
        vllm_url="",
        keys=tmp_path,
        executor="ray",
        ray_num_cpus=2,
        max_attempts=3,
    )
    # Every job holds still inside the actor once its check gate finished (until the actor is killed).
    svc.start(extra_env={"GATE_TESTONLY_PAUSE_AFTER": "gate.finish:check"})
    rids = []
    for name in ("ray-a", "ray-b"):
        with svc.client("submit") as c:
            r = c.post(
                "/api/releases",
                json={"name": name, "version": "1.0.0", "run": str(run), "contract": "smollm2-vllm"},
            )
            assert r.status_code == 201, r.text
        rids.append(r.json()["id"])

    def held(attempt: int) -> list[dict[str, Any]] | None:
        """The ``job.where`` events of ``attempt`` once both releases' checks finished in it (then held)."""
        if not all(len(_events(svc, rid, "gate.finish")) >= attempt for rid in rids):
            return None
        return [_events(svc, rid, "job.where")[attempt - 1] for rid in rids]

    first = wait_for(lambda: held(1), timeout=300, interval=0.5, what="both checks to finish in the actor")
    # One actor process ran both, and each job entered it while the other was inside (held there).
    assert {w["executor"] for w in first} == {"ray"}
    assert len({w["where"] for w in first}) == 1, first
    assert sorted(w["at_once"] for w in first) == [1, 2], first
    # That process is the Ray pool actor, not the gate worker (the worker log names its own pid).
    worker_log = (svc.settings.data_dir / "logs" / "worker-0.log").read_text()
    gate_worker = re.search(r"worker \S+:(\d+) started \(executor ray, (\d+) job\(s\) at once\)", worker_log)
    assert gate_worker is not None, worker_log
    assert int(gate_worker.group(2)) >= 2
    actor_pid = _pid(first[0]["where"])
    assert actor_pid != gate_worker.group(1)

    # The actor dies under both jobs: both go back to the queue and run again, together, in a new actor.
    os.kill(int(actor_pid), signal.SIGKILL)
    second = wait_for(lambda: held(2), timeout=300, interval=0.5, what="both checks to run again")
    assert len({w["where"] for w in second}) == 1 and _pid(second[0]["where"]) != actor_pid, second
    assert sorted(w["at_once"] for w in second) == [1, 2], second
    for rid in rids:
        (died,) = _events(svc, rid, "interrupted")
        assert died["retry"] is True and "Ray pool actor 0 died" in died["reason"], died

    # Stopping the server interrupts both jobs in the actor: both are re-queued, neither failed.
    svc.stop()
    assert [_status(svc, rid) for rid in rids] == ["queued", "queued"]
    for rid in rids:
        interrupted = _events(svc, rid, "interrupted")
        assert [d["retry"] for d in interrupted] == [True, True], interrupted
        assert not _events(svc, rid, "finished")

    # After a restart both run again (in a new actor) and reach their outcome: stopped by the check.
    svc.start()
    for rid in rids:
        follow_events(svc, rid, timeout=600)
        with svc.client("read") as c:
            done = c.get(f"/api/releases/{rid}").json()
            audit = c.get("/api/audit", params={"release_id": rid}).json()
        assert done["status"] == "failed", (done["error"], svc.log.read_text()[-3000:])
        assert done["verdict"]["verdict"]["stopped_at"] == "check"
        assert [a["action"] for a in audit] == ["submitted", "interrupted", "interrupted", "failed"]
        last = _events(svc, rid, "job.where")
        assert len(last) == 3 and last[2]["executor"] == "ray", last
        assert _pid(last[2]["where"]) not in {actor_pid, _pid(second[0]["where"])}
        assert [d.get("gate") for d in _events(svc, rid, "gate.finish")] == ["check"] * 3
    assert docker_registry.tags("adapters/ray-a") == [] and docker_registry.tags("adapters/ray-b") == []
