"""``gate serve`` keeps one warm vLLM server for a base: several releases, one server process.

One worker and no ``--vllm-url``: the worker's pool boots vLLM once for the
contract's (base identity, serving configuration) and every release leases it.
The four releases are submitted at once, so the worker gates the candidates
concurrently on that one server (up to ``serving.max_loras``). A NaN adapter
submitted between two healthy releases is stopped before it reaches the server,
and the releases beside and after it are gated on the same, unpoisoned server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.service import ServiceFactory
from tests.fixtures.training import edited_run
from tests.service.test_release_e2e import follow_events, release_server

pytestmark = pytest.mark.slow


def test_three_releases_of_one_run_gate_concurrently_on_one_warm_server_and_a_nan_adapter_poisons_nothing(
    service_factory: ServiceFactory, trained_adapter_run: Path, docker_registry: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    healthy = runs / "healthy"
    shutil.copytree(trained_adapter_run, healthy, symlinks=False)
    nan = edited_run(trained_adapter_run, runs / "nan", float("nan"))
    svc = release_server(
        service_factory, runs_root=runs, registry=docker_registry, vllm_url="", keys=tmp_path, workers=1
    ).start()
    order = [
        ("warm", "1.0.0", healthy),
        ("warm-nan", "1.0.0", nan),
        ("warm", "1.0.1", healthy),
        ("warm", "1.0.2", healthy),
    ]
    rids = []
    for name, version, run in order:
        with svc.client("submit") as c:
            r = c.post(
                "/api/releases",
                json={"name": name, "version": version, "run": str(run), "contract": "smollm2-vllm"},
            )
            assert r.status_code == 201, r.text
        rids.append(r.json()["id"])
    leases = []
    outcomes = []
    for rid in rids:
        events = follow_events(svc, rid)
        leases += [d for k, d in events if k == "server.lease"]
        with svc.client("read") as c:
            outcomes.append(c.get(f"/api/releases/{rid}").json())
    statuses = [o["status"] for o in outcomes]
    assert statuses == ["published", "failed", "published", "published"], [
        (o["status"], o["error"]) for o in outcomes
    ]
    # The NaN adapter stopped before any server saw it.
    assert outcomes[1]["verdict"]["verdict"]["stopped_at"] == "check"
    # One server process gated all three healthy releases: one lease per release, one URL and pid.
    assert len(leases) == 3 and len({(d["url"], d["pid"]) for d in leases}) == 1, leases
    boots = list((svc.settings.data_dir / "pools").rglob("vllm-*.log"))
    assert len(boots) == 1, boots
    # Candidates gated at once on that server: some lease began while another candidate held it.
    pool_events = [
        json.loads(line)
        for path in (svc.settings.data_dir / "pools").rglob("pool-events.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert max(e["active"] for e in pool_events if e["event"] == "lease") >= 2, pool_events
    assert [e["event"] for e in pool_events].count("boot") == 1
    for version, digest_of in (("1.0.0", 0), ("1.0.1", 2), ("1.0.2", 3)):
        digest, _ = docker_registry.manifest("adapters/warm", version)
        assert outcomes[digest_of]["digest"] == digest
