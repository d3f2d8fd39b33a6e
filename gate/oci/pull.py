"""Pull a bundle verify-first: manifest and signature, then only the signed layers.

Order of a pull, so that nothing unsigned reaches the output directory:

1. resolve the tag or digest to the manifest (bounded, strictly parsed, checked
   against a pinned digest);
2. find the signature referrers (referrers API, else the ``sha256-<hex>`` tag);
3. verify a signature with the caller's pinned signer *before any layer exists*,
   and require the manifest's layers to be exactly the signed files (same names,
   same digests; none extra, none missing);
4. stream each layer into the (staging) directory, checking its size and sha256
   while it streams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate.bundle import MAX_FILE_BYTES, MAX_FILES, SIGNATURE, check_relpath
from gate.errors import GateFailure, InputError
from gate.oci._common import (
    _MAX_MANIFEST_BYTES,
    _MAX_SIGNATURE_BYTES,
    ARTIFACT_TYPE,
    FILEPATH_ANNOTATION,
    INDEX_MEDIA_TYPE,
    Event,
    _descriptor,
    _digest_bytes,
    _field,
    _json_object,
    _mismatch,
    _referrers_tag,
)
from gate.oci.layout import open_store
from gate.oci.refs import OciRef
from gate.oci.store import Store
from gate.signing import SIGNATURE_MEDIA_TYPE, SignedContent

__all__ = ["PulledBundle", "pull", "resolve_digest", "signature_travel_hint"]

#: Signature referrers tried at most (a registry may list many; each costs a verification).
_MAX_CANDIDATES = 16


@dataclass(frozen=True)
class PulledBundle:
    """A bundle fetched by digest into ``root`` after its signature verified."""

    root: Path
    ref: str
    digest: str
    layers: dict[str, str]  # path -> sha256 hex
    signed: SignedContent
    signature_digest: str


def signature_travel_hint(digest: str) -> str:
    """How a signature travels with an artifact (said whenever none is found)."""
    return (
        "gate attaches the signature as an OCI referrer: registries with the referrers API list it, "
        f"others (and OCI layouts) under the tag {_referrers_tag(digest)}; copy both tags, e.g. "
        f"`skopeo copy --all SRC:TAG DST:TAG` and `skopeo copy --all SRC:{_referrers_tag(digest)} "
        f"DST:{_referrers_tag(digest)}`"
    )


def _resolve(store: Store, ref: OciRef) -> tuple[str, bytes]:
    reference = ref.digest or ref.tag
    if not reference:
        raise InputError(f"reference {ref} names neither a tag nor a digest", hint="add :TAG or @sha256:...")
    raw = store.get_manifest(reference)
    if raw is None:
        raise GateFailure(f"{ref} does not exist", hint="check the tag or digest")
    digest = _digest_bytes(raw)
    if ref.digest and digest != ref.digest:
        raise GateFailure(_mismatch(f"manifest {ref}", ref.digest, digest))
    return digest, raw


def resolve_digest(ref: OciRef) -> str:
    """The manifest digest ``ref`` names now: a tag is looked up, a digest is fetched and checked."""
    digest, _ = _resolve(open_store(ref), ref)
    return digest


def _layers(manifest: dict[str, Any]) -> list[tuple[str, str, int]]:
    if manifest.get("mediaType") == INDEX_MEDIA_TYPE or "manifests" in manifest:
        raise GateFailure("the reference names an image index, not a gate bundle manifest")
    if manifest.get("artifactType") != ARTIFACT_TYPE:
        got = manifest.get("artifactType")
        raise GateFailure(f"artifact type is {str(got)[:100]!r}, not a gate bundle ({ARTIFACT_TYPE})")
    if manifest.get("schemaVersion") != 2:
        raise GateFailure("manifest schemaVersion is not 2")
    layers = _field(manifest, "layers", list, "manifest")
    if not layers:
        raise GateFailure("manifest has no layers")
    if len(layers) > MAX_FILES:
        raise GateFailure(f"manifest has {len(layers)} layers, over the limit of {MAX_FILES}")
    out: list[tuple[str, str, int]] = []
    seen: set[str] = set()
    for i, layer in enumerate(layers, 1):
        digest, size = _descriptor(layer, f"layer {i}", max_size=MAX_FILE_BYTES)
        ann = layer.get("annotations")
        path = ann.get(FILEPATH_ANNOTATION) if isinstance(ann, dict) else None
        if not isinstance(path, str):
            raise GateFailure(f"layer {i} ({digest}) carries no {FILEPATH_ANNOTATION} annotation")
        try:
            check_relpath(path)
        except InputError as e:
            raise GateFailure(
                f"refusing layer path that could leave the output directory: {e.message}"
            ) from None
        if path == SIGNATURE:
            raise GateFailure(f"a layer claims to be the signature file {SIGNATURE}")
        lowered = path.lower()
        if lowered in seen:
            raise GateFailure(f"two layers are titled {path!r}")
        if any(lowered.startswith(s + "/") or s.startswith(lowered + "/") for s in seen):
            raise GateFailure(f"layer path {path!r} collides with another layer (a file and a directory)")
        seen.add(lowered)
        out.append((path, digest, size))
    return out


def _signatures(store: Store, digest: str) -> tuple[list[tuple[str, bytes]], list[str]]:
    """(signature digest, bytes) of each signature referrer of ``digest``, and why others were dropped."""
    found: list[tuple[str, bytes]] = []
    problems: list[str] = []
    listed = [d for d in store.referrers(digest) if d.get("artifactType") in (None, SIGNATURE_MEDIA_TYPE)]
    for d in listed[:_MAX_CANDIDATES]:
        try:
            sd, _ = _descriptor(d, "signature referrer", max_size=_MAX_MANIFEST_BYTES)
            sraw = store.get_manifest(sd)
            if sraw is None:
                problems.append(f"signature manifest {sd} is missing")
                continue
            if _digest_bytes(sraw) != sd:
                problems.append(_mismatch(f"signature manifest {sd}", sd, _digest_bytes(sraw)))
                continue
            sman = _json_object(sraw, "signature manifest")
            subject = sman.get("subject")
            if not isinstance(subject, dict) or subject.get("digest") != digest:
                problems.append(f"referrer {sd} names another subject")
                continue
            if sman.get("artifactType") != SIGNATURE_MEDIA_TYPE:
                continue
            layers = _field(sman, "layers", list, "signature manifest")
            if len(layers) != 1:
                problems.append(f"signature manifest {sd} has {len(layers)} layers, not one")
                continue
            blob, size = _descriptor(layers[0], "signature layer", max_size=_MAX_SIGNATURE_BYTES)
            found.append((sd, store.fetch_blob_bytes(blob, size, _MAX_SIGNATURE_BYTES, "signature")))
        except GateFailure as e:
            problems.append(e.message)
    return found, problems


def pull(
    ref: OciRef,
    dest: Path,
    *,
    verify: Callable[[bytes], SignedContent],
    on_event: Event | None = None,
) -> PulledBundle:
    """Fetch the bundle ``ref`` names into the new directory ``dest``, verify-first.

    ``verify`` checks signature bytes against the pinned signer and returns the
    signed file digests (gate.signing.verify_signature_bytes); a layer is fetched
    only after a signature verified and the layers equal the signed files.
    """
    emit = on_event or (lambda _e: None)
    store = open_store(ref)
    digest, raw = _resolve(store, ref)
    layers = _layers(_json_object(raw, "manifest"))
    emit({"event": "pull.manifest", "digest": digest, "layers": len(layers)})
    candidates, problems = _signatures(store, digest)
    if not candidates:
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise GateFailure(
            f"{ref} has no signature referrer: none of {digest} is a signature{detail}",
            hint=signature_travel_hint(digest),
        )
    want = {p: d.split(":", 1)[1] for p, d, _ in layers}
    reasons: list[str] = list(problems)
    chosen: tuple[str, bytes, SignedContent] | None = None
    for sd, sig in candidates:
        try:
            signed = verify(sig)
        except GateFailure as e:
            reasons.append(f"signature {sd[:19]}: {e.message}")
            continue
        diff = layer_diff(signed.files, want)
        if diff:
            reasons.append(f"signature {sd[:19]} covers other files than the manifest: " + "; ".join(diff))
            continue
        chosen = (sd, sig, signed)
        break
    if chosen is None:
        raise GateFailure("no signature verifies for this artifact: " + " | ".join(reasons))
    sd, sig, signed = chosen
    emit({"event": "pull.signature", "digest": sd, "signer": signed.signer})
    dest.mkdir(parents=True, exist_ok=False)
    for i, (path, layer_digest, size) in enumerate(layers, 1):
        store.fetch_blob_to(layer_digest, size, dest / path, path)
        emit({"event": "pull.blob", "index": i, "total": len(layers), "path": path, "size": size})
    (dest / SIGNATURE).parent.mkdir(parents=True, exist_ok=True)
    (dest / SIGNATURE).write_bytes(sig)
    return PulledBundle(
        root=dest,
        ref=str(ref.with_digest(digest)),
        digest=digest,
        layers=want,
        signed=signed,
        signature_digest=sd,
    )


def layer_diff(signed: dict[str, str], actual: dict[str, str]) -> list[str]:
    """Every difference between the signed files and the published ones (names and sha256)."""
    problems = [f"file {p!r} is published but not signed" for p in sorted(set(actual) - set(signed))]
    problems += [f"file {p!r} is signed but not published" for p in sorted(set(signed) - set(actual))]
    problems += [
        f"file {p!r} differs from what was signed: signed sha256:{signed[p]}, published sha256:{actual[p]}"
        for p in sorted(set(signed) & set(actual))
        if signed[p] != actual[p]
    ]
    return problems
