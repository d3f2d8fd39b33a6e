"""What the contract asks of one metric: its key, minimum and allowed regression, and the planning values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MetricThreshold", "Planning", "Policy", "metric_key"]

Policy = Literal["warn", "fail"]


def metric_key(metric: str, flt: str) -> str:
    """lm-eval's result key for ``metric`` under filter ``flt`` (``"exact_match,strip"``)."""
    return f"{metric},{flt}"


@dataclass(frozen=True)
class MetricThreshold:
    """What the contract requires of one task's metric."""

    task: str
    metric: str
    filter: str
    kind: str
    min: float | None
    max_regression: float

    @property
    def key(self) -> str:
        """``task/metric,filter``: how reports name the metric."""
        return f"{self.task}/{metric_key(self.metric, self.filter)}"


@dataclass(frozen=True)
class Planning:
    """What the contract assumes before the first run, and what it does with an underpowered task."""

    #: Share of documents on which adapter and reference disagree (binary metrics).
    discordance: float = 0.2
    #: Standard deviation of the per-document differences (continuous metrics).
    sd: float = 0.5
    underpowered: Policy = "warn"
    slice_regression: Policy = "warn"
