"""A contract that requires a person's approval: the release waits, only an approver releases it.

The release stops at ``awaiting_approval`` after every gate passed (nothing
signed, nothing published); a submitter cannot approve it, an approver can, and
only then is the staged, gated bundle signed and published (the gates do not run
again), with the approval in the signed verdict and the audit trail.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from gate.resources import contracts_dir, examples_dir
from tests.fixtures.service import ServiceFactory, wait_for
from tests.service.test_release_e2e import follow_events, release_server

pytestmark = pytest.mark.slow


def _approval_contract(root: Path) -> Path:
    """The embedded default contract with ``approval.required: true`` (its files copied beside it)."""
    root.mkdir(parents=True)
    src = (contracts_dir() / "smollm2-vllm.yaml").read_text()
    text = src.replace("tasks_dir: ../examples/smollm2/eval", "tasks_dir: eval")
    text = text.replace("approval:\n  required: false", "approval:\n  required: true")
    assert "required: true" in text and "tasks_dir: eval\n" in text
    (root / "smollm2-approval.yaml").write_text(text)
    shutil.copyfile(contracts_dir() / "smollm2-chat.jinja", root / "smollm2-chat.jinja")
    shutil.copytree(examples_dir() / "smollm2" / "eval", root / "eval")
    return root


def test_a_release_needing_approval_is_published_only_after_an_approver_approves(
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
        contracts_dirs=(_approval_contract(tmp_path / "contracts"),),
    ).start()
    with svc.client("submit") as c:
        r = c.post(
            "/api/releases",
            json={
                "name": "approval",
                "version": "1.0.0",
                "run": str(trained_adapter_run),
                "contract": "smollm2-approval",
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["approval_required"] is True
    rid = r.json()["id"]
    events = follow_events(svc, rid)
    with svc.client("read") as c:
        waiting = c.get(f"/api/releases/{rid}").json()
    assert waiting["status"] == "awaiting_approval", (waiting["error"], svc.log.read_text()[-3000:])
    assert waiting["verdict"]["verdict"]["stopped_at"] == "approval"
    assert {g["gate"]: g["status"] for g in waiting["gates"]} == {
        "check": "passed",
        "smoke": "passed",
        "eval": "passed",
    }
    assert docker_registry.tags("adapters/approval") == []
    assert [k for k, _ in events][-2:] == ["awaiting_approval", "end"]

    with svc.client("submit") as c:
        assert c.post(f"/api/releases/{rid}/approve").status_code == 403
    with svc.client("approve") as c:
        approved = c.post(f"/api/releases/{rid}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["approved_by"].startswith("token:approve")
        assert c.post(f"/api/releases/{rid}/approve").status_code == 409

    with svc.client("read") as c:
        done = wait_for(
            lambda: (x := c.get(f"/api/releases/{rid}").json())["status"] in ("published", "failed", "error")
            and x,
            timeout=1500,
            interval=2,
            what="the approved release to be published",
        )
        audit = c.get("/api/audit", params={"release_id": rid}).json()
    assert done["status"] == "published", (done["error"], svc.log.read_text()[-3000:])
    digest, _ = docker_registry.manifest("adapters/approval", "1.0.0")
    assert done["digest"] == digest
    assert [a["action"] for a in audit] == ["submitted", "approved", "published"]
    assert audit[1]["actor"] == done["approved_by"]
    # The publish job signed the gated bundle: no gate ran after the approval.
    stream = follow_events(svc, rid)
    after = stream[[kind for kind, _ in stream].index("approved") :]
    assert [data["gate"] for kind, data in after if kind == "gate.start"] == ["sign", "publish"]
    approval = done["verdict"]["verdict"]["approval"]
    assert approval["by"] == done["approved_by"] and approval["via"] == "token"
    assert approval["staged_digest"] == waiting["verdict"]["verdict"]["staged_digest"]
