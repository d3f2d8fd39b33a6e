"""This host as environments see it: gate's cache root, CUDA or not, local interpreters, wheels, uv, locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from gate.errors import EnvironmentBuildError


def gate_home() -> Path:
    """Return gate's cache root (``$GATE_HOME``, default ``~/.cache/gate``)."""
    root = os.environ.get("GATE_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gate"
    )
    return Path(root)


def has_cuda() -> bool:
    """Whether this host has an NVIDIA driver (decides CPU or CUDA builds of torch and vLLM)."""
    if os.environ.get("GATE_FORCE_CPU"):
        return False
    # An image build for GPU hosts runs without a driver but must get the CUDA builds.
    if os.environ.get("GATE_FORCE_CUDA"):
        return True
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def find_links() -> list[str]:
    """Local wheel directories to offer uv (uv ignores pip's configuration)."""
    raw = os.environ.get("GATE_FIND_LINKS") or os.environ.get("PIP_FIND_LINKS") or ""
    return [p for p in raw.split() if p]


def torch_requirement(version: str) -> str:
    """The torch requirement for this host: the ``+cpu`` build when there is no GPU.

    Without CUDA, asking for plain ``torch`` makes uv resolve PyPI's CUDA build
    (several GB); the CPU build comes from a local wheel directory.
    """
    if has_cuda():
        return f"torch=={version}"
    return f"torch=={version}+cpu"


def find_interpreter(version: str) -> Path:
    """Find a local CPython ``version`` (``"3.12"``); never downloads one."""
    override = os.environ.get(f"GATE_PYTHON{version.replace('.', '_')}")
    if override:
        return Path(override)
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(sys.executable).resolve() if not _in_venv() else Path(_base_python())
    candidates: list[Path] = []
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(Path(pyenv_root, "versions").glob(f"{version}.*/bin/python{version}"), reverse=True)
    for prefix in ("/usr/bin", "/usr/local/bin"):
        candidates.append(Path(prefix, f"python{version}"))
    for c in candidates:
        if c.exists() and os.access(c, os.X_OK):
            return c
    found = shutil.which(f"python{version}")
    # The pyenv shim refuses versions that are not selected globally: skip it.
    if found and ".pyenv/shims" not in found:
        return Path(found)
    raise EnvironmentBuildError(
        f"no Python {version} interpreter found on this machine",
        hint=f"install CPython {version} or set GATE_PYTHON{version.replace('.', '_')} to its path",
    )


def _in_venv() -> bool:
    return sys.prefix != getattr(sys, "base_prefix", sys.prefix)


def _base_python() -> str:
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base if base.exists() else Path(sys.executable).resolve())


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise EnvironmentBuildError("uv is not installed", hint="pip install uv (gate depends on it)")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created with its directory) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def platform_as(cuda: bool) -> Iterator[None]:
    """Describe environments as on a CPU or a CUDA host (to lock both from one machine)."""
    saved = {k: os.environ.get(k) for k in ("GATE_FORCE_CPU", "GATE_FORCE_CUDA")}
    os.environ.pop("GATE_FORCE_CPU" if cuda else "GATE_FORCE_CUDA", None)
    os.environ["GATE_FORCE_CUDA" if cuda else "GATE_FORCE_CPU"] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
