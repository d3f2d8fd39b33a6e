"""Committed lock files of the isolated environments: made with uv, installed with hashes required.

An environment is fully described by its lock: every distribution pinned to one version with the
sha256 of each file it may be installed from (``uv pip compile --generate-hashes``), one lock per
environment, Python version and platform (``cpu`` or ``cuda``), committed under ``gate/locks/``
and shipped in the wheel. Two machines therefore build the same set, and the lock's digest is the
environment's cache key (:func:`gate.envs.env_dir`).

``gate env lock NAME`` refreshes a lock: it resolves the spec's top-level pins again, keeping every
other version the current lock has (uv reads the existing output file as its preferences) unless
``--upgrade`` is given, and checks that a local wheel offered through find-links (CPU torch on
these machines) has a hash the lock records: the lock holds the official wheels' hashes, so a
GitHub runner reading PyTorch's wheel page verifies the same file.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from gate.errors import EnvironmentBuildError

__all__ = [
    "LOCK_DIR",
    "Lock",
    "compile_lock",
    "lock_dir",
    "lock_name",
    "read_lock",
]

#: Where the committed locks live (inside the package, so a wheel install has them too).
LOCK_DIR = Path(__file__).resolve().parent / "locks"

#: The wheel platform a lock is resolved for: x86_64 Linux, glibc 2.35 or newer (Ubuntu 22.04+,
#: Debian 12, GitHub's ubuntu-latest).
TARGET_PLATFORM = "x86_64-manylinux_2_35"

#: Installed into every environment from its lock (in place of uv's unpinned ``--seed``).
SEED = ("pip", "setuptools", "wheel")

_NO_DEPS_MARK = "# installed without their dependencies (--no-deps):"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
_MAX_LOCK_BYTES = 4 << 20


def lock_dir() -> Path:
    """The lock directory in use (``GATE_LOCK_DIR`` overrides the shipped one)."""
    override = os.environ.get("GATE_LOCK_DIR")
    return Path(override) if override else LOCK_DIR


def lock_name(name: str, python: str, cuda: bool) -> str:
    """File name of the lock of environment ``name`` for ``python`` on CPU or CUDA hosts."""
    return f"{name}-py{python.replace('.', '')}-{'cuda' if cuda else 'cpu'}.txt"


@dataclass(frozen=True)
class Lock:
    """A parsed lock file: its bytes' digest and every pinned distribution with its hashes."""

    path: Path
    sha256: str
    pins: dict[str, str]
    hashes: dict[str, frozenset[str]]

    def stale_against(self, requirements: list[str]) -> list[str]:
        """The spec requirements this lock does not satisfy (a pin changed since it was made)."""
        stale = []
        for raw in requirements:
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                stale.append(raw)
                continue
            have = self.pins.get(canonicalize_name(req.name))
            if have is None or not req.specifier.contains(have, prereleases=True):
                stale.append(raw)
        return stale


