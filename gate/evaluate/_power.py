"""Power stated before a run: can each contract task detect the regression the contract forbids?

From each task's document count (its JSONL data, counted without lm-eval) and
the contract's planning values (discordance for binary metrics, sd for
continuous ones), :func:`power_plan` computes the minimum detectable regression
the eval gate will have. ``gate eval`` prints it before it scores anything and
records it in the report; ``gate contract verify`` reports it too. After a run,
each metric's own ``min_detectable_regression`` uses what was observed instead.

Example::

    for plan in power_plan(Contract.from_yaml(Path("contract.yaml"))):
        print(plan.key, plan.n, plan.min_detectable_regression, plan.underpowered)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from gate.contract import Contract
from gate.errors import InputError
from gate.evaluate._stats import POWER, min_detectable_regression
from gate.evaluate._tasks import task_set, thresholds

__all__ = ["BINARY_METRICS", "PowerPlan", "count_documents", "power_plan"]

#: Metrics whose per-document score is 0 or 1 (judged by McNemar's test); others are continuous.
BINARY_METRICS = frozenset({"acc", "acc_norm", "exact_match", "em", "pass@1", "f1_binary"})
_MAX_TASK_YAML_BYTES = 1 << 20
_MAX_DATA_BYTES = 256 << 20


@dataclass(frozen=True)
class PowerPlan:
    """One contract metric's power before a run."""

    key: str
    n: int | None
    binary: bool
    max_regression: float
    min_detectable_regression: float | None
    underpowered: bool
    basis: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (an infinite value is ``None``)."""
        data = asdict(self)
        mdr = data["min_detectable_regression"]
        if isinstance(mdr, float) and not math.isfinite(mdr):
            data["min_detectable_regression"] = None
        return data

    def message(self, confidence: float) -> str:
        """One line for a person."""
        if self.n is None or self.min_detectable_regression is None:
            return f"{self.key}: {self.basis}"
        verdict = "cannot detect" if self.underpowered else "can detect"
        return (
            f"{self.key}: {self.n} documents {verdict} max_regression {self.max_regression:.4f} "
            f"(minimum detectable regression {self.min_detectable_regression:.4f} at {confidence:.0%} "
            f"confidence and {POWER:.0%} power; {self.basis})"
        )


def _data_files(task_yaml: dict[str, Any]) -> list[str]:
    kwargs = task_yaml.get("dataset_kwargs")
    files = kwargs.get("data_files") if isinstance(kwargs, dict) else None
    split = task_yaml.get("test_split") or "test"
    if isinstance(files, dict):
        files = files.get(split)
    if isinstance(files, str):
        return [files]
    if isinstance(files, list) and all(isinstance(f, str) for f in files):
        return list(files)
    return []


def _count_lines(path: Path) -> int:
    if path.is_symlink() or not path.is_file():
        raise InputError(f"eval data {path} is not a regular file")
    size = path.stat().st_size
    if size > _MAX_DATA_BYTES:
        raise InputError(f"eval data {path} is {size} bytes (limit {_MAX_DATA_BYTES})")
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def count_documents(tasks_dir: Path) -> dict[str, int]:
    """Task name -> number of documents in its local JSONL data (a task without local data: absent)."""
    root = tasks_dir.resolve()
    counts: dict[str, int] = {}
    for path in sorted(tasks_dir.glob("*.y*ml")):
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_TASK_YAML_BYTES:
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("task"), str):
            continue
        files = _data_files(data)
        if not files:
            continue
        total = 0
        for rel in files:
            target = (path.parent / rel).resolve()
            if not target.is_relative_to(root):
                raise InputError(f"{path}: data file {rel!r} lies outside the tasks directory {tasks_dir}")
            total += _count_lines(target)
        counts[data["task"]] = total
    return counts


def power_plan(contract: Contract, *, limit: int | None = None) -> list[PowerPlan]:
    """Each contract metric's minimum detectable regression from its document count and planning values."""
    tasks = task_set(contract)
    counts = count_documents(tasks.path)
    spec = contract.eval
    plans = []
    for t in thresholds(contract):
        n = counts.get(t.task)
        if n is not None and limit is not None:
            n = min(n, limit)
        binary = t.metric in BINARY_METRICS
        if n is None:
            plans.append(
                PowerPlan(
                    t.key,
                    None,
                    binary,
                    t.max_regression,
                    None,
                    False,
                    "document count unknown (no local data)",
                )
            )
            continue
        if binary:
            mdr = min_detectable_regression(
                n, binary=True, confidence=spec.confidence, discordance=spec.planning.discordance
            )
            basis = f"planned discordance {spec.planning.discordance:.2f}"
        else:
            mdr = min_detectable_regression(n, binary=False, confidence=spec.confidence, sd=spec.planning.sd)
            basis = f"planned sd of differences {spec.planning.sd:.2f}"
        plans.append(PowerPlan(t.key, n, binary, t.max_regression, mdr, mdr > t.max_regression, basis))
    return plans
