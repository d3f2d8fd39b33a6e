"""Publish, pull and verify against a real docker-registry and an on-disk OCI layout.

The bundles are built from real files (a safetensors LoRA adapter, gate reports,
a verdict) and signed with real keys; no gate runs here (see test_pipeline.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from gate import bundle as layout
from gate.cli import main
from gate.contract import Contract
from gate.errors import GateFailure, InputError
from gate.oci import ARTIFACT_TYPE, FILEPATH_ANNOTATION, parse_ref, publish
from gate.resources import default_contract
from gate.signing import SIGNATURE_MEDIA_TYPE, SigningConfig, TrustPolicy
from gate.verify import verify_bundle
from tests.fixtures.registry import DockerRegistry
from tests.release.conftest import BundleFactory, CertChain, KeyPair

CONTRACT_SHA = Contract.from_yaml(default_contract()).sha256


def _key_policy(keys: dict[str, KeyPair], name: str = "release") -> TrustPolicy:
    return TrustPolicy(method="key", public_key=keys[name].public)


def test_release_publish_pull_verify_round_trip_on_docker_registry(
    make_bundle: BundleFactory, registry_env: DockerRegistry, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    bundle = make_bundle()
    result = publish(bundle, parse_ref(registry_env.ref("adapters/roundtrip", "v1")))
    # The registry holds a ModelPack artifact: one raw layer per file, paths annotated.
    digest, manifest = registry_env.manifest("adapters/roundtrip", "v1") or ("", {})
    assert digest == result.digest
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    paths = {layer["annotations"][FILEPATH_ANNOTATION]: layer["mediaType"] for layer in manifest["layers"]}
    assert paths["adapter_model.safetensors"] == "application/vnd.cncf.model.weight.v1.raw"
    assert paths["adapter_config.json"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert paths[layout.REPORTS["eval"]] == "application/vnd.cncf.model.doc.v1.raw"
    assert paths[layout.RUN_RECORD] == "application/vnd.cncf.model.doc.v1.raw"
    assert layout.SIGNATURE not in paths
    # docker-registry 2.8 has no referrers API: the signature hangs off the referrers tag schema.
    assert result.referrer_via == "tag-schema"
    index = registry_env.manifest("adapters/roundtrip", digest.replace(":", "-"))
    assert index is not None
    (sig_desc,) = index[1]["manifests"]
    assert sig_desc["artifactType"] == SIGNATURE_MEDIA_TYPE
    sig_manifest = registry_env.manifest("adapters/roundtrip", sig_desc["digest"])
    assert sig_manifest is not None and sig_manifest[1]["subject"]["digest"] == digest

    out = tmp_path / "pulled"
    verified = verify_bundle(
        registry_env.ref("adapters/roundtrip", "v1"),
        _key_policy(release_keys),
        expected_contract_sha256=CONTRACT_SHA,
        out=out,
    )
    assert verified.digest == digest
    assert [g.status for g in verified.verdict.gates] == ["passed", "passed", "passed"]
    # Ready for vLLM --lora-modules: the adapter files sit at the root, byte for byte.
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (out / name).read_bytes() == (bundle / name).read_bytes()
    assert "exact_match" in (verified.eval_markdown or "")
    # The pulled directory re-verifies offline, as a local bundle.
    again = verify_bundle(str(out), _key_policy(release_keys), expected_contract_sha256=CONTRACT_SHA)
    assert again.files == verified.files


def test_pull_by_digest_and_cli_exit_codes(
    make_bundle: BundleFactory,
    registry_env: DockerRegistry,
    release_keys: dict[str, KeyPair],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = make_bundle(seed=3)
    result = publish(bundle, parse_ref(registry_env.ref("adapters/cli", "v1")))
    ref = registry_env.ref("adapters/cli", digest=result.digest)
    key = str(release_keys["release"].public)
    assert (
        main(["pull", ref, "--out", str(tmp_path / "a"), "--key", key, "--contract", "smollm2", "--json"])
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown["verified"] is True and shown["digest"] == result.digest
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()
    assert (
        main(
            ["verify", "bundle", ref, "--key", str(release_keys["intruder"].public), "--contract", "smollm2"]
        )
        == 1
    )
    assert "signature verification failed" in capsys.readouterr().err
    assert main(["verify", "bundle", ref, "--contract", "smollm2"]) == 2  # no signer pinned: bad input
    assert "no signer pinned" in capsys.readouterr().err


def test_oci_layout_round_trip_needs_no_server(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    bundle = make_bundle()
    ref = f"oci-layout://{tmp_path}/registry:v1"
    result = publish(bundle, parse_ref(ref))
    index = json.loads((tmp_path / "registry" / "index.json").read_text())
    tagged = [
        m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name")
    ]
    names = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in tagged}
    # The bundle under its tag, and the signature reachable under the sha256-<hex> referrers tag.
    assert names == {
        "v1": result.digest,
        result.digest.replace(":", "-"): names.get(result.digest.replace(":", "-")),
    }
    assert names[result.digest.replace(":", "-")] != result.digest
    assert json.loads((tmp_path / "registry" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    verified = verify_bundle(
        ref, _key_policy(release_keys), expected_contract_sha256=CONTRACT_SHA, out=tmp_path / "o"
    )
    assert verified.digest == result.digest
    assert (tmp_path / "o" / "adapter_config.json").is_file()


def test_republishing_an_unchanged_bundle_uploads_no_blob(
    make_bundle: BundleFactory, registry_env: DockerRegistry
) -> None:
    bundle = make_bundle(seed=5)
    ref = parse_ref(registry_env.ref("adapters/twice", "v1"))
    first = publish(bundle, ref)
    second = publish(bundle, ref)
    files = layout.list_files(bundle, include_signature=True)
    unique = {f.sha256: f.size for f in files}
    # Files with equal bytes (the served template and the contract's template file) share one blob.
    shared = len(files) - len(unique)
    assert first.blobs_uploaded == first.blobs_total - shared
    assert first.bytes_uploaded >= sum(unique.values())
    assert second.blobs_uploaded == 0 and second.bytes_uploaded == 0
    assert second.digest == first.digest


def test_tampered_layer_in_registry_storage_is_refused(
    make_bundle: BundleFactory, registry_env: DockerRegistry, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    bundle = make_bundle(seed=7)
    result = publish(bundle, parse_ref(registry_env.ref("adapters/tampered", "v1")))
    weights = hashlib.sha256((bundle / "adapter_model.safetensors").read_bytes()).hexdigest()
    blob = registry_env.blob_file("sha256:" + weights)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the registry's stored weights
    blob.write_bytes(bytes(data))
    with pytest.raises(
        GateFailure,
        match=rf"layer 'adapter_model\.safetensors' does not match its digest: expected sha256:{weights}, "
        r"got sha256:[0-9a-f]{64}$",
    ):
        verify_bundle(
            registry_env.ref("adapters/tampered", digest=result.digest),
            _key_policy(release_keys),
            expected_contract_sha256=CONTRACT_SHA,
            out=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()  # nothing unverified is left behind


def test_swapped_signature_is_refused(
    make_bundle: BundleFactory, registry_env: DockerRegistry, release_keys: dict[str, KeyPair]
) -> None:
    good = make_bundle(seed=11)
    other = make_bundle(seed=12)  # same key, another adapter
    shutil.copyfile(other / layout.SIGNATURE, good / layout.SIGNATURE)
    publish(good, parse_ref(registry_env.ref("adapters/swapped", "v1")))
    with pytest.raises(GateFailure, match=r"no signature verifies.*adapter_model\.safetensors"):
        verify_bundle(
            registry_env.ref("adapters/swapped", "v1"),
            _key_policy(release_keys),
            expected_contract_sha256=CONTRACT_SHA,
        )


def test_repushed_tag_with_edited_report_is_refused(
    make_bundle: BundleFactory, registry_env: DockerRegistry, release_keys: dict[str, KeyPair]
) -> None:
    bundle = make_bundle(seed=13)
    repo = "adapters/edited"
    publish(bundle, parse_ref(registry_env.ref(repo, "v1")))
    # Someone edits the eval report after signing and re-pushes the tag, keeping the signature.
    report = bundle / layout.REPORTS["eval"]
    report.write_text(
        json.dumps({"version": "1.0", "gate": "eval", "passed": True, "note": "numbers improved"})
    )
    republished = publish(bundle, parse_ref(registry_env.ref(repo, "v1")))
    assert registry_env.tags(repo).count("v1") == 1
    with pytest.raises(GateFailure, match=r"gate/reports/eval\.json"):
        verify_bundle(
            registry_env.ref(repo, "v1"), _key_policy(release_keys), expected_contract_sha256=CONTRACT_SHA
        )
    assert republished.digest == (registry_env.manifest(repo, "v1") or ("",))[0]


def test_signature_by_unexpected_key_is_refused(
    make_bundle: BundleFactory, registry_env: DockerRegistry, release_keys: dict[str, KeyPair]
) -> None:
    bundle = make_bundle(
        seed=17, sign=SigningConfig(method="key", private_key=release_keys["intruder"].private)
    )
    publish(bundle, parse_ref(registry_env.ref("adapters/intruder", "v1")))
    with pytest.raises(GateFailure, match=r"does not match the provided public key|Key mismatch"):
        verify_bundle(
            registry_env.ref("adapters/intruder", "v1"),
            _key_policy(release_keys),
            expected_contract_sha256=CONTRACT_SHA,
        )


def test_certificate_signature_verifies_only_for_the_pinned_identity(
    make_bundle: BundleFactory, cert_chain: CertChain, tmp_path: Path
) -> None:
    signing = SigningConfig(
        method="certificate",
        private_key=cert_chain.release_key,
        certificate=cert_chain.release_cert,
        chain=(cert_chain.ca,),
    )
    bundle = make_bundle(seed=19, sign=signing)
    ref = f"oci-layout://{tmp_path}/reg:cert"
    publish(bundle, parse_ref(ref))
    ok = verify_bundle(
        ref,
        TrustPolicy(
            method="certificate", ca_chain=(cert_chain.ca,), cert_identity=cert_chain.release_identity
        ),
        expected_contract_sha256=CONTRACT_SHA,
    )
    assert "release" in ok.signer
    # The chain is valid for both leaves: only the pinned identity tells them apart.
    with pytest.raises(GateFailure, match=r"identity .* not the pinned other@gate\.example"):
        verify_bundle(
            ref,
            TrustPolicy(
                method="certificate", ca_chain=(cert_chain.ca,), cert_identity=cert_chain.other_identity
            ),
            expected_contract_sha256=CONTRACT_SHA,
        )
    with pytest.raises(GateFailure, match="fingerprint"):
        verify_bundle(
            ref,
            TrustPolicy(method="certificate", ca_chain=(cert_chain.ca,), cert_fingerprint="ab" * 32),
            expected_contract_sha256=CONTRACT_SHA,
        )
    with pytest.raises(InputError, match="must pin who signed"):
        verify_bundle(
            ref, TrustPolicy(method="certificate", ca_chain=(cert_chain.ca,)), expected_contract_sha256="0"
        )


def test_certificate_by_another_signer_of_the_same_ca_is_refused(
    make_bundle: BundleFactory, cert_chain: CertChain, tmp_path: Path
) -> None:
    signing = SigningConfig(
        method="certificate",
        private_key=cert_chain.other_key,
        certificate=cert_chain.other_cert,
        chain=(cert_chain.ca,),
    )
    bundle = make_bundle(seed=23, sign=signing)
    with pytest.raises(GateFailure, match=r"not the pinned release@gate\.example"):
        verify_bundle(
            str(bundle),
            TrustPolicy(
                method="certificate", ca_chain=(cert_chain.ca,), cert_identity=cert_chain.release_identity
            ),
            expected_contract_sha256=CONTRACT_SHA,
        )


def test_bundle_whose_verdict_says_a_gate_failed_is_refused(
    make_bundle: BundleFactory, registry_env: DockerRegistry, release_keys: dict[str, KeyPair]
) -> None:
    bundle = make_bundle(seed=29, failed_gate="smoke")  # signed, but its own verdict says smoke failed
    publish(bundle, parse_ref(registry_env.ref("adapters/failedgate", "v1")))
    with pytest.raises(GateFailure, match=r"gate 'smoke' failed.*gate 'eval' did not run"):
        verify_bundle(
            registry_env.ref("adapters/failedgate", "v1"),
            _key_policy(release_keys),
            expected_contract_sha256=CONTRACT_SHA,
        )


def test_bundle_released_under_another_contract_is_refused(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    bundle = make_bundle(seed=31)
    with pytest.raises(GateFailure, match="not the expected contract"):
        verify_bundle(str(bundle), _key_policy(release_keys), expected_contract_sha256="1" * 64)


def test_unsigned_bundle_is_never_published(make_bundle: BundleFactory, tmp_path: Path) -> None:
    bundle = make_bundle(sign=False)
    with pytest.raises(InputError, match="not signed"):
        publish(bundle, parse_ref(f"oci-layout://{tmp_path}/reg:v1"))
    assert not (tmp_path / "reg").exists()


def test_layer_path_leaving_the_output_directory_is_refused(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    bundle = make_bundle(seed=37)
    ref = f"oci-layout://{tmp_path}/reg:v1"
    result = publish(bundle, parse_ref(ref))
    # Rewrite the manifest so a layer claims the path ../escape and re-tag it.
    reg = tmp_path / "reg"
    manifest = json.loads((reg / "blobs" / "sha256" / result.digest.split(":")[1]).read_text())
    manifest["layers"][0]["annotations"][FILEPATH_ANNOTATION] = "../escape"
    raw = json.dumps(manifest).encode()
    digest = hashlib.sha256(raw).hexdigest()
    (reg / "blobs" / "sha256" / digest).write_bytes(raw)
    index = json.loads((reg / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations"):
            m["digest"], m["size"] = f"sha256:{digest}", len(raw)
    (reg / "index.json").write_text(json.dumps(index))
    with pytest.raises(GateFailure, match="could leave the output directory"):
        verify_bundle(
            ref, _key_policy(release_keys), expected_contract_sha256=CONTRACT_SHA, out=tmp_path / "o"
        )
    assert not (tmp_path / "escape").exists() and not (tmp_path / "o").exists()


def test_registry_credentials_are_required_and_never_shown(
    make_bundle: BundleFactory,
    docker_registry: DockerRegistry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = make_bundle(seed=41)
    monkeypatch.delenv("GATE_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("GATE_REGISTRY_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(bundle.parent / "no-docker-config"))
    with pytest.raises(InputError, match="requires credentials"):
        publish(bundle, parse_ref(docker_registry.ref("adapters/creds", "v1")))
    wrong = "not-the-password-" + docker_registry.password[:4]
    monkeypatch.setenv("GATE_REGISTRY_USERNAME", docker_registry.username)
    monkeypatch.setenv("GATE_REGISTRY_PASSWORD", wrong)
    with pytest.raises(InputError, match="refused the credentials") as info:
        publish(bundle, parse_ref(docker_registry.ref("adapters/creds", "v1")))
    assert wrong not in info.value.diagnostics()
    # With the right ones from a docker config file (no env), publishing works; nothing echoes the secret.
    monkeypatch.delenv("GATE_REGISTRY_USERNAME")
    monkeypatch.delenv("GATE_REGISTRY_PASSWORD")
    import base64

    cfg_dir = bundle.parent / "docker-config"
    cfg_dir.mkdir()
    token = base64.b64encode(f"{docker_registry.username}:{docker_registry.password}".encode()).decode()
    (cfg_dir / "config.json").write_text(json.dumps({"auths": {docker_registry.host: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg_dir))
    result = publish(bundle, parse_ref(docker_registry.ref("adapters/creds", "v1")))
    assert docker_registry.password not in json.dumps(result.to_dict())
    captured = capsys.readouterr()
    assert docker_registry.password not in captured.out + captured.err
    assert "v1" in docker_registry.tags("adapters/creds")
