"""Building, caching and locking environments with uv (a directory is complete once its marker exists)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from gate.envlock import Lock, compile_lock
from gate.envs._host import _uv, file_lock, find_interpreter, find_links, gate_home, has_cuda
from gate.envs._spec import Env, EnvSpec, _norm
from gate.errors import EnvironmentBuildError
from gate.proc import run_streamed

_MARKER = "gate-env.json"


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
