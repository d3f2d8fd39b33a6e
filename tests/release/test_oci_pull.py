"""Verify first, download after: what a pull does before, instead of, and after writing layers.

Real signed bundles published to an on-disk OCI layout (no server needed); the
registry path of the same code is covered in test_publish_verify.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gate import bundle as layout
from gate.contract import Contract
from gate.errors import GateFailure
from gate.oci import parse_ref, publish
from gate.resources import default_contract
from gate.signing import SigningConfig, TrustPolicy, sign_bundle
from gate.verify import verify_bundle
from tests.fixtures.registry import HostileRegistry
from tests.release.conftest import BundleFactory, KeyPair

CONTRACT_SHA = Contract.from_yaml(default_contract()).sha256


def _policy(keys: dict[str, KeyPair]) -> TrustPolicy:
    return TrustPolicy(method="key", public_key=keys["release"].public)


def _blob(layout_dir: Path, bundle: Path, rel: str) -> Path:
    from gate.digests import file_sha256

    return layout_dir / "blobs" / "sha256" / file_sha256(bundle / rel)


def test_verdict_naming_an_adapter_digest_the_files_do_not_have_is_refused(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    bundle = make_bundle(sign=False)
    verdict = json.loads((bundle / layout.VERDICT).read_text())
    verdict["adapter_digest"] = "sha256:" + "ab" * 32
    (bundle / layout.VERDICT).write_text(json.dumps(verdict))
    # Signed by the trusted key: the signature is sound, the evidence it carries is not.
    sign_bundle(bundle, SigningConfig(method="key", private_key=release_keys["release"].private))
    ref = f"oci-layout://{tmp_path}/store:v1"
    publish(bundle, parse_ref(ref))
    with pytest.raises(GateFailure, match=r"verdict names adapter digest sha256:(ab){32}, but the adapter"):
        verify_bundle(ref, _policy(release_keys), expected_contract_sha256=CONTRACT_SHA, out=tmp_path / "o")
    with pytest.raises(GateFailure, match=r"verdict names adapter digest sha256:(ab){32}"):
        verify_bundle(str(bundle), _policy(release_keys), expected_contract_sha256=CONTRACT_SHA)
    assert not (tmp_path / "o").exists()


def test_no_layer_is_fetched_before_the_signature_verifies(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    intruder = SigningConfig(method="key", private_key=release_keys["intruder"].private)
    bundle = make_bundle(sign=intruder)
    store = tmp_path / "store"
    publish(bundle, parse_ref(f"oci-layout://{store}:v1"))
    # Without the weights blob, any attempt to download layers would fail on the missing
    # blob; the refusal must come from the signature instead, before any layer is read.
    _blob(store, bundle, "adapter_model.safetensors").unlink()
    out = tmp_path / "o"
    with pytest.raises(GateFailure, match="no signature verifies for this artifact: signature sha256:"):
        verify_bundle(
            f"oci-layout://{store}:v1", _policy(release_keys), expected_contract_sha256=CONTRACT_SHA, out=out
        )
    assert sorted(os.listdir(tmp_path)) == ["bundle1", "store"]


def test_manifest_with_a_layer_the_signature_does_not_cover_downloads_nothing(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    bundle = make_bundle()
    (bundle / "extra.json").write_text("{}")  # published, never signed
    store = tmp_path / "store"
    publish(bundle, parse_ref(f"oci-layout://{store}:v1"))
    _blob(store, bundle, "adapter_model.safetensors").unlink()
    with pytest.raises(GateFailure, match=r"file 'extra\.json' is published but not signed"):
        verify_bundle(
            f"oci-layout://{store}:v1",
            _policy(release_keys),
            expected_contract_sha256=CONTRACT_SHA,
            out=tmp_path / "o",
        )
    assert sorted(os.listdir(tmp_path)) == ["bundle1", "store"]


def test_killed_pull_staging_is_swept_and_a_live_one_is_left_alone(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    bundle = make_bundle()
    ref = f"oci-layout://{tmp_path}/store:v1"
    publish(bundle, parse_ref(ref))
    dest = tmp_path / "dest"
    dest.mkdir()
    killed = dest / ".gate-pull-killed"
    (killed / "bundle").mkdir(parents=True)
    (killed / ".lock").write_text("")
    (killed / "bundle" / "adapter_model.safetensors").write_bytes(b"half")
    live = dest / ".gate-pull-live"
    live.mkdir()
    with open(live / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another pull in progress holds its lock
        verify_bundle(ref, _policy(release_keys), expected_contract_sha256=CONTRACT_SHA, out=dest / "adapter")
        assert sorted(os.listdir(dest)) == [".gate-pull-live", "adapter"]
    assert (dest / "adapter" / "adapter_model.safetensors").is_file()


def test_pull_killed_mid_layer_leaves_staging_that_the_next_pull_sweeps(
    make_bundle: BundleFactory,
    release_keys: dict[str, KeyPair],
    hostile_registry_factory: Callable[[Path], HostileRegistry],
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    publish(make_bundle(), parse_ref(f"oci-layout://{store}:v1"))
    registry = hostile_registry_factory(store)
    dest = tmp_path / "dest"
    dest.mkdir()
    args = ["--out", str(dest / "adapter"), "--key", str(release_keys["release"].public)]
    args += ["--contract-digest", CONTRACT_SHA]
    env = {**os.environ, "GATE_REGISTRY_TIMEOUT": "60"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gate", "pull", registry.ref("stall-layer"), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Wait until the weights are half written inside the staging directory, then kill -9.
        deadline = time.monotonic() + 30
        partial: list[Path] = []
        while not partial and time.monotonic() < deadline:
            partial = [
                p for p in dest.glob(".gate-pull-*/bundle/adapter_model.safetensors") if p.stat().st_size
            ]
            time.sleep(0.05)
        assert partial, "the pull never started writing the weights"
    finally:
        proc.kill()
        proc.wait()
    assert not (dest / "adapter").exists()  # nothing unverified reached --out
    assert [p.name for p in dest.iterdir() if p.name.startswith(".gate-pull-")]
    verify_bundle(
        f"oci-layout://{store}:v1",
        _policy(release_keys),
        expected_contract_sha256=CONTRACT_SHA,
        out=dest / "adapter",
    )
    assert sorted(os.listdir(dest)) == ["adapter"]
