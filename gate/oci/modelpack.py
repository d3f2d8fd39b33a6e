"""The CNCF ModelPack config and manifest gate publishes for a bundle, and the signature manifest.

The config describes the release as a ModelPack consumer expects it: the
descriptor's name and version are the release's repository and tag, its family
is the base's architecture family (``LlamaForCausalLM`` -> ``llama``), precision
and parameter count come from the adapter's safetensors headers. Each file is
one raw layer: weights, weight config (adapter config, tokenizer, the serving
chat template) or documentation (README, gate's reports and evidence).

gate's own manifest annotations live under :data:`ANNOTATION_NS`
(``io.github.lora-gate``): they name the artifact a LoRA adapter and carry the
base identity, the contract digest and the verdict digest, so a registry
listing says what an artifact needs without pulling it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gate.bundle import CHAT_TEMPLATE, CONTRACT, GATE_DIR, VERDICT, BundleFile
from gate.errors import InputError
from gate.oci._common import (
    _EMPTY,
    _EMPTY_DIGEST,
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    EMPTY_MEDIA_TYPE,
    FILEPATH_ANNOTATION,
    MANIFEST_MEDIA_TYPE,
    MEDIA_TYPES,
    _canonical,
    _digest_bytes,
)
from gate.signing import SIGNATURE_MEDIA_TYPE

__all__ = ["ANNOTATION_NS", "ModelPackConfig", "build_manifest", "layer_media_type"]

#: gate's reverse-DNS annotation namespace (documented in docs/release.md).
ANNOTATION_NS = "io.github.lora-gate"
_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3", "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip
_ARCH_SUFFIX = re.compile(r"(ForCausalLM|ForConditionalGeneration|LMHeadModel|Model)$")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelPackDescriptor(_Strict):
    """ModelPack ``descriptor`` (the fields gate fills)."""

    name: str = Field(min_length=1)
    version: str | None = None
    family: str | None = None
    createdAt: str | None = Field(
        default=None, pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"
    )
    description: str | None = None


class ModelPackTechnical(_Strict):
    """ModelPack ``config``."""

    architecture: str | None = None
    format: str | None = None
    paramSize: str | None = None
    precision: str | None = None


class ModelPackFS(_Strict):
    """ModelPack ``modelfs``: raw layers, so each diffId is the layer digest."""

    type: str = Field(pattern="^layers$")
    diffIds: list[str] = Field(min_length=1)


class ModelPackConfig(_Strict):
    """The ModelPack model config (``application/vnd.cncf.model.config.v1+json``), checked on build."""

    descriptor: ModelPackDescriptor
    config: ModelPackTechnical
    modelfs: ModelPackFS


def layer_media_type(path: str) -> str:
    """The ModelPack layer type of a bundle file."""
    name = path.rsplit("/", 1)[-1].lower()
    if path == CHAT_TEMPLATE or name.endswith(".jinja"):
        return MEDIA_TYPES["weight-config"]  # the serving template is part of how the weights are used
    if path.startswith(GATE_DIR + "/") or name.startswith(("readme", "license")) or name.endswith(".md"):
        return MEDIA_TYPES["doc"]
    if name.endswith((".safetensors", ".bin", ".pt", ".gguf")):
        return MEDIA_TYPES["weight"]
    return MEDIA_TYPES["weight-config"]


def architecture_family(architecture: str) -> str:
    """``LlamaForCausalLM`` -> ``llama``, ``Qwen2ForCausalLM`` -> ``qwen2``."""
    return _ARCH_SUFFIX.sub("", architecture).lower()


def _parameters(bundle: Path, files: list[BundleFile]) -> tuple[int, str]:
    from gate.safetensors_io import read_header

    count = 0
    dtypes: set[str] = set()
    for f in files:
        if f.path.endswith(".safetensors") and not f.path.startswith(GATE_DIR + "/"):
            for info in read_header(bundle / f.path).tensors.values():
                n = 1
                for d in info.shape:
                    n *= d
                count += n
                dtypes.add(_DTYPES.get(info.dtype, info.dtype.lower()))
    return count, "+".join(sorted(dtypes))


def _param_size(n: int) -> str:
    for unit, scale in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _base(bundle: Path, verdict: dict[str, Any]) -> dict[str, str]:
    """The base's name, identity and architecture: the verdict's, else the bundled contract's."""
    base = {k: v for k, v in (verdict.get("base_model") or {}).items() if isinstance(v, str)}
    if not (base.get("identity") and base.get("architecture")) and (bundle / CONTRACT).is_file():
        import yaml

        from gate.oci._common import _read_bounded

        try:
            doc = yaml.safe_load(_read_bounded(bundle / CONTRACT, 1 << 20))
        except yaml.YAMLError:
            doc = None
        spec = doc.get("base_model") if isinstance(doc, dict) else None
        if isinstance(spec, dict):
            found = {k: spec[k] for k in ("name", "identity", "architecture") if isinstance(spec.get(k), str)}
            base = {**found, **base}
    return base


