"""sha256 digests of files and directories, streamed with bounded memory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["file_sha256", "files_digest", "listing_digest", "sha256_bytes"]

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


def listing_digest(domain: str, entries: Mapping[str, str]) -> str:
    """Hex sha256 over ``name -> hex digest`` entries in sorted order, under a ``domain`` label.

    The label keeps digests of different things (a contract and its files, a
    staged bundle) from ever being equal by construction.
    """
    h = hashlib.sha256(f"{domain}\n".encode())
    for name in sorted(entries):
        h.update(f"{name}\0{entries[name]}\n".encode())
    return h.hexdigest()
