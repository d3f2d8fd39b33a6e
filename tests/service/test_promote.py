"""Promotion against a real registry: verify the published artifact, then move the channel tag, audited.

The artifact is a signed release bundle (real files, ``tests/fixtures/bundles.py``)
published by gate's own publisher to the test's docker-registry; the release row
names it as the worker would after publishing. The real ``gate serve`` then
promotes it, verifying with the key it signs with.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from gate.contract import Contract
from gate.oci import parse_ref, publish
from gate.resources import default_contract
from gate.service.db import sync_engine, sync_session
from gate.service.models import Release
from gate.service.settings import PublishSettings, Settings
from gate.signing import generate_key
from tests.fixtures.bundles import signed_release
from tests.fixtures.registry import DockerRegistry
from tests.fixtures.service import ServiceFactory, write_run_dir
from tests.fixtures.service_seed import SeedRelease, seed_releases
from tests.fixtures.serving import write_lora


def _published_release(
    svc_settings: Settings, registry: DockerRegistry, root: Path, key: Path, *, version: str, tamper: bool
) -> tuple[int, str]:
    bundle = signed_release(
        root / f"bundle-{version}", write_lora(root / f"adapter-{version}", seed=int(tamper)), None, key
    )
    ref = registry.ref("adapters/capitals", version)
    digest = publish(bundle, parse_ref(ref)).digest
    if tamper:
        # The registry's copy of the weights changed after publishing (same digest name, other bytes;
        # its own weights, seeded apart, so the other release's blob stays intact).
        manifest = registry.manifest("adapters/capitals", version)
        assert manifest is not None
        blob = registry.blob_file(max(manifest[1]["layers"], key=lambda layer: layer["size"])["digest"])
        data = bytearray(blob.read_bytes())
        data[-3] ^= 0x55
        blob.write_bytes(bytes(data))
    (rid,) = seed_releases(
        svc_settings, [SeedRelease("capitals", version)], run_dir=write_run_dir(root / version)
    )
    engine = sync_engine(svc_settings)
    try:
        with sync_session(engine) as s:
            s.execute(
                update(Release)
                .where(Release.id == rid)
                .values(
                    target=ref, digest=digest, contract_sha256=Contract.from_yaml(default_contract()).sha256
                )
            )
    finally:
        engine.dispose()
    return rid, digest


def test_promoting_verifies_then_moves_the_channel_tag_and_is_audited(
    service_factory: ServiceFactory,
    docker_registry: DockerRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in docker_registry.env().items():
        monkeypatch.setenv(k, v)
    key = tmp_path / "release.key"
    generate_key(key, tmp_path / "release.pub")
    svc = service_factory(
        database_url=f"sqlite:///{tmp_path / 'gate.db'}",
        publish=PublishSettings(
            target_prefix=f"oci://{docker_registry.host}/adapters", sign_method="key", sign_key=key
        ),
        env=docker_registry.env(),
    )
    good, digest = _published_release(
        svc.settings, docker_registry, tmp_path, key, version="1.0.0", tamper=False
    )
    bad, _ = _published_release(svc.settings, docker_registry, tmp_path, key, version="1.0.1", tamper=True)
    svc.start()
    with svc.client("read") as reader:
        assert reader.post(f"/api/releases/{good}/promote", json={"channel": "prod"}).status_code == 403
    with svc.client("approve") as c:
        unknown = c.post(f"/api/releases/{good}/promote", json={"channel": "latest"})
        assert unknown.status_code == 400 and "unknown channel 'latest'" in unknown.json()["detail"]
        moved = c.post(f"/api/releases/{good}/promote", json={"channel": "staging"})
        assert moved.status_code == 200, moved.text
        assert moved.json()["ref"].endswith("/adapters/capitals:staging")
        # Bytes that no longer match their signed digests are refused, and no tag moves.
        refused = c.post(f"/api/releases/{bad}/promote", json={"channel": "prod"})
        assert refused.status_code == 422, refused.text
        audit = c.get("/api/audit", params={"release_id": good}).json()
        bad_audit = c.get("/api/audit", params={"release_id": bad}).json()
    # The channel tag names exactly the published (and just verified) manifest.
    tagged = docker_registry.manifest("adapters/capitals", "staging")
    assert tagged is not None and tagged[0] == digest
    assert docker_registry.manifest("adapters/capitals", "prod") is None
    promoted = [a for a in audit if a["action"] == "promoted"]
    assert len(promoted) == 1 and promoted[0]["digest"] == digest
    assert promoted[0]["detail"]["channel"] == "staging" and promoted[0]["detail"]["verified"] is True
    assert not [a for a in bad_audit if a["action"] == "promoted"]
