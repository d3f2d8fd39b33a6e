"""gate's artifact as CNCF ModelPack: what the config and annotations say, and a third-party consumer.

The PyPI package ``modelpack-client`` (not gate code) pulls the published
release from the real loopback docker-registry and validates its config; the
config is also checked against that package's copy of the ModelPack schema.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
from modelpack_client import ModelPackClient
from modelpack_client.schema import CONFIG_SCHEMA

from gate import bundle as layout
from gate.contract import Contract
from gate.oci import parse_ref, publish
from gate.resources import default_contract
from gate.signing import SigningConfig, sign_bundle
from tests.fixtures.registry import DockerRegistry
from tests.release.conftest import BundleFactory, KeyPair

CONFIG_TYPE = "application/vnd.cncf.model.config.v1+json"
NS = "io.github.lora-gate"


def _published(
    make_bundle: BundleFactory, keys: dict[str, KeyPair], registry: DockerRegistry, repo: str
) -> tuple[Path, str]:
    bundle = make_bundle(sign=False)
    (bundle / "README.md").write_text("# adapter\n\nA LoRA adapter for SmolLM2.\n")
    sign_bundle(bundle, SigningConfig(method="key", private_key=keys["release"].private))
    publish(bundle, parse_ref(registry.ref(repo, "v2")))
    return bundle, repo


def test_modelpack_config_and_annotations_describe_the_release(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], registry_env: DockerRegistry
) -> None:
    bundle, repo = _published(make_bundle, release_keys, registry_env, "modelpack/described")
    digest, manifest = registry_env.manifest(repo, "v2") or ("", {})
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    config = registry_env.get(f"{repo}/blobs/{manifest['config']['digest']}").json()
    jsonschema.Draft202012Validator(CONFIG_SCHEMA, format_checker=jsonschema.FormatChecker()).validate(config)
    base = Contract.from_yaml(default_contract()).base_model
    # Name and version are the release's; the family is the base's architecture family.
    assert config["descriptor"]["name"] == repo
    assert config["descriptor"]["version"] == "v2"
    assert config["descriptor"]["family"] == "llama" and base.architecture == "LlamaForCausalLM"
    # 30 layers x (q_proj: 8x576 + 576x8, v_proj: 8x576 + 192x8) float32 elements, from the headers.
    assert config["config"]["precision"] == "float32"
    assert 30 * (8 * 576 + 576 * 8 + 8 * 576 + 192 * 8) == 460_800
    assert config["config"]["paramSize"] == "461K"
    assert manifest["annotations"][f"{NS}.adapter.parameters"] == "460800"
    assert config["config"]["architecture"] == "LlamaForCausalLM"
    types = {
        layer["annotations"]["org.cncf.model.filepath"]: layer["mediaType"] for layer in manifest["layers"]
    }
    assert types["README.md"] == "application/vnd.cncf.model.doc.v1.raw"
    assert types[layout.CHAT_TEMPLATE] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert types["adapter_model.safetensors"] == "application/vnd.cncf.model.weight.v1.raw"
    verdict = json.loads((bundle / layout.VERDICT).read_text())

    ann = manifest["annotations"]
    assert ann[f"{NS}.artifact"] == "lora-adapter"
    assert ann[f"{NS}.base.name"] == base.name
    assert ann[f"{NS}.base.identity"] == base.identity
    assert ann[f"{NS}.contract.sha256"] == "sha256:" + verdict["contract"]["sha256"]
    assert (
        ann[f"{NS}.verdict.sha256"]
        == "sha256:" + hashlib.sha256((bundle / layout.VERDICT).read_bytes()).hexdigest()
    )
    assert ann[f"{NS}.adapter.digest"] == verdict["adapter_digest"]
    assert digest


def test_modelpack_client_pulls_the_release_and_its_config_validates(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], registry_env: DockerRegistry, tmp_path: Path
) -> None:
    bundle, repo = _published(make_bundle, release_keys, registry_env, "modelpack/consumed")
    docker_config = tmp_path / "docker" / "config.json"
    client = ModelPackClient(insecure=True, auth_backend="basic")
    client.login(registry_env.host, registry_env.username, registry_env.password, config_path=docker_config)
    result = client.pull(f"{registry_env.host}/{repo}:v2", tmp_path / "pulled", config_path=docker_config)
    assert result.config["descriptor"]["name"] == repo
    pulled = {p.relative_to(tmp_path / "pulled").as_posix() for p in result.files}
    published = {f.path for f in layout.list_files(bundle)}
    assert pulled == published
    for rel in published:
        assert (tmp_path / "pulled" / rel).read_bytes() == (bundle / rel).read_bytes()
