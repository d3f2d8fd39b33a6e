"""Git repositories for workflow runs: a caller's repository as a commit the runner checks out."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "octocat",
    "GIT_AUTHOR_EMAIL": "octocat@example.invalid",
    "GIT_COMMITTER_NAME": "octocat",
    "GIT_COMMITTER_EMAIL": "octocat@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}


def commit_repository(repo: Path, files: dict[str, str] | None = None) -> Path:
    """Write ``files`` (path -> text) into ``repo``, commit everything there, return ``repo``."""
    repo.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    env = {**_GIT_ENV, "HOME": str(repo.parent)}
    if not (repo / ".git").exists():
        subprocess.run(["git", "init", "--quiet", "-b", "main", str(repo)], env=env, check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], env=env, check=True)
    subprocess.run(
        ["git", "-C", str(repo), "commit", "--quiet", "--allow-empty", "-m", "caller"], env=env, check=True
    )
    return repo


def caller_repository(repo: Path, files: dict[str, str] | None = None) -> Path:
    """A caller's repository: gate's ``.github`` (the release workflow and the verify action),
    its contracts, with the embedded contract's eval tasks beside it (a caller's contract keeps
    what it references in its own directory), plus ``files``."""
    shutil.copytree(ROOT / ".github", repo / ".github")
    shutil.copytree(ROOT / "contracts", repo / "contracts")
    shutil.copytree(ROOT / "examples", repo / "examples")
    shutil.copytree(ROOT / "examples" / "smollm2" / "eval", repo / "contracts" / "eval")
    contract = repo / "contracts" / "smollm2-vllm.yaml"
    text = contract.read_text(encoding="utf-8")
    assert text.count("tasks_dir: ../examples/smollm2/eval") == 1
    contract.write_text(
        text.replace("tasks_dir: ../examples/smollm2/eval", "tasks_dir: eval"), encoding="utf-8"
    )
    return commit_repository(repo, files)


def plant(repo: Path, path: str, old: str, new: str) -> Path:
    """Replace the one occurrence of ``old`` in ``path`` of ``repo`` by ``new`` and commit it."""
    target = repo / path
    text = target.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {path}"
    target.write_text(text.replace(old, new), encoding="utf-8")
    return commit_repository(repo)
