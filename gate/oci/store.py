"""The Store interface: content-addressed blobs and manifests, with tags and referrers."""

from __future__ import annotations

import contextlib
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gate.errors import GateFailure
from gate.oci._common import (
    _MAX_ENTRIES,
    INDEX_MEDIA_TYPE,
    _canonical,
    _json_object,
    _mismatch,
    _referrers_tag,
)


class Store(ABC):
    """A content-addressed place for blobs and manifests, with tags and referrers."""

    #: Bytes of blob data sent by this store object (for benchmarks and reports).
    bytes_uploaded: int = 0

    @abstractmethod
    def has_blob(self, digest: str) -> bool:
        """Whether the store already holds blob ``digest``."""

    @abstractmethod
    def put_blob(
        self, digest: str, size: int, *, path: Path | None = None, data: bytes | None = None
    ) -> None:
        """Store a blob from a file or bytes (the store verifies the digest)."""

    @abstractmethod
    def open_blob(self, digest: str) -> contextlib.AbstractContextManager[Iterator[bytes]]:
        """Stream blob ``digest`` (chunks); the caller checks digest and size."""

    @abstractmethod
    def put_manifest(self, raw: bytes, media_type: str, reference: str) -> dict[str, str]:
        """Put manifest bytes under ``reference`` (a digest or a tag); return response headers."""

    @abstractmethod
    def get_manifest(self, reference: str) -> bytes | None:
        """The raw manifest under ``reference`` (digest or tag), or None if absent."""

    @abstractmethod
    def referrers(self, digest: str) -> list[dict[str, Any]]:
        """Descriptors of manifests whose ``subject`` is ``digest``."""

    @abstractmethod
    def attach_referrer(self, subject: str, descriptor: dict[str, Any], headers: dict[str, str]) -> str:
        """Make a just-pushed referrer discoverable; return how ("api" or "tag-schema" or "index")."""

    def tags(self) -> list[str]:
        """Every tag in the repository (for inspection and tests)."""
        return []

    def fetch_blob_bytes(self, digest: str, size: int, max_bytes: int, what: str = "blob") -> bytes:
        """Read a small blob fully, checking size and digest."""
        if size > max_bytes:
            raise GateFailure(f"{what} {digest} is {size} bytes, over the {max_bytes} byte limit")
        h = hashlib.sha256()
        parts: list[bytes] = []
        total = 0
        with self.open_blob(digest) as chunks:
            for chunk in chunks:
                total += len(chunk)
                if total > size:
                    raise GateFailure(f"{what} {digest} is larger than its descriptor says ({size} bytes)")
                h.update(chunk)
                parts.append(chunk)
        got = "sha256:" + h.hexdigest()
        if total != size:
            raise GateFailure(f"{what} {digest} is {total} bytes, its descriptor says {size}")
        if got != digest:
            raise GateFailure(_mismatch(what, digest, got))
        return b"".join(parts)

    def fetch_blob_to(self, digest: str, size: int, dest: Path, name: str) -> None:
        """Stream a blob into ``dest`` (created exclusively), checking size and digest as it streams."""
        h = hashlib.sha256()
        total = 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh, self.open_blob(digest) as chunks:
            for chunk in chunks:
                total += len(chunk)
                if total > size:
                    raise GateFailure(
                        f"layer {name!r} is larger than its descriptor says ({size} bytes): refused"
                    )
                h.update(chunk)
                fh.write(chunk)
        got = "sha256:" + h.hexdigest()
        if total != size:
            raise GateFailure(f"layer {name!r} is {total} bytes, its descriptor says {size}")
        if got != digest:
            raise GateFailure(
                _mismatch(f"layer {name!r}", digest, got),
                hint="the registry content was tampered with or corrupted; do not use this artifact",
            )


def referrer_list(index: dict[str, Any], what: str) -> list[dict[str, Any]]:
    """The descriptors an index lists (bounded in count, each an object)."""
    manifests = index.get("manifests", [])
    if not isinstance(manifests, list):
        raise GateFailure(f"{what}: 'manifests' is not a list")
    if len(manifests) > _MAX_ENTRIES:
        raise GateFailure(f"{what} lists {len(manifests)} manifests (limit {_MAX_ENTRIES})")
    return [m for m in manifests if isinstance(m, dict)]


def _update_referrers_index(store: Store, subject: str, descriptor: dict[str, Any]) -> None:
    tag = _referrers_tag(subject)
    raw = store.get_manifest(tag)
    index = _json_object(raw, "referrers tag index") if raw else {}
    listed = referrer_list(index, "referrers tag index")
    manifests = [m for m in listed if m.get("digest") != descriptor["digest"]]
    manifests.append(descriptor)
    new = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}
    store.put_manifest(_canonical(new), INDEX_MEDIA_TYPE, tag)
