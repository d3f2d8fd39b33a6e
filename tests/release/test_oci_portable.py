"""Portable artifacts: standard OCI tools carry a gate release and its signature.

Debian's ``skopeo`` copies a published layout to another layout, and through the
loopback docker-registry back to a layout; ``gate verify bundle`` accepts every
copy. The signature travels under its ``sha256-<hex>`` referrers tag, which skopeo
copies as an image index (``--all``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gate.contract import Contract
from gate.errors import GateFailure
from gate.oci import parse_ref, publish
from gate.resources import default_contract
from gate.signing import TrustPolicy
from gate.verify import verify_bundle
from tests.fixtures.registry import DockerRegistry
from tests.release.conftest import BundleFactory, KeyPair

CONTRACT_SHA = Contract.from_yaml(default_contract()).sha256


def _skopeo() -> str:
    found = shutil.which("skopeo")
    if found is None:
        raise RuntimeError("Debian's skopeo is missing: run `make system-deps` (or apt-get install skopeo)")
    return found


def _copy(src: str, dst: str, *extra: str) -> None:
    done = subprocess.run(
        [_skopeo(), "copy", "--all", "--quiet", *extra, src, dst],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _verify(ref: str, keys: dict[str, KeyPair], out: Path) -> str:
    policy = TrustPolicy(method="key", public_key=keys["release"].public)
    result = verify_bundle(ref, policy, expected_contract_sha256=CONTRACT_SHA, out=out)
    assert (out / "adapter_model.safetensors").is_file()
    return str(result.digest)


def test_skopeo_copy_all_layout_to_layout_keeps_the_release_verifiable(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    published = publish(make_bundle(), parse_ref(f"oci-layout://{src}:v1"))
    referrers_tag = published.digest.replace(":", "-")
    _copy(f"oci:{src}:v1", f"oci:{dst}:v1")
    _copy(f"oci:{src}:{referrers_tag}", f"oci:{dst}:{referrers_tag}")
    assert _verify(f"oci-layout://{dst}:v1", release_keys, tmp_path / "out") == published.digest


def test_skopeo_copy_through_docker_registry_keeps_the_release_verifiable(
    make_bundle: BundleFactory,
    docker_registry: DockerRegistry,
    release_keys: dict[str, KeyPair],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src, back = tmp_path / "src", tmp_path / "back"
    published = publish(make_bundle(seed=3), parse_ref(f"oci-layout://{src}:v1"))
    referrers_tag = published.digest.replace(":", "-")
    creds = [
        "--dest-creds",
        f"{docker_registry.username}:{docker_registry.password}",
        "--dest-tls-verify=false",
    ]
    remote = f"docker://{docker_registry.host}/portable/adapter"
    for tag in ("v1", referrers_tag):
        _copy(f"oci:{src}:{tag}", f"{remote}:{tag}", *creds)
    src_creds = [
        "--src-creds",
        f"{docker_registry.username}:{docker_registry.password}",
        "--src-tls-verify=false",
    ]
    for tag in ("v1", referrers_tag):
        _copy(f"{remote}:{tag}", f"oci:{back}:{tag}", *src_creds)
    # The registry copy verifies as it stands, and so does the layout copied back from it.
    for k, v in docker_registry.env().items():
        monkeypatch.setenv(k, v)
    registry_copy = f"oci://{docker_registry.host}/portable/adapter:v1"
    assert _verify(registry_copy, release_keys, tmp_path / "o1") == published.digest
    assert _verify(f"oci-layout://{back}:v1", release_keys, tmp_path / "o2") == published.digest


def test_copy_without_the_referrers_tag_says_how_signatures_travel(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    published = publish(make_bundle(seed=4), parse_ref(f"oci-layout://{src}:v1"))
    _copy(f"oci:{src}:v1", f"oci:{dst}:v1")
    tag = published.digest.replace(":", "-")
    with pytest.raises(GateFailure, match="has no signature referrer") as caught:
        _verify(f"oci-layout://{dst}:v1", release_keys, tmp_path / "out")
    assert caught.value.hint is not None
    assert f"under the tag {tag}" in caught.value.hint
    assert f"skopeo copy --all SRC:{tag} DST:{tag}" in caught.value.hint
    assert not (tmp_path / "out").exists()
