"""Remote ``uses:`` actions, each mapped explicitly to what it does on a runner.

- ``actions/checkout``: a clean clone of the run's repository at the run's commit (or ``ref``)
  into the workspace, which is emptied first;
- ``actions/setup-python``: each listed ``python-version`` as ``pythonX.Y`` from the runner
  image's named interpreters, the last one also ``python``/``python3``, put on PATH;
- ``actions/cache``: restore ``path`` from the run's cache folder by ``key`` (then by
  ``restore-keys`` prefixes), save it after a successful job when the key was not hit; with no
  cache folder the cache is cold (nothing restored, nothing saved), as on a first run;
- ``actions/upload-artifact`` / ``actions/download-artifact``: a copy into / out of the run's
  artifact folder, shared by every job of the run.

A mapping honours only the inputs it names; any other input, and any other action, fails the
step with a message instead of being skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.workflows.runner.job import Job, StepFailed

Mapping = Callable[[Job, dict[str, str]], dict[str, str]]
_MAPPINGS: dict[str, tuple[frozenset[str], Mapping]] = {}


def _mapping(action: str, *inputs: str) -> Callable[[Mapping], Mapping]:
    def register(fn: Mapping) -> Mapping:
        _MAPPINGS[action] = (frozenset(inputs), fn)
        return fn

    return register


def run_mapped(job: Job, uses: str, given: dict[str, str]) -> dict[str, str]:
    """Run the local equivalent of ``uses`` (``owner/repo@ref``) with its ``with:`` inputs."""
    action = uses.split("@", 1)[0].lower()
    if action not in _MAPPINGS:
        raise StepFailed(f"{uses}: no local equivalent is mapped for this action")
    honoured, fn = _MAPPINGS[action]
    unknown = sorted(set(given) - honoured)
    if unknown:
        raise StepFailed(
            f"{action}: input(s) {unknown} have no local equivalent (mapped: {sorted(honoured)})"
        )
    return fn(job, given)


def _in_workspace(job: Job, path: str) -> Path:
    expanded = str(job.home) + path[1:] if path.startswith("~") else path
    return (job.workspace / expanded).resolve() if not Path(expanded).is_absolute() else Path(expanded)


def _empty(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in target.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


@_mapping("actions/checkout", "persist-credentials", "ref", "path")
def _checkout(job: Job, given: dict[str, str]) -> dict[str, str]:
    if job.repository is None:
        raise StepFailed("actions/checkout: this run has no repository to clone")
    target = _in_workspace(job, given.get("path") or ".")
    ref = given.get("ref") or str(job.github["sha"])
    _empty(target)
    git_env = {"HOME": str(job.home), "PATH": ":".join(job.image.path), "GIT_CONFIG_NOSYSTEM": "1"}
    for argv in (
        ["git", "clone", "--quiet", "--no-checkout", str(job.repository), str(target)],
        ["git", "-C", str(target), "checkout", "--quiet", "--detach", ref],
    ):
        done = subprocess.run(argv, env=git_env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StepFailed(f"actions/checkout: {' '.join(argv[:3])} failed: {done.stderr.strip()}")
    commit = subprocess.run(
        ["git", "-C", str(target), "rev-parse", "HEAD"],
        env=git_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {"ref": ref, "commit": commit}


@_mapping("actions/setup-python", "python-version")
def _setup_python(job: Job, given: dict[str, str]) -> dict[str, str]:
    versions = [v.strip() for v in given.get("python-version", "").splitlines() if v.strip()]
    if not versions:
        raise StepFailed(
            "actions/setup-python: no python-version given (the local runner reads no .python-version)"
        )
    tools = job.tool_cache / "python" / "bin"
    tools.mkdir(parents=True, exist_ok=True)
    for v in versions:
        found = job.image.interpreter(v)
        link = tools / f"python{v}"
        link.unlink(missing_ok=True)
        link.symlink_to(found)
    # The last version listed is the default `python`, as setup-python documents.
    for alias in ("python", "python3"):
        (tools / alias).unlink(missing_ok=True)
        (tools / alias).symlink_to(job.image.interpreter(versions[-1]))
    job.add_path(tools)
    return {"python-version": versions[-1], "python-path": str(tools / "python")}


@_mapping("actions/cache", "path", "key", "restore-keys")
def _cache(job: Job, given: dict[str, str]) -> dict[str, str]:
    paths = [p.strip() for p in given.get("path", "").splitlines() if p.strip()]
    key = given.get("key", "")
    if not paths or not key:
        raise StepFailed("actions/cache: path and key are required")
    if job.cache is None:
        return {"cache-hit": "false"}
    store = job.cache
    prefixes = [key] + [p.strip() for p in given.get("restore-keys", "").splitlines() if p.strip()]
    hit: Path | None = None
    for prefix in prefixes:
        matches = sorted(
            (d for d in store.glob("*") if d.name.startswith(prefix)), key=lambda d: d.stat().st_mtime
        )
        if matches:
            hit = matches[-1]
            break
    if hit is not None:
        for n, p in enumerate(paths):
            if (hit / str(n)).exists():
                _copy(hit / str(n), _in_workspace(job, p))
    exact = hit is not None and hit.name == key

    def save(finished: Job) -> None:
        if exact:
            return
        entry = store / key
        for n, p in enumerate(paths):
            src = _in_workspace(finished, p)
            if src.exists():
                _copy(src, entry / str(n))

    job.post.append(save)
    return {"cache-hit": "true" if exact else "false"}


@_mapping("actions/upload-artifact", "name", "path", "if-no-files-found", "retention-days")
def _upload(job: Job, given: dict[str, str]) -> dict[str, str]:
    name = given.get("name") or "artifact"
    lines = [p.strip() for p in given.get("path", "").splitlines() if p.strip()]
    if len(lines) != 1 or any(c in lines[0] for c in "*?[!"):
        raise StepFailed("actions/upload-artifact: the local mapping copies exactly one path (no globs)")
    src = _in_workspace(job, lines[0])
    if not src.exists() or (src.is_dir() and not any(src.iterdir())):
        policy = given.get("if-no-files-found") or "warn"
        if policy == "error":
            raise StepFailed(
                f"actions/upload-artifact: no files were found with the provided path: {lines[0]}"
            )
        if policy == "warn":
            job.warnings.append(
                f"No files were found with the provided path: {lines[0]}. No artifacts will be uploaded."
            )
        return {}
    target = job.artifacts / name
    if target.exists():
        raise StepFailed(f"actions/upload-artifact: an artifact named {name!r} already exists in this run")
    _copy(src, target if src.is_dir() else target / src.name)
    return {"artifact-id": name}


@_mapping("actions/download-artifact", "name", "path")
def _download(job: Job, given: dict[str, str]) -> dict[str, str]:
    name = given.get("name", "")
    if not name:
        raise StepFailed("actions/download-artifact: the local mapping needs a name")
    src = job.artifacts / name
    if not src.is_dir():
        raise StepFailed(f"actions/download-artifact: Artifact not found for name: {name}")
    target = _in_workspace(job, given.get("path") or ".")
    _copy(src, target)
    return {"download-path": str(target)}
