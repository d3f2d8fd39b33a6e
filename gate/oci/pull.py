"""Pull a bundle by digest, checking layer paths before writing and every blob while it streams."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.bundle import MAX_FILE_BYTES, MAX_FILES, SIGNATURE, check_relpath
from gate.errors import GateFailure, InputError
from gate.oci._common import (
    _DIGEST_RE,
    _MAX_SIGNATURE_BYTES,
    ARTIFACT_TYPE,
    FILEPATH_ANNOTATION,
    Event,
    _digest_bytes,
    _json_object,
)
from gate.oci.layout import open_store
from gate.oci.refs import OciRef
from gate.oci.store import Store
from gate.signing import SIGNATURE_MEDIA_TYPE


@dataclass(frozen=True)
class PulledBundle:
    """A bundle fetched by digest into ``root``: its layers and the candidate signatures."""

    root: Path
    ref: str
    digest: str
    layers: dict[str, str]  # path -> sha256 hex
    signatures: list[bytes] = field(default_factory=list)
    signature_problems: list[str] = field(default_factory=list)


def _resolve(store: Store, ref: OciRef) -> tuple[str, bytes]:
    reference = ref.digest or ref.tag
    if not reference:
        raise InputError(f"reference {ref} names neither a tag nor a digest")
    raw = store.get_manifest(reference)
    if raw is None:
        raise GateFailure(f"{ref} does not exist", hint="check the tag or digest")
    digest = _digest_bytes(raw)
    if ref.digest and digest != ref.digest:
        raise GateFailure(
            f"manifest for {ref.digest} has digest {digest}: the store returned altered content"
        )
    return digest, raw


def _layers(manifest: dict[str, Any]) -> list[tuple[str, str, int]]:
    if manifest.get("artifactType") != ARTIFACT_TYPE:
        raise GateFailure(
            f"artifact type is {manifest.get('artifactType')!r}, not a gate bundle ({ARTIFACT_TYPE})"
        )
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise GateFailure("manifest has no layers")
    if len(layers) > MAX_FILES:
        raise GateFailure(f"manifest has {len(layers)} layers, over the limit of {MAX_FILES}")
    out: list[tuple[str, str, int]] = []
    seen: set[str] = set()
    for layer in layers:
        ann = layer.get("annotations") or {}
        path = ann.get(FILEPATH_ANNOTATION)
        digest = layer.get("digest")
        size = layer.get("size")
        if not isinstance(path, str):
            raise GateFailure(f"layer {digest} carries no {FILEPATH_ANNOTATION} annotation")
        try:
            check_relpath(path)
        except InputError as e:
            raise GateFailure(
                f"refusing layer path that could leave the output directory: {e.message}"
            ) from None
        if path == SIGNATURE:
            raise GateFailure(f"a layer claims to be the signature file {SIGNATURE}")
        lowered = path.lower()
        if lowered in seen or any(lowered.startswith(s + "/") or s.startswith(lowered + "/") for s in seen):
            raise GateFailure(f"layer path {path!r} collides with another layer")
        seen.add(lowered)
        if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
            raise GateFailure(f"layer {path!r} has a bad digest {digest!r}")
        if not isinstance(size, int) or size < 0 or size > MAX_FILE_BYTES:
            raise GateFailure(f"layer {path!r} has a bad size {size!r}")
        out.append((path, digest, size))
    return out


def pull(ref: OciRef, dest: Path, *, on_event: Event | None = None) -> PulledBundle:
    """Fetch the bundle ``ref`` names into the new directory ``dest``, by digest, checking every blob.

    Layer paths are checked before anything is written; each blob's size and
    sha256 are checked while it streams. The signature referrers are fetched too
    (verified against their digests) but not yet trusted: see gate.verify.
    """
    emit = on_event or (lambda _e: None)
    store = open_store(ref)
    digest, raw = _resolve(store, ref)
    manifest = _json_object(raw, "manifest")
    layers = _layers(manifest)
    dest.mkdir(parents=True, exist_ok=False)
    for i, (path, layer_digest, size) in enumerate(layers, 1):
        store.fetch_blob_to(layer_digest, size, dest / path)
        emit({"event": "pull.blob", "index": i, "total": len(layers), "path": path, "size": size})
    signatures: list[bytes] = []
    problems: list[str] = []
    for d in store.referrers(digest):
        if d.get("artifactType") not in (None, SIGNATURE_MEDIA_TYPE):
            continue
        sd = str(d.get("digest"))
        try:
            sraw = store.get_manifest(sd)
            if sraw is None or _digest_bytes(sraw) != sd:
                problems.append(f"signature manifest {sd} is missing or altered")
                continue
            sman = _json_object(sraw, "signature manifest")
            if (sman.get("subject") or {}).get("digest") != digest or sman.get(
                "artifactType"
            ) != SIGNATURE_MEDIA_TYPE:
                problems.append(f"referrer {sd} is not a signature of {digest}")
                continue
            (layer,) = sman.get("layers") or [None]
            signatures.append(
                store.fetch_blob_bytes(str(layer["digest"]), int(layer["size"]), _MAX_SIGNATURE_BYTES)
            )
        except (GateFailure, ValueError, TypeError, KeyError) as e:
            problems.append(f"signature referrer {sd}: {getattr(e, 'message', e)}")
    return PulledBundle(
        root=dest,
        ref=str(ref.with_digest(digest)),
        digest=digest,
        layers={p: d.split(":", 1)[1] for p, d, _ in layers},
        signatures=signatures,
        signature_problems=problems,
    )