def build_manifest(
    bundle: Path, files: list[BundleFile], verdict: dict[str, Any], *, name: str, version: str | None
) -> tuple[bytes, bytes]:
    """The ModelPack config and manifest bytes for a bundle released as ``name:version``.

    Deterministic for the same bundle and release name.
    """
    base = _base(bundle, verdict)
    params, precision = _parameters(bundle, files)
    raw_contract = verdict.get("contract")
    contract: dict[str, Any] = raw_contract if isinstance(raw_contract, dict) else {}
    verdict_file = next((f for f in files if f.path == VERDICT), None)
    try:
        config = ModelPackConfig.model_validate(
            {
                "descriptor": {
                    "name": name,
                    "version": version,
                    "family": architecture_family(base["architecture"]) if base.get("architecture") else None,
                    "createdAt": verdict.get("created_at"),
                    "description": f"LoRA adapter for {base.get('name', 'its base model')}, released by gate",
                },
                "config": {
                    "architecture": base.get("architecture"),
                    "format": "safetensors",
                    "paramSize": _param_size(params) if params else None,
                    "precision": precision or None,
                },
                "modelfs": {"type": "layers", "diffIds": ["sha256:" + f.sha256 for f in files]},
            }
        )
    except ValidationError as e:
        raise InputError(f"the bundle's ModelPack config would be invalid: {e.errors()[0]['msg']}") from None
    config_raw = _canonical(config.model_dump(exclude_none=True))
    annotations = {
        "org.opencontainers.image.created": str(verdict.get("created_at") or ""),
        "org.opencontainers.image.title": name,
        f"{ANNOTATION_NS}.artifact": "lora-adapter",
        f"{ANNOTATION_NS}.adapter.digest": str(verdict.get("adapter_digest") or ""),
        f"{ANNOTATION_NS}.adapter.parameters": str(params),
        f"{ANNOTATION_NS}.base.name": base.get("name", ""),
        f"{ANNOTATION_NS}.base.identity": base.get("identity", ""),
        f"{ANNOTATION_NS}.contract.sha256": "sha256:"
        + str(contract.get("sha256", "")).removeprefix("sha256:"),
        f"{ANNOTATION_NS}.verdict.sha256": "sha256:" + verdict_file.sha256 if verdict_file else "",
    }
    if version:
        annotations["org.opencontainers.image.version"] = version
    layers = [
        {
            "mediaType": layer_media_type(f.path),
            "digest": "sha256:" + f.sha256,
            "size": f.size,
            "annotations": {FILEPATH_ANNOTATION: f.path},
        }
        for f in files
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": _digest_bytes(config_raw),
            "size": len(config_raw),
        },
        "layers": layers,
        "annotations": {k: v for k, v in annotations.items() if v},
    }
    return config_raw, _canonical(manifest)


def _signature_manifest(sig: bytes, subject_digest: str, subject_size: int) -> bytes:
    return _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": SIGNATURE_MEDIA_TYPE,
            "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": _EMPTY_DIGEST, "size": len(_EMPTY)},
            "layers": [{"mediaType": SIGNATURE_MEDIA_TYPE, "digest": _digest_bytes(sig), "size": len(sig)}],
            "subject": {"mediaType": MANIFEST_MEDIA_TYPE, "digest": subject_digest, "size": subject_size},
        }
    )
