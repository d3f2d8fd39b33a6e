"""An on-disk OCI image layout store (no server needed)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gate.console import atomic_write_text
from gate.errors import GateFailure, InputError
from gate.oci._common import (
    _CHUNK,
    _DIGEST_RE,
    _MAX_MANIFEST_BYTES,
    _MAX_SMALL_BODY,
    INDEX_MEDIA_TYPE,
    REF_NAME_ANNOTATION,
    _descriptor,
    _digest_bytes,
    _json_object,
    _read_bounded,
    _referrers_tag,
)
from gate.oci.refs import OciRef
from gate.oci.store import Store, _update_referrers_index, referrer_list
from gate.signing import SIGNATURE_MEDIA_TYPE


class LayoutStore(Store):
    """An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/sha256/``).

    Blobs are written to a temporary name and renamed into place; ``index.json``
    is replaced atomically under a lock, so readers never see a half-written tag.
    """

    def __init__(self, root: Path, *, create: bool) -> None:
        self.root = root
        self.bytes_uploaded = 0
        layout = root / "oci-layout"
        if create and not os.path.lexists(layout):
            if root.exists() and (root.is_symlink() or not root.is_dir() or any(root.iterdir())):
                raise InputError(
                    f"{root} exists and is not an OCI image layout", hint="choose an empty directory"
                )
            (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            atomic_write_text(layout, json.dumps({"imageLayoutVersion": "1.0.0"}) + "\n")
        for p in (root, root / "blobs", root / "blobs" / "sha256"):
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                raise InputError(f"{root} is not an OCI image layout ({p.name} is missing)") from None
            if not stat.S_ISDIR(st.st_mode):
                raise InputError(f"{p} is not a directory (symlinks are refused): not an OCI image layout")
        if not os.path.lexists(layout):
            raise InputError(f"{root} is not an OCI image layout (no oci-layout file)")
        marker = _json_object(_read_bounded(layout, _MAX_SMALL_BODY), f"{layout}")
        if not isinstance(marker.get("imageLayoutVersion"), str):
            raise GateFailure(f"{layout} names no imageLayoutVersion")
        if create and not os.path.lexists(root / "index.json"):
            with self._locked():
                if not os.path.lexists(root / "index.json"):
                    self._write_index({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []})

    def _blob_path(self, digest: str) -> Path:
        if not _DIGEST_RE.match(digest):
            raise GateFailure(f"bad digest {digest!r}")
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".gate-lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_index(self) -> dict[str, Any]:
        return _json_object(_read_bounded(self.root / "index.json", _MAX_MANIFEST_BYTES), "index.json")

    def _write_index(self, index: dict[str, Any]) -> None:
        atomic_write_text(self.root / "index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")

    def has_blob(self, digest: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self._blob_path(digest)).st_mode)
        except FileNotFoundError:
            return False

    def put_blob(
        self, digest: str, size: int, *, path: Path | None = None, data: bytes | None = None
    ) -> None:
        target = self._blob_path(digest)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                if data is not None:
                    h.update(data)
                    out.write(data)
                else:
                    assert path is not None
                    with open(path, "rb") as src:
                        while chunk := src.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if "sha256:" + h.hexdigest() != digest:
                raise GateFailure(f"blob for {digest} changed while it was being published")
            os.replace(tmp, target)
            self.bytes_uploaded += size
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def open_blob(self, digest: str) -> Iterator[Iterator[bytes]]:
        p = self._blob_path(digest)
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise GateFailure(f"layout {self.root} has no blob {digest} (partial artifact)") from None
        except OSError as e:
            raise GateFailure(f"cannot read blob {digest}: {e.strerror} (symlinks are refused)") from None
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise GateFailure(f"blob {digest} of layout {self.root} is not a regular file")

            def chunks() -> Iterator[bytes]:
                while chunk := fh.read(_CHUNK):
                    yield chunk

            yield chunks()

    def put_manifest(self, raw: bytes, media_type: str, reference: str) -> dict[str, str]:
        digest = _digest_bytes(raw)
        if not self.has_blob(digest):
            self.put_blob(digest, len(raw), data=raw)
        obj = _json_object(raw, "manifest")
        desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(raw)}
        if obj.get("artifactType"):
            desc["artifactType"] = obj["artifactType"]
        with self._locked():
            index = self._read_index()
            manifests = list(index.get("manifests") or [])
            if _DIGEST_RE.match(reference):
                if not any(m.get("digest") == digest for m in manifests):
                    manifests.append(desc)
            else:
                # Moving a tag: drop it from whatever it named, then name the new manifest.
                kept = []
                for m in manifests:
                    ann = dict(m.get("annotations") or {})
                    if ann.get(REF_NAME_ANNOTATION) == reference:
                        continue
                    kept.append(m)
                kept.append({**desc, "annotations": {REF_NAME_ANNOTATION: reference}})
                manifests = kept
            index["manifests"] = manifests
            self._write_index(index)
        return {}

    def _entries(self) -> list[dict[str, Any]]:
        return referrer_list(self._read_index(), "index.json")

    def get_manifest(self, reference: str) -> bytes | None:
        digest: str | None = reference if _DIGEST_RE.match(reference) else None
        if digest is None:
            named = [m for m in self._entries() if _ref_name(m) == reference]
            if not named:
                return None
            if len({str(m.get("digest")) for m in named}) > 1:
                raise GateFailure(f"index.json names tag {reference!r} for several manifests")
            digest, _ = _descriptor(named[0], f"index.json entry {reference!r}", max_size=_MAX_MANIFEST_BYTES)
        if not self.has_blob(digest):
            return None
        return _read_bounded(self._blob_path(digest), _MAX_MANIFEST_BYTES)

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        # The referrers tag first (what gate writes, and what skopeo copies), then untagged
        # signature manifests listed in index.json (layouts written before the tag existed).
        found: list[dict[str, Any]] = []
        tagged = self.get_manifest(_referrers_tag(digest))
        if tagged is not None:
            found = referrer_list(_json_object(tagged, "referrers tag index"), "referrers tag index")
        seen = {str(m.get("digest")) for m in found}
        for m in self._entries():
            d = m.get("digest")
            if d in seen or m.get("artifactType") != SIGNATURE_MEDIA_TYPE or not isinstance(d, str):
                continue
            if not _DIGEST_RE.match(d) or not self.has_blob(d):
                continue
            seen.add(d)
            man = _json_object(_read_bounded(self._blob_path(d), _MAX_MANIFEST_BYTES), "manifest")
            subject = man.get("subject")
            if isinstance(subject, dict) and subject.get("digest") == digest:
                found.append({k: v for k, v in m.items() if k != "annotations"})
        return found

    def attach_referrer(self, subject: str, descriptor: dict[str, Any], headers: dict[str, str]) -> str:
        # The sha256-<hex> tag makes the signature reachable by standard clients (skopeo copies tags).
        _update_referrers_index(self, subject, descriptor)
        return "tag-schema"

    def tags(self) -> list[str]:
        return [n for n in (_ref_name(m) for m in self._entries()) if n]


def _ref_name(entry: dict[str, Any]) -> str | None:
    ann = entry.get("annotations")
    name = ann.get(REF_NAME_ANNOTATION) if isinstance(ann, dict) else None
    return name if isinstance(name, str) else None


def open_store(ref: OciRef, *, create: bool = False) -> Store:
    """The store a reference points at (a layout is created on publish when missing)."""
    if ref.kind == "layout":
        return LayoutStore(Path(ref.location), create=create)
    from gate.oci.registry import RegistryStore

    return RegistryStore(ref.location, ref.repository)
