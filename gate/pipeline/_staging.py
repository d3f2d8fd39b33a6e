"""The bundle directory on disk: one writer at a time, the adapter read safely, staging, resume.

The bundle is assembled in a staging directory beside ``out_dir`` and moved into
place in one rename (:func:`_replace_dir`); a killed run's leftovers are swept
under the lock. A signed bundle already in place for the same adapter and
contract is resumed (:func:`_resumable`) instead of gated again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gate.bundle import (
    CHAT_TEMPLATE,
    CONTRACT,
    CONTRACT_FILES,
    SIGNATURE,
    VERDICT,
    check_relpath,
    read_verdict,
)
from gate.console import atomic_write_text
from gate.errors import Error, InputError
from gate.signing import SigningConfig, TrustPolicy, verify_signature


@contextlib.contextmanager
def _release_lock(out_dir: Path) -> Iterator[None]:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = out_dir.parent / f".{out_dir.name}.lock"
    with open(lock, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another release is writing {out_dir}", hint="wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _adapter_files(adapter_dir: Path) -> list[Path]:
    if adapter_dir.is_symlink() or not adapter_dir.is_dir():
        raise InputError(
            f"{adapter_dir} is not an adapter directory", hint="pass the run directory (RUN_DIR/adapter)"
        )
    files: list[Path] = []
    for entry in sorted(adapter_dir.iterdir()):
        if entry.is_symlink():
            raise InputError(
                f"adapter holds a symlink: {entry.name}", hint="copy the real file into the adapter dir"
            )
        if entry.is_dir() or entry.name.startswith("."):
            continue  # checkpoints and dotfiles are not part of the released adapter
        if entry.name == "gate":
            raise InputError("adapter holds a file named 'gate', which the bundle reserves")
        check_relpath(entry.name)
        files.append(entry)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise InputError(f"{adapter_dir} has no adapter_config.json")
    return files


def _public_key_file(cfg: SigningConfig, directory: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    assert cfg.private_key is not None
    key = serialization.load_pem_private_key(
        cfg.private_key.read_bytes(), cfg.key_password.encode() if cfg.key_password else None
    )
    path = directory / "public.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def _resumable(out_dir: Path, cfg: SigningConfig, adapter_digest: str, contract_sha: str) -> bool:
    """Whether ``out_dir`` already holds this release, signed with this key (then only publish remains)."""
    if cfg.method != "key" or not (out_dir / SIGNATURE).is_file() or not (out_dir / VERDICT).is_file():
        return False
    try:
        verdict = read_verdict(out_dir)
        if (
            verdict.problems()
            or verdict.adapter_digest != adapter_digest
            or verdict.contract.sha256 != contract_sha
        ):
            return False
        with tempfile.TemporaryDirectory(prefix="gate-resume-") as tmp:
            verify_signature(out_dir, TrustPolicy(method="key", public_key=_public_key_file(cfg, Path(tmp))))
    except Error:
        return False
    return True


def _replace_dir(staging: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _sweep(out_dir: Path) -> None:
    # Leftovers of a killed run (we hold the lock, so nothing else is using them).
    for pattern in (f".{out_dir.name}.staging-*", f".{out_dir.name}.old-*"):
        for p in out_dir.parent.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


def _stage_contract(contract: Any, contract_path: Path, bundle: Path) -> None:
    """Copy the contract, every file it references and the served template into the bundle."""
    shutil.copyfile(contract_path, bundle / CONTRACT, follow_symlinks=False)
    for name, path in contract.referenced_files().items():
        target = bundle / CONTRACT_FILES / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target, follow_symlinks=False)
    atomic_write_text(bundle / CHAT_TEMPLATE, contract.prompt.chat_template)
