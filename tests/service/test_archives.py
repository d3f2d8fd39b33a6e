"""Hostile archives are refused with a message naming the problem, and nothing is left half-unpacked."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from gate.service.archives import ArchiveError, find_run_dir, unpack_archive
from gate.service.settings import ArchiveLimits
from tests.fixtures.service import write_run_dir

LIMITS = ArchiveLimits(max_upload_bytes=50 << 20, max_total_bytes=20 << 20, max_files=50, max_ratio=50.0)


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _assert_clean(parent: Path) -> None:
    assert [p.name for p in parent.iterdir() if p.name.startswith(".staging")] == []
    assert not (parent / "out").exists()


def test_a_run_archive_unpacks_and_the_run_dir_is_found(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path / "src")
    archive = tmp_path / "run.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(run, arcname="run")
    out = unpack_archive(archive, tmp_path / "out", LIMITS)
    found = find_run_dir(out)
    assert (found / "adapter" / "adapter_model.safetensors").stat().st_size == (
        run / "adapter" / "adapter_model.safetensors"
    ).stat().st_size
    assert (found / "run.json").read_bytes() == (run / "run.json").read_bytes()


def test_a_zip_run_archive_unpacks(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path / "src")
    archive = tmp_path / "run.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in run.rglob("*"):
            zf.write(p, p.relative_to(run).as_posix())
    out = unpack_archive(archive, tmp_path / "out", LIMITS)
    assert find_run_dir(out) == out


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt"])
def test_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    archive = _tar(tmp_path / "bad.tgz", [(_file("ok.txt"), b"ok"), (_file(name), b"pwned")])
    with pytest.raises(ArchiveError, match=r"path traversal|absolute path"):
        unpack_archive(archive, tmp_path / "out", LIMITS)
    assert not (tmp_path / "evil.txt").exists()
    _assert_clean(tmp_path)


def test_symbolic_links_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("adapter/adapter_model.safetensors")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = _tar(tmp_path / "bad.tgz", [(link, None)])
    with pytest.raises(ArchiveError, match="symbolic link to '/etc/passwd'; links are refused"):
        unpack_archive(archive, tmp_path / "out", LIMITS)
    _assert_clean(tmp_path)


def test_hard_links_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("copy")
    link.type, link.linkname = tarfile.LNKTYPE, "orig"
    archive = _tar(tmp_path / "bad.tgz", [(_file("orig"), b"x"), (link, None)])
    with pytest.raises(ArchiveError, match="hard link"):
        unpack_archive(archive, tmp_path / "out", LIMITS)
    _assert_clean(tmp_path)


def test_zip_symlinks_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("run.json")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        unpack_archive(archive, tmp_path / "out", LIMITS)
    _assert_clean(tmp_path)


def test_devices_are_refused(tmp_path: Path) -> None:
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    archive = _tar(tmp_path / "bad.tgz", [(dev, None)])
    with pytest.raises(ArchiveError, match="special file"):
        unpack_archive(archive, tmp_path / "out", LIMITS)


def test_a_gzip_bomb_is_stopped_by_the_ratio_before_the_disk_fills(tmp_path: Path) -> None:
    # 19 MiB of zeros compresses to ~20 KB: ratio ~1000, far above 50; under the 20 MiB total.
    archive = _tar(tmp_path / "bomb.tgz", [(_file("zeros"), b"\0" * (19 << 20))])
    assert archive.stat().st_size < 100_000
    with pytest.raises(ArchiveError, match="decompression bomb"):
        unpack_archive(archive, tmp_path / "out", LIMITS)
    _assert_clean(tmp_path)


def test_a_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(10):
            zf.writestr(f"z{i}", b"\0" * (5 << 20))
    with pytest.raises(ArchiveError, match=r"declares \d+ bytes unpacked|decompression bomb"):
        unpack_archive(archive, tmp_path / "out", LIMITS)
    _assert_clean(tmp_path)


def test_more_unpacked_bytes_than_allowed_are_refused_even_when_incompressible(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "big.tar", [(_file(f"r{i}"), os.urandom(11 << 20)) for i in range(2)], mode="w")
    with pytest.raises(ArchiveError, match="unpacks to more than"):
        unpack_archive(archive, tmp_path / "out", LIMITS)
    _assert_clean(tmp_path)


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "many.tgz", [(_file(f"f{i}"), b"x") for i in range(60)])
    with pytest.raises(ArchiveError, match="more than 50 members"):
        unpack_archive(archive, tmp_path / "out", LIMITS)
    _assert_clean(tmp_path)


def test_garbage_is_not_an_archive(tmp_path: Path) -> None:
    archive = tmp_path / "junk.tgz"
    archive.write_bytes(os.urandom(4096))
    with pytest.raises(ArchiveError, match="not a readable tar archive"):
        unpack_archive(archive, tmp_path / "out", LIMITS)
    _assert_clean(tmp_path)


def test_an_archive_without_a_run_is_refused_by_name(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "norun.tgz", [(_file("README"), b"hello")])
    out = unpack_archive(archive, tmp_path / "out", LIMITS)
    with pytest.raises(ArchiveError, match=r"no training run: expected run\.json"):
        find_run_dir(out)


def test_a_zip_written_by_writestr_with_no_file_type_bits_is_accepted(tmp_path: Path) -> None:
    # ZipFile.writestr(name, data) records permissions only (0o600, type bits 0): a plain file.
    run = write_run_dir(tmp_path / "src")
    archive = tmp_path / "plain.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(run.rglob("*")):
            if p.is_file():
                zf.writestr(str(p.relative_to(run)), p.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        assert all((i.external_attr >> 16) & 0o170000 == 0 for i in zf.infolist())
    out = unpack_archive(archive, tmp_path / "out", LIMITS)
    assert find_run_dir(out) == out and (out / "adapter" / "adapter_config.json").is_file()
