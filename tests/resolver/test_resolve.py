"""Resolution of one request: only an allowed, signed, passed release for this base is handed on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gate.resolver import resolve
from tests.resolver.conftest import Releases


@pytest.fixture
def fresh(releases: Releases, tmp_path: Path) -> Releases:
    """The session's releases with a cache of this test's own."""
    return Releases(tmp_path, releases.repos, releases.digests, releases.release_key, releases.stranger_key)


def test_released_adapter_resolves_to_a_verified_bundle_named_by_its_digest(fresh: Releases) -> None:
    got = resolve(fresh.config(), "good:v1")
    assert got.ok and got.check == "ok" and not got.cached
    assert got.digest == fresh.digests["good"]
    path = Path(got.path or "")
    assert path == fresh.root / "cache" / fresh.digests["good"].removeprefix("sha256:") / "bundle"
    assert (path / "adapter_model.safetensors").is_file() and (path / "adapter_config.json").is_file()
    again = resolve(fresh.config(), "good@" + fresh.digests["good"])
    assert again.ok and again.cached and again.path == got.path


def test_a_cache_entry_that_no_longer_verifies_is_never_handed_on(fresh: Releases) -> None:
    first = resolve(fresh.config(), "good:v1")
    weights = Path(first.path or "") / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    again = resolve(fresh.config(), "good:v1")
    # The tampered copy was dropped and the release pulled (and verified) again.
    assert again.ok and not again.cached
    assert Path(again.path or "").joinpath("adapter_model.safetensors").read_bytes() != bytes(data)


@pytest.mark.parametrize(
    ("request_name", "check", "reason"),
    [
        ("unsigned:v1", "signature", "no signature referrer"),
        ("stranger:v1", "signature", "no signature verifies"),
        ("failed:v1", "verdict", "verdict does not allow serving it"),
        ("foreign:v1", "other-base", "gated for base sha256:0000"),
        ("nobody:v1", "not-allowed", "not an adapter this server may serve"),
        ("good", "request", "NAME:VERSION"),
        ("good:v9", "registry", "does not exist"),
        ("Good:v1", "request", "not a valid adapter name"),
    ],
)
def test_each_refusal_names_its_check_and_nothing_is_cached(
    fresh: Releases, request_name: str, check: str, reason: str
) -> None:
    got = resolve(fresh.config(adapters={**fresh.repos, "good": fresh.repos["good"]}), request_name)
    assert not got.ok and got.path is None
    assert got.check == check
    assert reason in got.reason, got.reason
    cache = fresh.root / "cache"
    assert not cache.exists() or not [p for p in cache.iterdir() if not p.name.startswith(".")]


def test_revoked_release_is_refused_before_it_is_downloaded(fresh: Releases) -> None:
    digest = fresh.digests["revoked"]
    got = resolve(fresh.config(denied=(digest,)), "revoked:v1")
    assert (got.ok, got.check, got.digest) == (False, "revoked", digest)
    assert not (fresh.root / "cache" / digest.removeprefix("sha256:")).exists()
    assert resolve(fresh.config(), "revoked:v1").ok  # the same release, not revoked, resolves


def test_cache_stays_within_its_bound_evicting_the_least_recently_used(fresh: Releases) -> None:
    config = fresh.config(cache_max_bytes=1)  # any second entry evicts the first
    assert resolve(config, "good:v1").ok
    assert resolve(config, "revoked:v1").ok
    entries = [p.name for p in (fresh.root / "cache").iterdir() if not p.name.startswith(".")]
    assert entries == [fresh.digests["revoked"].removeprefix("sha256:")]
    shutil.rmtree(fresh.root / "cache")


def test_module_entry_point_prints_one_json_line_and_exits_by_outcome(
    fresh: Releases, tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    config_path = fresh.config().write(tmp_path / "resolver.json")
    ok = subprocess.run(
        [sys.executable, "-m", "gate.resolver", "--config", str(config_path), "good:v1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["digest"] == fresh.digests["good"]
    refused = subprocess.run(
        [sys.executable, "-m", "gate.resolver", "--config", str(config_path), "stranger:v1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["check"] == "signature"
