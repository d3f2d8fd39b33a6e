"""Isolated environments for the heavy stacks, created, pinned and cached with uv.

One helper manages every environment gate needs: the base-model converter,
vLLM, each training toolkit, lm-eval. An environment is described by an
:class:`EnvSpec` (top-level pins, Python version, post-install fixes) and installed
from its committed lock (gate/envlock.py: every distribution pinned with hashes,
one lock per environment, Python and platform) with hashes required. The lock's
digest (with the post-install fixes) names a directory under ``$GATE_HOME/envs``;
a directory is complete only once its ``gate-env.json`` marker exists, so an
interrupted build is detected and rebuilt, and a second caller finds the cached
one without reinstalling.

Example::

    spec = EnvSpec(name="base", python="3.11", installs=(Install(("gguf==0.19.0",)),))
    env = ensure(spec)
    env.run_python_script(script, args)

``GATE_PYTHON_<NAME>`` (e.g. ``GATE_PYTHON_VLLM=/usr/bin/python3``) points gate at
an interpreter that already has the stack, as on an offline GPU host.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gate.envlock import Lock, compile_lock, lock_dir, lock_name, read_lock
from gate.errors import EnvironmentBuildError
from gate.proc import run_streamed

__all__ = [
    "Env",
    "EnvSpec",
    "Install",
    "ensure",
    "file_lock",
    "find_interpreter",
    "gate_home",
    "has_cuda",
    "lock",
    "platform_as",
    "torch_requirement",
]

_MARKER = "gate-env.json"
#: Version of the cache-key recipe; 2: the key is the lock's digest, not the spec's.
_SPEC_FORMAT = 2


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


def _override(spec: EnvSpec) -> Env | None:
    key = "GATE_PYTHON_" + spec.name.upper().replace("-", "_")
    value = os.environ.get(key)
    if not value:
        return None
    python = Path(value)
    if not python.exists():
        raise EnvironmentBuildError(f"{key} points at {python}, which does not exist")
    listing = _freeze_with_python(python)
    return Env(
        name=spec.name,
        path=None,
        python=python,
        lock_sha256=hashlib.sha256(listing.encode()).hexdigest(),
        packages=_parse_freeze(listing),
        run_env=spec.run_env,
    )


def _freeze_with_python(python: Path) -> str:
    code = (
        "import importlib.metadata as m\n"
        "for d in sorted(m.distributions(), key=lambda d: d.metadata['Name'].lower()):\n"
        "    print(f\"{d.metadata['Name']}=={d.version}\")\n"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise EnvironmentBuildError(f"cannot list packages of {python}: {out.stderr.strip()[-500:]}")
    return out.stdout


def _parse_freeze(listing: str) -> dict[str, str]:
    packages: dict[str, str] = {}
    for line in listing.splitlines():
        if "==" in line:
            name, _, version = line.partition("==")
            # With a PYTHONPATH overlay a distribution can be listed twice: the first
            # one listed is the one Python imports.
            packages.setdefault(_norm(name.strip()), version.strip())
    return packages


def env_dir(spec: EnvSpec) -> Path:
    """Where ``spec``'s environment lives (whether or not it is built yet)."""
    return gate_home() / "envs" / f"{spec.name}-{spec.digest()[:12]}"


def load(spec: EnvSpec) -> Env | None:
    """Return the cached environment for ``spec`` if it is complete, else ``None``."""
    override = _override(spec)
    if override is not None:
        return override
    path = env_dir(spec)
    marker = path / _MARKER
    if not marker.is_file():
        return None
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    python = path / "bin" / "python"
    if not python.exists():
        return None
    return Env(
        name=spec.name,
        path=path,
        python=python,
        lock_sha256=str(meta["lock_sha256"]),
        packages=dict(meta["packages"]),
        run_env=spec.run_env,
        lock_file=meta.get("lock_file"),
    )


def ensure(spec: EnvSpec, *, quiet: bool = False) -> Env:
    """Return the environment for ``spec``, building it with uv if it is not cached.

    Concurrent callers wait on a file lock; the one that builds writes the marker
    last, so a crash mid-build leaves a directory that is rebuilt next time.
    """
    ready = load(spec)
    if ready is not None:
        return ready
    path = env_dir(spec)
    with file_lock(path.with_name(path.name + ".lock")):
        ready = load(spec)
        if ready is not None:
            return ready
        if path.exists():
            shutil.rmtree(path)
        if not quiet:
            print(
                f"gate: building environment '{spec.name}' in {path} (once; cached afterwards)",
                file=sys.stderr,
            )
        try:
            return _build(spec, path)
        except BaseException:
            # Keep the log for inspection, drop the half-built interpreter tree.
            _keep_log_only(path)
            raise


