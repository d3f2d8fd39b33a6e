"""The eval gate's tasks and thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gate.contract._section import Section
from gate.contract_files import ContractDir


class EvalTask(Section):
    """One lm-evaluation-harness task and its thresholds."""

    task: str
    metric: str
    filter: str = "none"
    kind: Literal["generate", "multiple_choice"]
    min: float | None = None
    max_regression: float = Field(default=0.0, ge=0)
    slice_field: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="a field of the task's JSONL documents naming their slice(s) (a string or a list of "
        "strings); the report breaks every metric down by it and names the slices that regressed",
    )


class EvalPlanning(Section):
    """What the eval gate assumes about a task before its first run, to state its power up front."""

    discordance: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="share of documents on which adapter and base disagree (binary metrics)",
    )
    sd: float = Field(default=0.5, gt=0, description="sd of per-document differences (continuous metrics)")


class EvalSpec(Section):
    """Evaluation tasks and thresholds (used by ``gate eval``)."""

    tasks_dir: ContractDir = Field(
        description="directory of lm-eval task YAML, relative to the contract file"
    )
    tasks: list[EvalTask] = Field(min_length=1)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    planning: EvalPlanning = Field(default_factory=EvalPlanning)
    underpowered: Literal["warn", "fail"] = Field(
        default="warn",
        description="what a task whose minimum detectable regression exceeds max_regression does",
    )
    slice_regression: Literal["warn", "fail"] = Field(
        default="warn", description="what a slice that regressed does while its task passes"
    )
