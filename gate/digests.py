"""sha256 digests of files and directories, streamed with bounded memory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["file_sha256", "files_digest", "sha256_bytes"]

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def files_digest(root: Path, names: Iterable[str]) -> str:
    """One digest over the named files under ``root`` (name and content; absent ones skipped).

    The names are sorted so the digest does not depend on the caller's order.
    """
    h = hashlib.sha256()
    for name in sorted(set(names)):
        p = root / name
        if p.is_file() and not p.is_symlink():
            h.update(f"{name}\0{file_sha256(p)}\n".encode())
    return "sha256:" + h.hexdigest()
