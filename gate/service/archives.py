"""Unpack uploaded archives without trusting them.

Refused: absolute names, ``..``, links (symbolic and hard), devices and other
special files, encrypted zip members, duplicate names, more than
``max_files`` members, more than ``max_total_bytes`` unpacked, or an
unpacked/compressed ratio above ``max_ratio`` (bombs). Sizes are counted on
the bytes actually written, not only on what the headers claim. Everything is
unpacked into a fresh staging directory that is renamed into place only when the
whole archive passed; on any error it is removed, so nothing is half-unpacked.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from gate.errors import InputError
from gate.service.settings import ArchiveLimits

__all__ = ["ArchiveError", "find_run_dir", "unpack_archive"]

_CHUNK = 1 << 20


class ArchiveError(InputError):
    """The archive is malformed or breaks one of the limits."""


class _Budget:
    def __init__(self, archive_size: int, limits: ArchiveLimits, name: str) -> None:
        self.limits = limits
        self.archive_size = max(archive_size, 1)
        self.name = name
        self.files = 0
        self.total = 0

    def member(self, member: str) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise ArchiveError(
                f"{self.name} has more than {self.limits.max_files} members", hint="pack fewer files"
            )

    def add(self, n: int, member: str) -> None:
        self.total += n
        if self.total > self.limits.max_total_bytes:
            raise ArchiveError(
                f"{self.name} unpacks to more than {self.limits.max_total_bytes} bytes "
                f"(at member {member!r})",
                hint="the limit is GATE_SERVICE_MAX_UNPACKED_BYTES",
            )
        # Small archives legitimately compress well; the ratio only bites past 1 MiB unpacked.
        if self.total > (1 << 20) and self.total > self.limits.max_ratio * self.archive_size:
            raise ArchiveError(
                f"{self.name} looks like a decompression bomb: {self.total} bytes unpacked from "
                f"{self.archive_size} (ratio above {self.limits.max_ratio:g}) at member {member!r}",
                hint="the limit is GATE_SERVICE_MAX_RATIO",
            )


def _safe_name(raw: str, archive: str) -> PurePosixPath | None:
    """The member's relative path, or None for the archive root; refuses escapes."""
    if "\x00" in raw or "\\" in raw:
        raise ArchiveError(f"{archive}: member name {raw!r} has a NUL or backslash")
    p = PurePosixPath(raw)
    if p.is_absolute():
        raise ArchiveError(f"{archive}: member {raw!r} has an absolute path", hint="paths must be relative")
    parts = [part for part in p.parts if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(
            f"{archive}: member {raw!r} escapes the archive with '..' (path traversal refused)"
        )
    if not parts:
        return None
    return PurePosixPath(*parts)


def _write(src: IO[bytes], dest: Path, budget: _Budget, member: str) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            budget.add(len(chunk), member)
            out.write(chunk)


def _mkparents(root: Path, rel: PurePosixPath) -> Path:
    target = root.joinpath(*rel.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _unpack_tar(archive: Path, root: Path, budget: _Budget) -> None:
    try:
        # Stream mode: members are read in order, nothing is seeked or buffered whole.
        with tarfile.open(archive, mode="r|*") as tf:
            for m in tf:
                rel = _safe_name(m.name, budget.name)
                budget.member(m.name)
                if m.issym() or m.islnk():
                    raise ArchiveError(
                        f"{budget.name}: member {m.name!r} is a {'symbolic' if m.issym() else 'hard'} link "
                        f"to {m.linkname!r}; links are refused"
                    )
                if not (m.isreg() or m.isdir()):
                    raise ArchiveError(
                        f"{budget.name}: member {m.name!r} is a special file (type {m.type!r})"
                    )
                if rel is None:
                    continue
                if m.size > budget.limits.max_total_bytes:
                    raise ArchiveError(
                        f"{budget.name}: member {m.name!r} declares {m.size} bytes, over the limit"
                    )
                target = _mkparents(root, rel)
                if m.isdir():
                    target.mkdir(exist_ok=True)
                    continue
                src = tf.extractfile(m)
                if src is None:  # pragma: no cover - regular files always have data
                    raise ArchiveError(f"{budget.name}: member {m.name!r} has no data")
                try:
                    _write(src, target, budget, m.name)
                except FileExistsError as e:
                    raise ArchiveError(f"{budget.name}: member {m.name!r} appears twice") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, ArchiveError):
            raise
        raise ArchiveError(f"{budget.name} is not a readable tar archive: {e}") from e


def _unpack_zip(archive: Path, root: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > budget.limits.max_files:
                raise ArchiveError(
                    f"{budget.name} has {len(infos)} members, more than {budget.limits.max_files}"
                )
            declared = sum(i.file_size for i in infos)
            if declared > budget.limits.max_total_bytes:
                raise ArchiveError(
                    f"{budget.name} declares {declared} bytes unpacked, "
                    f"more than {budget.limits.max_total_bytes}"
                )
            for info in infos:
                rel = _safe_name(info.filename, budget.name)
                budget.member(info.filename)
                # Unix mode bits, when the writer recorded a file type at all: ZipFile.writestr
                # stores permissions only (type bits 0), which is a plain file, not a special one.
                kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
                if kind == stat.S_IFLNK:
                    raise ArchiveError(
                        f"{budget.name}: member {info.filename!r} is a symbolic link; links are refused"
                    )
                if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise ArchiveError(f"{budget.name}: member {info.filename!r} is a special file")
                if info.flag_bits & 0x1:
                    raise ArchiveError(f"{budget.name}: member {info.filename!r} is encrypted")
                if rel is None:
                    continue
                target = _mkparents(root, rel)
                if info.is_dir():
                    target.mkdir(exist_ok=True)
                    continue
                with zf.open(info) as src:
                    try:
                        _write(src, target, budget, info.filename)
                    except FileExistsError as e:
                        raise ArchiveError(f"{budget.name}: member {info.filename!r} appears twice") from e
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as e:
        if isinstance(e, ArchiveError):
            raise
        raise ArchiveError(f"{budget.name} is not a readable zip archive: {e}") from e


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    staging = dest.parent / f".staging-{dest.name}-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def unpack_archive(archive: Path, dest: Path, limits: ArchiveLimits, *, name: str | None = None) -> Path:
    """Unpack a tar (optionally gzip/bz2/xz) or zip ``archive`` into the new directory ``dest``."""
    label = name or archive.name
    if dest.exists():
        raise ArchiveError(f"{dest} already exists")
    with archive.open("rb") as fh:
        magic = fh.read(4)
    size = archive.stat().st_size
    if size == 0:
        raise ArchiveError(f"{label} is empty")
    budget = _Budget(size, limits, label)
    with _staging(dest) as staging:
        if magic.startswith(b"PK\x03\x04") or magic.startswith(b"PK\x05\x06"):
            _unpack_zip(archive, staging, budget)
        else:
            _unpack_tar(archive, staging, budget)
        if budget.files == 0:
            raise ArchiveError(f"{label} has no members")
        staging.rename(dest)
    return dest


def find_run_dir(root: Path) -> Path:
    """The training run directory inside an unpacked archive: ``run.json`` at the root or one level down."""
    if (root / "run.json").is_file():
        return root
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "run.json").is_file():
        return entries[0]
    raise ArchiveError(
        "the archive holds no training run: expected run.json (and adapter/) at its root "
        "or in its single top-level directory",
        hint="archive a RUN_DIR written by `gate train`: tar czf run.tgz -C RUN_DIR .",
    )
