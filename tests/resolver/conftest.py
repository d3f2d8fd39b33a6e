"""Fixtures of the resolver tests: released, unsigned, tampered and foreign releases in real OCI stores."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gate.contract import Contract
from gate.oci import parse_ref, publish
from gate.resolver import ResolverConfig, Signer
from gate.resources import default_contract
from gate.signing import generate_key
from tests.fixtures.bundles import signed_release
from tests.fixtures.serving import write_lora


@dataclass(frozen=True)
class Releases:
    """Repositories (oci-layout://...) per case, the keys, and a config that trusts the release key."""

    root: Path
    repos: dict[str, str]
    digests: dict[str, str]
    release_key: Path
    stranger_key: Path

    def config(self, **changes: object) -> ResolverConfig:
        contract = Contract.from_yaml(default_contract())
        fields: dict[str, object] = {
            "gate_python": Path(sys.executable),
            "base_identity": contract.base_model.identity,
            "contract_sha256": contract.sha256,
            "signer": Signer(method="key", public_key=self.release_key),
            "adapters": dict(self.repos),
            "cache_dir": self.root / "cache",
        }
        fields.update(changes)
        return ResolverConfig.model_validate(fields)


def _layout(root: Path, name: str) -> str:
    return f"oci-layout://{root / 'layouts' / name}"


def _unsign(repo: str) -> None:
    # What a copy that dropped the signature leaves: the artifact is there, no signature manifest is.
    index_path = Path(repo.removeprefix("oci-layout://")) / "index.json"
    index = json.loads(index_path.read_text())
    index["manifests"] = [
        m
        for m in index["manifests"]
        if "sigstore" not in m.get("artifactType", "")
        and not m.get("annotations", {}).get("org.opencontainers.image.ref.name", "").startswith("sha256-")
    ]
    index_path.write_text(json.dumps(index))


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    """One layout per case, each holding a release tagged v1 (the same adapter bytes everywhere)."""
    root = tmp_path_factory.mktemp("resolver")
    keys = {}
    for name in ("release", "stranger"):
        generate_key(root / f"{name}.key", root / f"{name}.pub")
        keys[name] = root / f"{name}.key"
    adapter = write_lora(root / "adapter", layers=(0, 1), seed=3)
    bundles = {
        "good": signed_release(root / "b-good", adapter, None, keys["release"]),
        "stranger": signed_release(root / "b-stranger", adapter, None, keys["stranger"]),
        "failed": signed_release(root / "b-failed", adapter, None, keys["release"], failed_gate="eval"),
        "foreign": signed_release(
            root / "b-foreign", adapter, None, keys["release"], base_identity="sha256:" + "0" * 64
        ),
        "unsigned": signed_release(root / "b-unsigned", adapter, None, keys["release"]),
        "revoked": signed_release(
            root / "b-revoked", write_lora(root / "a2", layers=(0,), seed=4), None, keys["release"]
        ),
    }
    repos, digests = {}, {}
    for case, bundle in bundles.items():
        repos[case] = _layout(root, case)
        digests[case] = publish(bundle, parse_ref(repos[case] + ":v1")).digest
    _unsign(repos["unsigned"])
    return Releases(root, repos, digests, root / "release.pub", root / "stranger.pub")