def _keep_log_only(path: Path) -> None:
    log = path / "build.log"
    if log.exists():
        keep = path.with_name(path.name + ".failed.log")
        with contextlib.suppress(OSError):
            shutil.copyfile(log, keep)
    shutil.rmtree(path, ignore_errors=True)


def _build(spec: EnvSpec, path: Path) -> Env:
    uv = _uv()
    started = time.monotonic()
    path.mkdir(parents=True)
    log = path / "build.log"
    env = dict(os.environ)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.setdefault("UV_CACHE_DIR", str(gate_home() / "uv-cache"))
    python = find_interpreter(spec.python)

    def step(argv: list[str], what: str) -> None:
        done = run_streamed(argv, env=env, log_path=log, timeout=3600)
        if done.returncode != 0:
            raise EnvironmentBuildError(
                f"building environment '{spec.name}' failed while {what} (exit {done.returncode})",
                hint=f"last output:\n{done.tail[-2000:]}\nfull log: {path.name}.failed.log beside it",
            )

    lock = spec.lock()
    # No --seed: pip, setuptools and wheel come from the lock, hashed like everything else.
    step(
        [uv, "venv", "--quiet", "--allow-existing", "-p", str(python), str(path)],
        "creating the virtual environment",
    )
    venv_python = path / "bin" / "python"
    links: list[str] = []
    # CPU torch is on a find-links page; a CUDA lock pins PyPI's torch, whose version a +cpu wheel
    # there would also match (and then fail its hash), so CUDA hosts get no find-links.
    for d in [] if has_cuda() else find_links():
        links += ["--find-links", d]
    step(
        [uv, "pip", "sync", "--require-hashes", "-p", str(venv_python), *links, str(lock.path)],
        f"installing {lock.path.name} (hashes required)",
    )
    if spec.remove:
        step(
            [uv, "pip", "uninstall", "-p", str(venv_python), *spec.remove],
            "removing " + " ".join(spec.remove),
        )
    if spec.remove_globs:
        site = next((path / "lib").glob("python*/site-packages"))
        for pattern in spec.remove_globs:
            for hit in site.glob(pattern):
                if hit.is_dir() and not hit.is_symlink():
                    shutil.rmtree(hit)
                else:
                    hit.unlink()
    freeze = subprocess.run(
        [uv, "pip", "freeze", "-p", str(venv_python)], capture_output=True, text=True, env=env, timeout=300
    )
    if freeze.returncode != 0:
        raise EnvironmentBuildError(f"cannot list environment '{spec.name}': {freeze.stderr[-500:]}")
    # What is installed after the post-install fixes, kept for inspection; the lock is the key.
    (path / "installed.txt").write_text(freeze.stdout)
    lock_sha = lock.sha256
    packages = _parse_freeze(freeze.stdout)
    meta = {
        "name": spec.name,
        "spec": asdict(spec),
        "digest": spec.digest(),
        "python": str(python),
        "lock_sha256": lock_sha,
        "lock_file": lock.path.name,
        "packages": packages,
        "build_seconds": round(time.monotonic() - started, 1),
        "size_bytes": _tree_size(path),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = path / (_MARKER + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path / _MARKER)
    return Env(spec.name, path, venv_python, lock_sha, packages, spec.run_env, lock.path.name)


def build_info(spec: EnvSpec) -> dict[str, object] | None:
    """The build record (time, size, lock digest) of a cached environment."""
    marker = env_dir(spec) / _MARKER
    if not marker.is_file():
        return None
    data: dict[str, object] = json.loads(marker.read_text())
    return data


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def lock(spec: EnvSpec, *, upgrade: bool = False) -> Lock:
    """Write ``spec``'s lock for this host's platform (see gate/envlock.py)."""
    requirements = [r for inst in spec.installs if not inst.no_deps for r in inst.requirements]
    no_deps = [r for inst in spec.installs if inst.no_deps for r in inst.requirements]
    cuda = has_cuda()
    env = dict(os.environ)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.setdefault("UV_CACHE_DIR", str(gate_home() / "uv-cache"))
    return compile_lock(
        uv=_uv(),
        title=f"{spec.name}, CPython {spec.python}, {'cuda' if cuda else 'cpu'}",
        python=spec.python,
        requirements=requirements,
        no_deps=no_deps,
        # The CPU build of torch is on a find-links page; on CUDA hosts PyPI's torch is the right one.
        find_links=[] if cuda else find_links(),
        out=spec.lock_path,
        upgrade=upgrade,
        env=env,
    )


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
