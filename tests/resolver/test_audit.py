"""Each resolution is reported to the gate service's audit log (a real ``gate serve`` on SQLite)."""

from __future__ import annotations

from pathlib import Path

from gate.resolver import resolve
from gate.resolver._config import Audit
from tests.fixtures.service import ServiceFactory
from tests.resolver.conftest import Releases


def test_served_and_refused_resolutions_land_in_the_audit_log(
    releases: Releases, service_factory: ServiceFactory, tmp_path: Path
) -> None:
    svc = service_factory(database_url=f"sqlite:///{tmp_path / 'gate.db'}").start()
    token = tmp_path / "token"
    token.write_text(svc.token("submit"))
    fresh = Releases(tmp_path, releases.repos, releases.digests, releases.release_key, releases.stranger_key)
    config = fresh.config(audit=Audit(url=f"{svc.url}/api/resolutions", token_file=token))
    assert resolve(config, "good:v1").ok
    assert not resolve(config, "stranger:v1").ok
    with svc.client("read") as c:
        audit = [a for a in c.get("/api/audit").json() if a["action"] in ("resolve", "refuse")]
    assert [(a["action"], a["name"], a["version"]) for a in audit] == [
        ("resolve", "good", "v1"),
        ("refuse", "stranger", "v1"),
    ]
    assert audit[0]["digest"] == releases.digests["good"]
    assert (
        audit[1]["detail"]["check"] == "signature" and "no signature verifies" in audit[1]["detail"]["reason"]
    )
    assert audit[0]["actor"].startswith("token:submit")


def test_an_unreachable_audit_log_never_decides_what_is_served(releases: Releases, tmp_path: Path) -> None:
    fresh = Releases(tmp_path, releases.repos, releases.digests, releases.release_key, releases.stranger_key)
    config = fresh.config(audit=Audit(url="http://127.0.0.1:9/api/resolutions"))
    assert resolve(config, "good:v1").ok
