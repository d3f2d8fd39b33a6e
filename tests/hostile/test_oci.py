"""Hostile OCI input: `gate pull` on broken layouts and against a misbehaving loopback registry.

Every case runs the real command through the bounded harness (exit 1 or one
clean error line, no traceback, <= 5 s, <= 512 MiB, nothing written outside
out/) and asserts its own error text. The artifact underneath is a real signed
release (a safetensors LoRA adapter, a verdict, the shipped contract) published
to an OCI layout; the layout cases damage a copy of it, the registry cases serve
it through `tests/fixtures/registry.py`'s planted behaviours.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gate import bundle as layout
from gate.contract import Contract
from gate.digests import files_digest
from gate.oci import parse_ref, publish
from gate.resources import default_contract
from gate.signing import SIGNATURE_MEDIA_TYPE, SigningConfig, generate_key, sign_bundle
from tests.fixtures.registry import HostileRegistry
from tests.hostile._harness import run_gate
from tests.release.conftest import write_lora_adapter

CONTRACT_SHA = Contract.from_yaml(default_contract()).sha256
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
HEX_MISMATCH = (
    r"layer 'adapter_model\.safetensors' does not match its digest: "
    r"expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}"
)
REF = "org.opencontainers.image.ref.name"
TIMEOUT_ENV = {"GATE_REGISTRY_TIMEOUT": "1.5"}


@dataclass(frozen=True)
class Release:
    """A real signed release in an OCI layout, and the key that verifies it."""

    layout: Path
    digest: str
    public_key: Path
    weights_digest: str


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    root = tmp_path_factory.mktemp("hostile-oci")
    bundle = root / "bundle"
    write_lora_adapter(bundle, layers=2)
    contract = Contract.from_yaml(default_contract())
    (bundle / "gate" / "reports").mkdir(parents=True)
    shutil.copyfile(default_contract(), bundle / layout.CONTRACT)
    for name, path in contract.referenced_files().items():  # the contract digest covers these too
        (bundle / layout.CONTRACT_FILES / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, bundle / layout.CONTRACT_FILES / name)
    gates = tuple(layout.GateResult(name=n, status="passed", summary="ok") for n in layout.REQUIRED_GATES)
    verdict = layout.Verdict(
        passed=True,
        gates=gates,
        contract=layout.ContractRef(name=contract.name, sha256=contract.sha256),
        adapter_digest=files_digest(bundle, ["adapter_config.json", "adapter_model.safetensors"]),
        created_at="2026-11-28T12:00:00+00:00",
    )
    (bundle / layout.VERDICT).write_text(verdict.model_dump_json())
    generate_key(root / "release.key", root / "release.pub")
    sign_bundle(bundle, SigningConfig(method="key", private_key=root / "release.key"))
    published = publish(bundle, parse_ref(f"oci-layout://{root / 'layout'}:v1"))
    weights = "sha256:" + hashlib.sha256((bundle / "adapter_model.safetensors").read_bytes()).hexdigest()
    return Release(root / "layout", published.digest, root / "release.pub", weights)


@pytest.fixture(scope="session")
def hostile(release: Release, hostile_registry_factory: Callable[[Path], HostileRegistry]) -> HostileRegistry:
    return hostile_registry_factory(release.layout)


def _pull(ref: str, release: Release) -> list[str]:
    return [
        "pull",
        ref,
        "--out",
        "out/adapter",
        "--key",
        str(release.public_key),
        "--contract-digest",
        CONTRACT_SHA,
    ]


# --------------------------------------------------------------------------- damaged layouts


def _blob(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / digest.split(":", 1)[1]


def _index(root: Path) -> dict:
    return json.loads((root / "index.json").read_text())


def _retag(root: Path, manifest: bytes) -> None:
    """Store ``manifest`` as a blob and point tag v1 at it."""
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    _blob(root, digest).write_bytes(manifest)
    index = _index(root)
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "v1":
            m["digest"], m["size"] = digest, len(manifest)
    (root / "index.json").write_text(json.dumps(index))


def _edit_manifest(edit: Callable[[dict], object]) -> Callable[[Path, Release], None]:
    def damage(root: Path, rel: Release) -> None:
        manifest = json.loads(_blob(root, rel.digest).read_bytes())
        edit(manifest)
        _retag(root, json.dumps(manifest).encode())

    return damage


def _raw_manifest(raw: bytes) -> Callable[[Path, Release], None]:
    return lambda root, rel: _retag(root, raw)


def _layer(i: int, **fields: object) -> Callable[[dict], object]:
    return lambda m: m["layers"][i].update(fields)


def _title(i: int, title: str) -> Callable[[dict], object]:
    return lambda m: m["layers"][i]["annotations"].update({"org.cncf.model.filepath": title})


def _fifo_index(root: Path, rel: Release) -> None:
    (root / "index.json").unlink()
    os.mkfifo(root / "index.json")


def _symlink_index(root: Path, rel: Release) -> None:
    (root / "index.json").unlink()
    (root / "index.json").symlink_to("/etc/passwd")


def _symlink_blobs(root: Path, rel: Release) -> None:
    shutil.move(root / "blobs", root / "real-blobs")
    (root / "blobs").symlink_to("real-blobs")


def _sparse_index(root: Path, rel: Release) -> None:
    with open(root / "index.json", "r+b") as fh:
        fh.truncate(1 << 30)  # 1 GiB, sparse: costs no disk


def _duplicate_tag(root: Path, rel: Release) -> None:
    index = _index(root)
    tagged = next(m for m in index["manifests"] if m.get("annotations", {}).get(REF) == "v1")
    other = next(m for m in index["manifests"] if m["digest"] != rel.digest)
    index["manifests"].append({**other, "annotations": tagged["annotations"]})
    (root / "index.json").write_text(json.dumps(index))


def _deep_index(root: Path, rel: Release) -> None:
    (root / "index.json").write_text('{"manifests": ' + "[" * 100_000 + "]" * 100_000 + "}")


def _many_referrers(root: Path, rel: Release) -> None:
    entry = {
        "mediaType": MANIFEST,
        "digest": "sha256:" + "0" * 64,
        "size": 2,
        "artifactType": SIGNATURE_MEDIA_TYPE,
    }
    raw = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry] * 2000}).encode()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    _blob(root, digest).write_bytes(raw)
    index = _index(root)
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name", "").startswith("sha256-"):
            m["digest"], m["size"] = digest, len(raw)
    (root / "index.json").write_text(json.dumps(index))


def _no_referrers_tag(root: Path, rel: Release) -> None:
    index = _index(root)
    index["manifests"] = [m for m in index["manifests"] if m["digest"] == rel.digest]
    (root / "index.json").write_text(json.dumps(index))


def _weights_symlink(root: Path, rel: Release) -> None:
    _blob(root, rel.weights_digest).unlink()
    _blob(root, rel.weights_digest).symlink_to("/etc/passwd")


def _weights_fifo(root: Path, rel: Release) -> None:
    _blob(root, rel.weights_digest).unlink()
    os.mkfifo(_blob(root, rel.weights_digest))


def _weights_altered(root: Path, rel: Release) -> None:
    blob = _blob(root, rel.weights_digest)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0x01
    blob.write_bytes(bytes(data))


def _weights_missing(root: Path, rel: Release) -> None:
    _blob(root, rel.weights_digest).unlink()


def _garbage_signature(root: Path, rel: Release) -> None:
    garbage = b"\xff\xfe not a sigstore bundle"
    gd = "sha256:" + hashlib.sha256(garbage).hexdigest()
    _blob(root, gd).write_bytes(garbage)
    sig_manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": SIGNATURE_MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": gd, "size": len(garbage)},
            "layers": [{"mediaType": SIGNATURE_MEDIA_TYPE, "digest": gd, "size": len(garbage)}],
            "subject": {"mediaType": MANIFEST, "digest": rel.digest, "size": 1},
        }
    ).encode()
    sd = "sha256:" + hashlib.sha256(sig_manifest).hexdigest()
    _blob(root, sd).write_bytes(sig_manifest)
    refs = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {
                    "mediaType": MANIFEST,
                    "digest": sd,
                    "size": len(sig_manifest),
                    "artifactType": SIGNATURE_MEDIA_TYPE,
                }
            ],
        }
    ).encode()
    rd = "sha256:" + hashlib.sha256(refs).hexdigest()
    _blob(root, rd).write_bytes(refs)
    index = _index(root)
    index["manifests"] = [m for m in index["manifests"] if m["digest"] == rel.digest] + [
        {
            "mediaType": INDEX,
            "digest": rd,
            "size": len(refs),
            "annotations": {"org.opencontainers.image.ref.name": rel.digest.replace(":", "-")},
        }
    ]
    (root / "index.json").write_text(json.dumps(index))


LAYOUT_CASES: dict[str, tuple[Callable[[Path, Release], None], int, str]] = {
    "no-oci-layout-file": (
        lambda r, _: (r / "oci-layout").unlink(),
        2,
        r"is not an OCI image layout \(no oci-layout file\)",
    ),
    "index-is-a-fifo": (_fifo_index, 2, r"index\.json is not a regular file"),
    "index-is-a-symlink": (_symlink_index, 2, r"index\.json: .*symlinks are refused"),
    "blobs-is-a-symlink": (_symlink_blobs, 2, r"blobs is not a directory \(symlinks are refused\)"),
    "index-sparse-1-gib": (_sparse_index, 1, r"index\.json is 1073741824 bytes, over the 4194304 byte limit"),
    "index-deeply-nested": (_deep_index, 1, r"index\.json is nested deeper than 32 levels"),
    "tag-names-two-manifests": (_duplicate_tag, 1, r"index\.json names tag 'v1' for several manifests"),
    "manifest-not-json": (_raw_manifest(b"\x00\x01garbage"), 1, r"manifest is not valid JSON"),
    "manifest-a-json-list": (_raw_manifest(b"[1, 2, 3]"), 1, r"manifest is not a JSON object"),
    "manifest-duplicate-keys": (
        _raw_manifest(b'{"layers": [], "layers": [1]}'),
        1,
        r"manifest is not valid JSON: duplicate key 'layers'",
    ),
    "manifest-huge-integer": (
        _raw_manifest(b'{"schemaVersion": ' + b"9" * 5000 + b"}"),
        1,
        r"manifest is not valid JSON: integer of 5000 digits",
    ),
    "manifest-nan": (_raw_manifest(b'{"schemaVersion": NaN}'), 1, r"NaN is not a JSON number"),
    "manifest-is-an-index": (
        _raw_manifest(json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": []}).encode()),
        1,
        r"names an image index, not a gate bundle manifest",
    ),
    "wrong-artifact-type": (
        _edit_manifest(lambda m: m.update(artifactType="application/vnd.docker.container")),
        1,
        r"artifact type is 'application/vnd.docker.container', not a gate bundle",
    ),
    "layers-a-string": (
        _edit_manifest(lambda m: m.update(layers="all")),
        1,
        r"field 'layers' must be list, got str",
    ),
    "layers-empty": (_edit_manifest(lambda m: m.update(layers=[])), 1, r"manifest has no layers"),
    "layer-size-missing": (
        _edit_manifest(lambda m: m["layers"][0].pop("size")),
        1,
        r"layer 1: field 'size' must be int, got missing",
    ),
    "layer-size-a-string": (
        _edit_manifest(_layer(0, size="12")),
        1,
        r"layer 1: field 'size' must be int, got str",
    ),
    "layer-size-negative": (_edit_manifest(_layer(0, size=-1)), 1, r"layer 1 declares a size of -1 bytes"),
    "layer-size-absurd": (
        _edit_manifest(_layer(0, size=1 << 60)),
        1,
        rf"layer 1 declares a size of {1 << 60} bytes",
    ),
    "layer-digest-md5": (
        _edit_manifest(_layer(0, digest="md5:d41d8cd98f00b204e9800998ecf8427e")),
        1,
        r"layer 1 has a malformed digest 'md5:",
    ),
    "layer-digest-uppercase": (
        _edit_manifest(_layer(0, digest="sha256:" + "A" * 64)),
        1,
        r"layer 1 has a malformed digest 'sha256:AAAA",
    ),
    "layer-without-title": (
        _edit_manifest(lambda m: m["layers"][0].pop("annotations")),
        1,
        r"layer 1 \(sha256:[0-9a-f]{64}\) carries no org\.cncf\.model\.filepath",
    ),
    "layer-title-dotdot": (
        _edit_manifest(_title(0, "../../etc/cron.d/x")),
        1,
        r"refusing layer path that could leave the output directory",
    ),
    "layer-title-absolute": (
        _edit_manifest(_title(0, "/etc/passwd")),
        1,
        r"refusing layer path .*'/etc/passwd'",
    ),
    "layer-title-is-the-signature": (
        _edit_manifest(_title(0, layout.SIGNATURE)),
        1,
        r"a layer claims to be the signature file",
    ),
    "duplicate-layer-titles": (
        _edit_manifest(lambda m: m["layers"][1]["annotations"].update(m["layers"][0]["annotations"])),
        1,
        r"two layers are titled '[^']+'",
    ),
    "title-case-collision": (
        _edit_manifest(
            lambda m: m["layers"][1]["annotations"].update(
                {"org.cncf.model.filepath": m["layers"][0]["annotations"]["org.cncf.model.filepath"].upper()}
            )
        ),
        1,
        r"two layers are titled",
    ),
    "referrers-tag-lists-2000": (
        _many_referrers,
        1,
        r"referrers tag index lists 2000 manifests \(limit 1024\)",
    ),
    "signature-left-behind": (_no_referrers_tag, 1, r"has no signature referrer.*\n.*skopeo copy --all"),
    "signature-is-garbage": (
        _garbage_signature,
        1,
        r"signature sha256:[0-9a-f]{12}: signature is not valid JSON",
    ),
    "weights-blob-symlink": (
        _weights_symlink,
        1,
        r"cannot read blob sha256:[0-9a-f]{64}: .*symlinks are refused",
    ),
    "weights-blob-fifo": (_weights_fifo, 1, r"blob sha256:[0-9a-f]{64} of layout .* is not a regular file"),
    "weights-blob-altered": (
        _weights_altered,
        1,
        HEX_MISMATCH,
    ),
    "weights-blob-missing": (_weights_missing, 1, r"has no blob sha256:[0-9a-f]{64} \(partial artifact\)"),
}


@pytest.mark.parametrize("case", sorted(LAYOUT_CASES))
def test_hostile_layout_is_refused_cleanly(case: str, release: Release, tmp_path: Path) -> None:
    damage, exit_code, expected = LAYOUT_CASES[case]
    box = tmp_path / "box"
    root = box / "layout"
    shutil.copytree(release.layout, root, symlinks=True)
    damage(root, release)
    outcome = run_gate(_pull("oci-layout://layout:v1", release), sandbox=box, env=TIMEOUT_ENV)
    outcome.assert_clean(expect_exit=exit_code)
    assert re.search(expected, outcome.stderr), outcome.stderr[-1500:]
    assert not (box / "out" / "adapter").exists()
    assert os.listdir(box / "out") == []  # no staging directory left behind


# --------------------------------------------------------------------------- a misbehaving registry

# (probe mode, behaviour, reference: "v1" or "digest", exit, expected text)
REGISTRY_CASES: dict[str, tuple[str, str, str, int, str]] = {
    "probe-stalls": ("stall", "ok", "v1", 2, r"GET /v2/ timed out after 1.5 s"),
    "probe-body-endless": ("endless", "ok", "v1", 1, r"the /v2/ probe is over 65536 bytes"),
    "probe-answers-503": ("error", "ok", "v1", 2, r"the /v2/ probe answered HTTP 503"),
    "basic-auth-without-credentials": ("basic", "ok", "v1", 2, r"requires credentials"),
    "bearer-challenge-loop": (
        "bearer-loop",
        "ok",
        "v1",
        2,
        r"refused the credentials \(GET ok/adapter/manifests/v1\)",
    ),
    "token-body-endless": ("bearer-endless-token", "ok", "v1", 1, r"the token response is over 65536 bytes"),
    "manifest-stalls": (
        "ok",
        "stall-manifest",
        "v1",
        2,
        r"GET stall-manifest/adapter/manifests/v1 timed out after 1.5 s",
    ),
    "manifest-drips": ("ok", "drip-manifest", "v1", 2, r"manifest v1 did not arrive within 1.5 s"),
    "manifest-declares-1-gib": (
        "ok",
        "huge-manifest",
        "v1",
        1,
        r"manifest v1 declares 1073741824 bytes \(limit 4194304\)",
    ),
    "manifest-body-endless": ("ok", "endless-manifest", "v1", 1, r"manifest v1 is over 4194304 bytes"),
    "redirect-loop": ("ok", "redirect-loop", "v1", 2, r"redirected more than 5 times"),
    "registry-500": (
        "ok",
        "server-error",
        "v1",
        2,
        r"fetching manifest v1 answered HTTP 500: .*database on fire",
    ),
    "million-referrers": (
        "ok",
        "million-referrers",
        "v1",
        1,
        r"the referrers index of sha256:[0-9a-f]{64} is over 4194304 bytes",
    ),
    "layer-bytes-differ": (
        "ok",
        "altered-layer",
        "v1",
        1,
        HEX_MISMATCH,
    ),
    "layer-longer-than-declared": (
        "ok",
        "longer-layer",
        "v1",
        1,
        r"layer 'adapter_model\.safetensors' is larger than its descriptor says",
    ),
    "layer-fetch-502": ("ok", "blob-error", "v1", 2, r"fetching blob sha256:[0-9a-f]{64} answered HTTP 502"),
    "no-signature-anywhere": ("ok", "unsigned", "v1", 1, r"has no signature referrer"),
    "manifest-swapped-for-pinned-digest": (
        "ok",
        "other-manifest",
        "digest",
        1,
        r"manifest .* does not match its digest: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}",
    ),
}


@pytest.mark.parametrize("case", sorted(REGISTRY_CASES))
def test_misbehaving_registry_is_refused_cleanly(
    case: str, release: Release, hostile: HostileRegistry, tmp_path: Path
) -> None:
    probe, behaviour, reference, exit_code, expected = REGISTRY_CASES[case]
    ref = hostile.ref(behaviour, release.digest if reference == "digest" else "v1", probe=probe)
    box = tmp_path / "box"
    outcome = run_gate(_pull(ref, release), sandbox=box, env=TIMEOUT_ENV)
    outcome.assert_clean(expect_exit=exit_code)
    assert re.search(expected, outcome.stderr), outcome.stderr[-1500:]
    assert os.listdir(box / "out") == []


def test_registry_that_is_gone_is_one_clean_error(release: Release, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = run_gate(
        _pull(f"oci://127.0.0.1:{port}/gone/adapter:v1", release), sandbox=tmp_path / "box", env=TIMEOUT_ENV
    )
    outcome.assert_clean(expect_exit=2)
    assert f"cannot reach registry 127.0.0.1:{port}" in outcome.stderr


def test_the_faithful_registry_serves_a_pull_that_verifies(
    release: Release, hostile: HostileRegistry, tmp_path: Path
) -> None:
    # The control: the same server and artifact with no planted behaviour pulls cleanly.
    box = tmp_path / "box"
    outcome = run_gate(_pull(hostile.ref("ok"), release), sandbox=box, env=TIMEOUT_ENV, seconds=30)
    assert outcome.returncode == 0, outcome.stderr[-1500:]
    assert (box / "out" / "adapter" / "adapter_model.safetensors").is_file()


# `gate verify bundle` reads the same way: a sample of the layout cases through it (it keeps nothing).
VERIFY_SAMPLE = (
    "index-is-a-fifo",
    "manifest-huge-integer",
    "layer-title-dotdot",
    "duplicate-layer-titles",
    "signature-left-behind",
    "weights-blob-altered",
)


@pytest.mark.parametrize("case", VERIFY_SAMPLE)
def test_hostile_layout_is_refused_by_verify_bundle_too(case: str, release: Release, tmp_path: Path) -> None:
    damage, exit_code, expected = LAYOUT_CASES[case]
    box = tmp_path / "box"
    root = box / "layout"
    shutil.copytree(release.layout, root, symlinks=True)
    damage(root, release)
    args = ["verify", "bundle", "oci-layout://layout:v1", "--key", str(release.public_key)]
    outcome = run_gate([*args, "--contract-digest", CONTRACT_SHA], sandbox=box, env=TIMEOUT_ENV)
    outcome.assert_clean(expect_exit=exit_code)
    assert re.search(expected, outcome.stderr), outcome.stderr[-1500:]
