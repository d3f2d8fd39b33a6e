"""The server killed mid-release (SIGKILL to server and workers) and restarted, on a real PostgreSQL.

The kill lands in the middle of the gates (the pipeline's test-only pause hook
holds the worker right after the contract check passed). After the restart the
job is found interrupted and retried from the start (nothing was signed yet);
the release is published exactly once (the trained adapter passes every gate),
the audit trail shows the interruption, and the registry holds one version tag
pointing at the recorded digest and one signature: nothing lost, nothing
published twice or half.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.service import ServiceFactory, wait_for
from tests.service.test_release_e2e import follow_events, release_server

pytestmark = pytest.mark.slow


def test_a_release_interrupted_by_a_server_crash_is_retried_and_published_exactly_once(
    service_factory: ServiceFactory,
    postgres: Any,
    trained_adapter_run: Path,
    vllm_server: Any,
    docker_registry: Any,
    tmp_path: Path,
) -> None:
    svc = release_server(
        service_factory,
        database_url=postgres.new_database(),
        runs_root=trained_adapter_run.resolve().parent,
        registry=docker_registry,
        vllm_url=vllm_server.url,
        keys=tmp_path,
        lease_s=20.0,
    )
    svc.start(extra_env={"GATE_TESTONLY_PAUSE_AFTER": "gate.finish:check"})
    with svc.client("submit") as c:
        r = c.post(
            "/api/releases",
            json={
                "name": "crash",
                "version": "1.0.0",
                "run": str(trained_adapter_run),
                "contract": "smollm2-vllm",
            },
        )
        assert r.status_code == 201, r.text
    rid = r.json()["id"]
    reader = svc.client("read")

    def checked() -> bool:
        gates = {g["gate"]: g["status"] for g in reader.get(f"/api/releases/{rid}").json()["gates"]}
        return gates.get("check") == "passed"

    wait_for(checked, timeout=1500, interval=1, what="the contract check to pass")
    before = reader.get(f"/api/releases/{rid}").json()
    reader.close()
    assert before["status"] == "running" and before["digest"] is None
    assert docker_registry.tags("adapters/crash") == []

    svc.kill()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{svc.url}/health", timeout=2)

    svc.start()
    events = follow_events(svc, rid)
    with svc.client("read") as c:
        after = c.get(f"/api/releases/{rid}").json()
        audit = c.get("/api/audit", params={"release_id": rid}).json()
    assert after["status"] == "published", (after["error"], svc.log.read_text()[-3000:])
    kinds = [k for k, _ in events]
    interrupted = next(d for k, d in events if k == "interrupted")
    assert interrupted["retry"] is True and interrupted["attempt"] == 1
    # Nothing was signed before the crash, so the retry ran the gates again from the contract check.
    after_crash = [d.get("gate") for k, d in events[kinds.index("interrupted") :] if k == "gate.start"]
    assert after_crash[0] == "check"
    assert [a["action"] for a in audit] == ["submitted", "interrupted", "published"]
    assert [k for k in kinds if k == "finished"] == ["finished"]
    digest, _ = docker_registry.manifest("adapters/crash", "1.0.0")
    assert after["digest"] == digest == audit[-1]["digest"]
    # One version tag, and the signature's referrers tag (docker-registry has no referrers API) that
    # names the published digest and lists exactly one signature: nothing was published twice.
    referrers_tag = "sha256-" + digest.split(":", 1)[1]
    assert sorted(docker_registry.tags("adapters/crash")) == sorted(["1.0.0", referrers_tag])
    found = docker_registry.manifest("adapters/crash", referrers_tag)
    assert found is not None and len(found[1]["manifests"]) == 1, found
