"""Publish a signed bundle: blobs, manifest by digest, signature referrer, and only then the tag."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate.bundle import SIGNATURE, VERDICT, list_files, read_json
from gate.errors import InputError, ServerError
from gate.oci._common import (
    _EMPTY,
    _EMPTY_DIGEST,
    _MAX_SIGNATURE_BYTES,
    MANIFEST_MEDIA_TYPE,
    Event,
    _digest_bytes,
    _read_bounded,
)
from gate.oci.layout import open_store
from gate.oci.modelpack import _signature_manifest, build_manifest
from gate.oci.refs import OciRef
from gate.signing import SIGNATURE_MEDIA_TYPE


@dataclass(frozen=True)
class PublishResult:
    """Where a bundle went: the pinned reference, digests and how much was uploaded."""

    ref: str
    digest: str
    signature_digest: str
    referrer_via: str
    blobs_total: int
    blobs_uploaded: int
    bytes_uploaded: int
    tag: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (no credentials: references hold none)."""
        return dict(self.__dict__)


def publish(bundle: Path, ref: OciRef, *, on_event: Event | None = None) -> PublishResult:
    """Publish a signed bundle to ``ref`` by digest, attach its signature, then move the tag.

    The bundle must hold its signature. Each step emits an event
    (``publish.blob``, ``publish.manifest``, ``publish.referrer``, ``publish.tag``).
    """
    emit = on_event or (lambda _e: None)
    sig_path = bundle / SIGNATURE
    if not sig_path.is_file() or sig_path.is_symlink():
        raise InputError(
            f"bundle {bundle} is not signed: refusing to publish it", hint="gate release signs first"
        )
    if ref.digest:
        raise InputError(f"publish to a tag, not a digest: {ref}")
    files = list_files(bundle)
    verdict = read_json(bundle / VERDICT)
    if not isinstance(verdict, dict):
        raise InputError(f"{bundle / VERDICT} is not a verdict")
    sig = _read_bounded(sig_path, _MAX_SIGNATURE_BYTES)
    # The release's name: the repository (a layout: its directory's name), its version the tag.
    name = ref.repository if ref.kind == "registry" else Path(ref.location).resolve().name
    config, manifest = build_manifest(bundle, files, verdict, name=name or "adapter", version=ref.tag)
    manifest_digest = _digest_bytes(manifest)
    store = open_store(ref, create=True)

    blobs: list[tuple[str, int, Path | None, bytes | None, str]] = [
        (_digest_bytes(config), len(config), None, config, "config")
    ]
    blobs += [("sha256:" + f.sha256, f.size, bundle / f.path, None, f.path) for f in files]
    blobs += [
        (_EMPTY_DIGEST, len(_EMPTY), None, _EMPTY, "signature config"),
        (_digest_bytes(sig), len(sig), None, sig, "signature"),
    ]
    uploaded = 0
    for i, (digest, size, path, data, name) in enumerate(blobs, 1):
        present = store.has_blob(digest)
        if not present:
            store.put_blob(digest, size, path=path, data=data)
            uploaded += 1
        emit(
            {
                "event": "publish.blob",
                "index": i,
                "total": len(blobs),
                "path": name,
                "digest": digest,
                "size": size,
                "uploaded": not present,
            }
        )

    store.put_manifest(manifest, MANIFEST_MEDIA_TYPE, manifest_digest)
    emit({"event": "publish.manifest", "digest": manifest_digest})

    sig_manifest = _signature_manifest(sig, manifest_digest, len(manifest))
    sig_digest = _digest_bytes(sig_manifest)
    headers = store.put_manifest(sig_manifest, MANIFEST_MEDIA_TYPE, sig_digest)
    descriptor = {
        "mediaType": MANIFEST_MEDIA_TYPE,
        "digest": sig_digest,
        "size": len(sig_manifest),
        "artifactType": SIGNATURE_MEDIA_TYPE,
    }
    via = store.attach_referrer(manifest_digest, descriptor, headers)
    if not any(d.get("digest") == sig_digest for d in store.referrers(manifest_digest)):
        raise ServerError(
            f"the signature referrer of {manifest_digest} is not discoverable after attaching it"
        )
    emit({"event": "publish.referrer", "digest": sig_digest, "subject": manifest_digest, "via": via})

    if ref.tag:
        store.put_manifest(manifest, MANIFEST_MEDIA_TYPE, ref.tag)
        emit({"event": "publish.tag", "tag": ref.tag, "digest": manifest_digest})
    return PublishResult(
        ref=str(ref.with_digest(manifest_digest)),
        digest=manifest_digest,
        signature_digest=sig_digest,
        referrer_via=via,
        blobs_total=len(blobs),
        blobs_uploaded=uploaded,
        bytes_uploaded=store.bytes_uploaded,
        tag=ref.tag,
    )
