"""The real server (uvicorn subprocess, real socket) on SQLite and on a real PostgreSQL: the API end to end.

These servers run no workers, so submitted releases stay queued: what is tested
here is the API, the database and the audit log; the pipeline runs in
test_release_e2e.py and test_restart.py.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from gate.service.db import sync_engine
from gate.service.settings import ArchiveLimits
from tests.fixtures.service import ServiceFactory, ServiceProcess, write_run_dir


@dataclass(frozen=True)
class Api:
    svc: ServiceProcess
    run: Path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(
    request: pytest.FixtureRequest, module_services: ServiceFactory, tmp_path_factory: pytest.TempPathFactory
) -> Api:
    """One real server per database for this module's tests (each test uses its own versions)."""
    root = tmp_path_factory.mktemp("api")
    runs = root / "runs"
    run = write_run_dir(runs)
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'gate.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    return Api(module_services(database_url=url, allowed_roots=(runs,)).start(), run)


def _submit(c: httpx.Client, run: Path, version: str, name: str = "capitals") -> httpx.Response:
    return c.post(
        "/api/releases", json={"name": name, "version": version, "run": str(run), "contract": "smollm2-vllm"}
    )


def test_submit_then_read_back_everything_over_http(api: Api) -> None:
    svc, run = api.svc, api.run
    with svc.client("submit") as c:
        r = _submit(c, run, "1.0.0", name="readback")
        assert r.status_code == 201, r.text
        release = r.json()
        assert release["status"] == "queued" and release["submitted_by"].startswith("token:submit")
        assert release["contract"] == "smollm2-vllm" and release["source"] == "reference"
    with svc.client("read") as c:
        assert [x["id"] for x in c.get("/api/releases", params={"name": "readback"}).json()] == [
            release["id"]
        ]
        assert release["id"] in [x["id"] for x in c.get("/api/releases").json()]
        got = c.get(f"/api/releases/{release['id']}").json()
        assert got["version"] == "1.0.0" and got["status"] == "queued"
        assert c.get("/api/releases/by-version/readback/1.0.0").json()["id"] == release["id"]
        assert c.get("/api/releases/999").status_code == 404
        assert c.get(f"/api/releases/{release['id']}/run").json()["metrics"]["steps"][0]["loss"] == 2.9
        runs = {r["run_dir"]: r["releases"] for r in c.get("/api/runs").json()}
        assert {"id": release["id"], "name": "readback", "version": "1.0.0"} in runs[str(run.resolve())]
        assert [x["id"] for x in c.get("/api/contracts").json()] == ["smollm2-vllm"]
        audit = c.get("/api/audit", params={"release_id": release["id"]}).json()
        assert [(a["action"], a["actor"]) for a in audit] == [("submitted", release["submitted_by"])]
        # The SSE stream replays stored events; follow=false ends it once they are sent.
        with c.stream("GET", f"/api/releases/{release['id']}/events", params={"follow": "false"}) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            body = "".join(s.iter_text())
        assert "event: submitted" in body and "event: end" in body
        schema = c.get("/schema/openapi.json").json()
        assert "/api/releases" in schema["paths"] and "/api/releases/{release_id}/approve" in schema["paths"]
        metrics = c.get("/metrics").text
        assert "gate_releases_submitted_total " in metrics and 'gate_releases{status="queued"}' in metrics
        page = c.get("/")
        assert page.status_code == 200 and "readback" in page.text
    # Health is the only endpoint without credentials.
    assert httpx.get(f"{svc.url}/health").json()["database"] == "ok"
    assert httpx.get(f"{svc.url}/metrics").status_code == 401
    assert httpx.get(f"{svc.url}/schema/openapi.json").status_code == 401


def test_the_same_version_twice_is_a_conflict(api: Api) -> None:
    svc, run = api.svc, api.run
    with svc.client("submit") as c:
        assert _submit(c, run, "2.0.0").status_code == 201
        again = _submit(c, run, "2.0.0")
        assert again.status_code == 409 and "capitals 2.0.0 already exists" in again.json()["detail"]
        assert _submit(c, run, "2.0.1").status_code == 201


