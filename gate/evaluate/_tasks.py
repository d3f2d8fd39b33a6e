"""The contract's lm-eval tasks: the task directory (bounded walk, digest, task names) and thresholds."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from gate.contract import Contract
from gate.errors import InputError
from gate.evaluate._stats import MetricThreshold, Planning

__all__ = ["TaskSet", "planning", "task_set", "thresholds"]

#: Bounds on what gate reads from a tasks directory.
_MAX_TASK_FILES = 2000
_MAX_TASKS_BYTES = 512 << 20
_TASK_NAME = re.compile(r"^task:\s*['\"]?([A-Za-z0-9_.\-]+)['\"]?\s*$", re.MULTILINE)


@dataclass(frozen=True)
class TaskSet:
    """The contract's tasks directory: its digest and the task names its YAML defines."""

    path: Path
    sha256: str
    names: frozenset[str]


def task_set(contract: Contract) -> TaskSet:
    spec = contract.eval
    path = contract.resolve(spec.tasks_dir)
    if not path.is_dir():
        raise InputError(
            f"{contract.source_path}: eval.tasks_dir {spec.tasks_dir!r} is not a directory ({path})",
            hint="point it at the directory of lm-eval task YAML files, relative to the contract",
        )
    root = path.resolve()
    files: list[Path] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            p = Path(dirpath) / name
            if p.is_symlink() and not p.resolve().is_relative_to(root):
                raise InputError(f"{p} is a symlink out of the tasks directory {path}")
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not p.is_file():
                continue
            files.append(p)
            total += p.stat().st_size
            if len(files) > _MAX_TASK_FILES or total > _MAX_TASKS_BYTES:
                raise InputError(
                    f"the tasks directory {path} holds more than {_MAX_TASK_FILES} files or "
                    f"{_MAX_TASKS_BYTES >> 20} MiB"
                )
    digest = hashlib.sha256()
    names: set[str] = set()
    for p in files:
        rel = p.relative_to(path).as_posix()
        data = p.read_bytes()
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        if p.suffix in (".yaml", ".yml"):
            names.update(_TASK_NAME.findall(data.decode("utf-8", errors="replace")))
    missing = sorted({t.task for t in spec.tasks} - names)
    if missing:
        raise InputError(
            f"{contract.source_path}: eval task(s) {', '.join(missing)} are not defined in {path}",
            hint=f"tasks found there: {', '.join(sorted(names)) or 'none'}",
        )
    return TaskSet(path=path, sha256=digest.hexdigest(), names=frozenset(names))


def thresholds(contract: Contract) -> list[MetricThreshold]:
    return [
        MetricThreshold(
            task=t.task,
            metric=t.metric,
            filter=t.filter,
            kind=t.kind,
            min=t.min,
            max_regression=t.max_regression,
        )
        for t in contract.eval.tasks
    ]


def planning(contract: Contract) -> Planning:
    """The contract's planning values and its policies for underpowered tasks and regressed slices."""
    spec = contract.eval
    return Planning(
        discordance=spec.planning.discordance,
        sd=spec.planning.sd,
        underpowered=spec.underpowered,
        slice_regression=spec.slice_regression,
    )
