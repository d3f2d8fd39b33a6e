"""The CNCF ModelPack config and manifest gate publishes for a bundle, and the signature manifest."""

from __future__ import annotations

from typing import Any

from gate.bundle import BundleFile, file_kind
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


def _config(files: list[BundleFile], verdict: dict[str, Any]) -> dict[str, Any]:
    contract = verdict.get("contract") or {}
    base = verdict.get("base_model") or {}
    return {
        "descriptor": {
            "name": str(verdict.get("run", {}).get("name") or contract.get("name") or "adapter"),
            "createdAt": verdict.get("created_at"),
            "family": str(base.get("name") or ""),
            "version": str(verdict.get("adapter_digest", ""))[:19],
        },
        "config": {"format": "safetensors", "architecture": str(base.get("architecture") or "lora-adapter")},
        "modelfs": {"type": "layers", "diffIds": ["sha256:" + f.sha256 for f in files]},
    }


def build_manifest(files: list[BundleFile], verdict: dict[str, Any]) -> tuple[bytes, bytes]:
    """The ModelPack config and manifest bytes for a bundle (deterministic for the same bundle)."""
    config = _canonical(_config(files, verdict))
    layers = [
        {
            "mediaType": MEDIA_TYPES[file_kind(f.path)],
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
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": _digest_bytes(config), "size": len(config)},
        "layers": layers,
        "annotations": {"org.opencontainers.image.created": str(verdict.get("created_at") or "")},
    }
    return config, _canonical(manifest)


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