def read_lock(path: Path) -> Lock:
    """Parse ``path``; a missing lock or an entry without a pin and a hash is an error."""
    if not path.is_file():
        raise EnvironmentBuildError(
            f"no lock file {path.name} in {path.parent}",
            hint=f"make it with `gate env lock {path.name.rsplit('-py', 1)[0]}` in a checkout of gate",
        )
    data = path.read_bytes()
    if len(data) > _MAX_LOCK_BYTES:
        raise EnvironmentBuildError(f"lock file {path} is larger than {_MAX_LOCK_BYTES >> 20} MiB")
    pins: dict[str, str] = {}
    hashes: dict[str, frozenset[str]] = {}
    current: str | None = None
    for line in data.decode("utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pin = _PIN.match(stripped)
        if pin:
            current = canonicalize_name(pin.group(1))
            pins[current] = pin.group(3)
            hashes[current] = frozenset()
        elif not stripped.startswith("--hash="):
            raise EnvironmentBuildError(f"{path.name}: not an exact pin: {stripped[:120]!r}")
        if current is not None:
            hashes[current] = hashes[current] | frozenset(_HASH.findall(stripped))
    unhashed = sorted(n for n, h in hashes.items() if not h)
    if not pins or unhashed:
        raise EnvironmentBuildError(
            f"{path.name}: every entry needs a pinned version and a sha256 hash "
            f"({', '.join(unhashed[:5]) or 'no entries'})",
            hint="regenerate it with `gate env lock`",
        )
    return Lock(path=path, sha256=hashlib.sha256(data).hexdigest(), pins=pins, hashes=hashes)


def compile_lock(
    *,
    uv: str,
    title: str,
    python: str,
    requirements: list[str],
    no_deps: list[str],
    find_links: list[str],
    out: Path,
    upgrade: bool = False,
    env: dict[str, str] | None = None,
) -> Lock:
    """Resolve ``requirements`` (and ``no_deps`` alone) with hashes into ``out``.

    An existing ``out`` is kept as uv's preferences, so only what the spec changed moves.
    """
    links: list[str] = []
    for d in find_links:
        links += ["--find-links", d]
    common = [
        "--generate-hashes",
        "--no-header",
        "--python-version",
        python,
        "--python-platform",
        TARGET_PLATFORM,
        *links,
    ]
    previous = out.read_text(encoding="utf-8") if out.is_file() else ""
    with tempfile.TemporaryDirectory(prefix="gate-lock-") as tmp:
        work = Path(tmp)
        (work / "requirements.in").write_text("\n".join([*requirements, *SEED]) + "\n")
        main = work / "requirements.txt"
        if previous and not upgrade:
            # Only the resolved part is a preference; the no-deps tail is made again below.
            main.write_text(previous.split(_NO_DEPS_MARK, 1)[0])
        argv = [uv, "pip", "compile", "--quiet", "requirements.in", "-o", "requirements.txt", *common]
        if upgrade:
            argv.append("--upgrade")
        _run(argv, work, env, title)
        body = main.read_text(encoding="utf-8")
        if no_deps:
            (work / "no-deps.in").write_text("\n".join(no_deps) + "\n")
            argv = [uv, "pip", "compile", "--quiet", "no-deps.in", "-o", "no-deps.txt", "--no-deps", *common]
            _run(argv, work, env, title)
            body += f"{_NO_DEPS_MARK}\n" + (work / "no-deps.txt").read_text(encoding="utf-8")
    header = (
        f"# gate environment lock: {title}\n"
        "# Made by `gate env lock` (uv pip compile --generate-hashes); do not edit by hand.\n"
        "# Installed with hashes required (uv pip sync --require-hashes); its sha256 names the environment.\n"
    )
    tmp_out = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out.write_text(header + body, encoding="utf-8")
    lock = read_lock(tmp_out)
    _check_local_wheels(lock, find_links)
    os.replace(tmp_out, out)
    return read_lock(out)


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None, title: str) -> None:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise EnvironmentBuildError(
            f"locking {title} failed (uv exit {done.returncode})", hint=done.stderr.strip()[-2000:]
        )


def _check_local_wheels(lock: Lock, find_links: list[str]) -> None:
    """A local wheel that the lock pins must be one of the files the lock hashes (the official one)."""
    for d in find_links:
        folder = Path(d)
        if not folder.is_dir():
            continue
        for wheel in sorted(folder.glob("*.whl")):
            name, _, rest = wheel.name.partition("-")
            version = rest.partition("-")[0]
            key = canonicalize_name(name)
            if lock.pins.get(key) != version:
                continue
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            if digest not in lock.hashes[key]:
                raise EnvironmentBuildError(
                    f"the local wheel {wheel} (sha256 {digest}) is not a file the lock records for {key}",
                    hint="a find-links folder must hold the official wheels, byte for byte",
                )
