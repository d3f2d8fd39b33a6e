"""The ``ray`` executor: a release runs in a Ray pool actor on a local Ray instance to its recorded outcome.

The worker claims the job from the database queue and submits it as a Ray task
with resource requests (``num_cpus=1``; ``num_gpus`` when configured); the task
runs the same pipeline and writes its events and outcome to the same database.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.service import ServiceFactory
from tests.service.test_release_e2e import follow_events, release_server

pytestmark = [pytest.mark.slow, pytest.mark.extended]


def test_the_ray_executor_runs_a_release_as_a_ray_task_on_a_local_instance(
    service_factory: ServiceFactory,
    trained_adapter_run: Path,
    vllm_server: Any,
    docker_registry: Any,
    tmp_path: Path,
) -> None:
    svc = release_server(
        service_factory,
        runs_root=trained_adapter_run.resolve().parent,
        registry=docker_registry,
        vllm_url=vllm_server.url,
        keys=tmp_path,
        executor="ray",
        ray_num_cpus=2,
    ).start()
    with svc.client("submit") as c:
        r = c.post("/api/releases", json={"name": "ray", "version": "1.0.0", "run": str(trained_adapter_run)})
        assert r.status_code == 201, r.text
    rid = r.json()["id"]
    events = follow_events(svc, rid)
    with svc.client("read") as c:
        done = c.get(f"/api/releases/{rid}").json()
        audit = c.get("/api/audit", params={"release_id": rid}).json()
    # The release ran to its outcome inside the Ray task: the pipeline's events, the verdict, one audit entry.
    assert done["status"] in ("published", "failed"), (done["error"], svc.log.read_text()[-3000:])
    finished = [d.get("gate") for k, d in events if k == "gate.finish"]
    assert finished[0] == "check" and "release.finish" in [k for k, _ in events]
    assert done["verdict"] is not None
    if done["status"] == "published":
        assert finished == ["check", "smoke", "eval", "sign", "publish"]
        digest, _ = docker_registry.manifest("adapters/ray", "1.0.0")
        assert done["digest"] == digest and [a["action"] for a in audit] == ["submitted", "published"]
    else:
        assert [a["action"] for a in audit] == ["submitted", "failed"]
        assert docker_registry.tags("adapters/ray") == []
    # The job ran in a Ray worker process, not in the gate worker (the worker log names where).
    worker_log = (svc.settings.data_dir / "logs" / "worker-0.log").read_text()
    gate_worker = re.search(r"worker \S+:(\d+) started \(executor ray\)", worker_log)
    ray_task = re.search(r"ran in Ray pool actor \d+ on \S+:(\d+)", worker_log)
    assert gate_worker is not None and ray_task is not None, worker_log
    assert ray_task.group(1) != gate_worker.group(1)
