"""The ``ray`` executor: a release runs in a Ray pool actor on a local Ray instance to its recorded outcome.

The worker claims the job from the database queue and sends it to a pool actor (one
per GPU with ``num_gpus=1``, one CPU actor here); the actor runs the same pipeline
on its own warm pools and writes events and outcome to the same database. Kept
cheap: the release is a NaN adapter that the check gate stops, so no server boots.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.service import ServiceFactory
from tests.fixtures.training import edited_run
from tests.service.test_release_e2e import follow_events, release_server

pytestmark = pytest.mark.slow


def test_the_ray_executor_runs_a_release_in_a_pool_actor_on_a_local_instance(
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
    ).start()
    with svc.client("submit") as c:
        r = c.post(
            "/api/releases",
            json={"name": "ray", "version": "1.0.0", "run": str(run), "contract": "smollm2-vllm"},
        )
        assert r.status_code == 201, r.text
    rid = r.json()["id"]
    events = follow_events(svc, rid, timeout=600)
    with svc.client("read") as c:
        done = c.get(f"/api/releases/{rid}").json()
        audit = c.get("/api/audit", params={"release_id": rid}).json()
    # The release ran to its outcome inside the actor: the pipeline's events, the verdict, the audit entries.
    assert done["status"] == "failed", (done["error"], svc.log.read_text()[-3000:])
    assert done["verdict"]["verdict"]["stopped_at"] == "check"
    assert [d.get("gate") for k, d in events if k == "gate.finish"] == ["check"]
    assert [a["action"] for a in audit] == ["submitted", "failed"]
    assert docker_registry.tags("adapters/ray") == []
    # The job ran in the Ray pool actor's process, not in the gate worker (the worker log names where).
    worker_log = (svc.settings.data_dir / "logs" / "worker-0.log").read_text()
    gate_worker = re.search(r"worker \S+:(\d+) started \(executor ray[,)]", worker_log)
    actor = re.search(r"ran in Ray pool actor 0 on \S+:(\d+)", worker_log)
    assert gate_worker is not None and actor is not None, worker_log
    assert actor.group(1) != gate_worker.group(1)