def test_concurrent_duplicate_submissions_one_wins_the_rest_conflict(api: Api) -> None:
    svc, run = api.svc, api.run
    token = svc.token("submit")
    barrier = threading.Barrier(12)
    codes: list[int] = []
    lock = threading.Lock()

    def go() -> None:
        with httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            barrier.wait()
            code = _submit(c, run, "3.0.0").status_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=go) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201] + [409] * 11
    engine = sync_engine(svc.settings)
    with engine.connect() as conn:
        rid = conn.execute(sa.text("SELECT id FROM releases WHERE version = '3.0.0'")).scalars().all()
        assert len(rid) == 1
        assert conn.execute(sa.text(f"SELECT count(*) FROM jobs WHERE release_id = {rid[0]}")).scalar() == 1
        assert (
            conn.execute(sa.text(f"SELECT count(*) FROM audit_log WHERE release_id = {rid[0]}")).scalar() == 1
        )
    engine.dispose()


def test_the_audit_log_refuses_changes_in_the_database_itself(api: Api) -> None:
    svc, run = api.svc, api.run
    with svc.client("submit") as c:
        assert _submit(c, run, "4.0.0").status_code == 201
    engine = sync_engine(svc.settings)
    for stmt in ("UPDATE audit_log SET actor = 'someone-else'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.text(stmt))
    with engine.connect() as conn:
        actor = conn.execute(sa.text("SELECT actor FROM audit_log WHERE version = '4.0.0'")).scalar()
        assert actor is not None and actor.startswith("token:submit")
    engine.dispose()


def _tgz(members: dict[str, bytes], *, symlink: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink[0])
            info.type, info.linkname = tarfile.SYMTYPE, symlink[1]
            tf.addfile(info)
    return buf.getvalue()


def test_uploads_are_unpacked_safely_and_bad_ones_refused_with_clear_errors(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    limits = ArchiveLimits(max_upload_bytes=3 << 20, max_total_bytes=8 << 20, max_files=100, max_ratio=50)
    svc = service_factory(archive=limits).start()
    run = write_run_dir(tmp_path / "src")
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tf:
        tf.add(run, arcname=".")
    params = {"name": "capitals", "contract": "smollm2-vllm"}
    with svc.client("submit") as c:

        def up(version: str, body: bytes) -> httpx.Response:
            return c.post("/api/releases/upload", params={**params, "version": version}, content=body)

        r = up("1.0.0", good.getvalue())
        assert r.status_code == 201, r.text
        assert r.json()["source"] == "upload"
        traversal = up("1.0.1", _tgz({"run.json": b"{}", "../../escape.txt": b"x"}))
        assert traversal.status_code == 400
        assert "escapes the archive with '..' (path traversal refused)" in traversal.json()["detail"]
        link = up("1.0.2", _tgz({"run.json": b"{}"}, symlink=("adapter", "/etc")))
        assert link.status_code == 400 and "links are refused" in link.json()["detail"]
        bomb = up("1.0.3", _tgz({"run.json": b"{}", "zeros": b"\0" * (7 << 20)}))
        assert bomb.status_code == 400 and "decompression bomb" in bomb.json()["detail"]
        oversize = up("1.0.4", b"\x1f\x8b" + bytes(4 << 20))
        assert oversize.status_code == 413 and "over the limit" in oversize.json()["detail"]
        norun = up("1.0.5", _tgz({"README": b"hi"}))
        assert norun.status_code == 400 and "no training run" in norun.json()["detail"]
        empty = up("1.0.6", b"")
        assert empty.status_code == 400
        assert up("1.0.0", good.getvalue()).status_code == 409
        assert (
            c.post(
                "/api/releases",
                json={"name": "capitals", "version": "9", "run": str(run), "contract": "smollm2-vllm"},
            ).status_code
            == 400
        )
        bad_name = up("../../x", good.getvalue())
        assert bad_name.status_code == 400 and "not a valid OCI tag" in bad_name.json()["detail"]
    # Nothing half-written: only the accepted upload's directory remains, no partial files.
    uploads = svc.settings.data_dir / "uploads"
    assert len([p for p in uploads.iterdir()]) == 1
    assert not (tmp_path / "escape.txt").exists()
    with svc.client("read") as c:
        assert [x["version"] for x in c.get("/api/releases").json()] == ["1.0.0"]
    assert json.loads((next(uploads.iterdir()) / "run.json").read_text())["run_id"] == "run"
