"""What an environment holds (:class:`EnvSpec`, :class:`Install`) and a ready one (:class:`Env`)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gate.envlock import Lock, lock_dir, lock_name, read_lock
from gate.envs._host import has_cuda
from gate.errors import EnvironmentBuildError

#: Version of the cache-key recipe; 2: the key is the lock's digest, not the spec's.
_SPEC_FORMAT = 2


@dataclass(frozen=True)
class Install:
    """One ``uv pip install`` step of an environment build."""

    requirements: tuple[str, ...]
    no_deps: bool = False


@dataclass(frozen=True)
class EnvSpec:
    """What an isolated environment holds; its digest names the cached directory."""

    name: str
    installs: tuple[Install, ...]
    python: str = "3.11"
    #: Distributions removed after install (PyPI's torchvision breaks CPU torch).
    remove: tuple[str, ...] = ()
    #: Globs under site-packages deleted after install (e.g. compiled libs that break import).
    remove_globs: tuple[str, ...] = ()
    #: Packages whose versions are recorded in run records.
    key_packages: tuple[str, ...] = ()
    #: Environment variables set when running inside this environment.
    run_env: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def lock_path(self) -> Path:
        """The committed lock of this environment for this host's Python and platform."""
        return lock_dir() / lock_name(self.name, self.python, has_cuda())

    def lock(self) -> Lock:
        """The parsed lock; a lock that no longer satisfies the spec's pins is refused."""
        lock = read_lock(self.lock_path)
        stale = lock.stale_against([r for inst in self.installs for r in inst.requirements])
        if stale:
            raise EnvironmentBuildError(
                f"the lock {lock.path.name} does not satisfy environment '{self.name}': {', '.join(stale)}",
                hint=f"refresh it with `gate env lock {self.name}`",
            )
        return lock

    def digest(self) -> str:
        """The cache key: the lock's digest, the post-install fixes, the platform, the key format."""
        payload = {
            "format": _SPEC_FORMAT,
            "lock_sha256": self.lock().sha256,
            "python": self.python,
            "remove": list(self.remove),
            "remove_globs": list(self.remove_globs),
            "machine": platform.machine(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Env:
    """A ready environment: its interpreter and what was resolved into it."""

    name: str
    path: Path | None
    python: Path
    lock_sha256: str
    packages: Mapping[str, str]
    run_env: tuple[tuple[str, str], ...] = ()
    #: The committed lock file it was installed from (None for a ``GATE_PYTHON_<NAME>`` interpreter).
    lock_file: str | None = None

    @property
    def bin_dir(self) -> Path:
        """The directory holding the environment's console scripts."""
        return self.python.parent

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The process environment for commands run inside this environment."""
        env = dict(os.environ)
        # Toolkits spawn their own helpers (accelerate launch): they must find them first.
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        if self.path is not None:
            env["VIRTUAL_ENV"] = str(self.path)
        env.pop("PYTHONHOME", None)
        env.update(dict(self.run_env))
        if extra:
            env.update(extra)
        return env

    def key_versions(self, names: Sequence[str]) -> dict[str, str]:
        """Versions of ``names`` in this environment (``"absent"`` when not installed)."""
        return {n: self.packages.get(_norm(n), "absent") for n in names}

    def record(self) -> dict[str, object]:
        """A JSON-ready description for run records and reports."""
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "python": str(self.python),
            "lock_sha256": self.lock_sha256,
            "lock_file": self.lock_file,
        }


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
