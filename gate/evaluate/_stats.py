"""The verdict arithmetic of ``gate eval``: per-document pairing, stderr, thresholds.

Base (or baseline) and adapter are scored over the same documents, so the
difference of their means is judged with the PAIRED standard error: the
per-document differences ``d_i = adapter_i - reference_i`` have standard error
``sd(d) / sqrt(n)``, which removes the between-document variance that both
models share (2-3x tighter than combining two independent stderrs).

A metric fails when

* its scores are missing, empty, or hold a non-finite value (never fail open),
* the adapter's mean is below the contract's absolute ``min``,
* the one-sided lower confidence bound of the delta,
  ``delta - z(confidence) * stderr``, is below ``-max_regression``.

Nothing here talks to a server: it is plain arithmetic over per-document rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

__all__ = ["MetricThreshold", "MetricVerdict", "PairedDelta", "judge_metric", "metric_key", "paired_delta"]

#: Per-document scores of one metric: document key -> value.
DocScores = Mapping[str, float]


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
class PairedDelta:
    """The difference of two models' means over the same documents."""

    n: int
    candidate_mean: float
    reference_mean: float
    delta: float
    #: Paired stderr: sd of the per-document differences over sqrt(n).
    stderr: float
    #: The stderr combining both means as if independent (for comparison only).
    unpaired_stderr: float
    #: One-sided lower confidence bound of ``delta``.
    lower_bound: float
    confidence: float


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0 or math.isnan(confidence):
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(confidence)


def _sample_sd(values: list[float]) -> float:
    n = len(values)
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def paired_delta(candidate: DocScores, reference: DocScores, *, confidence: float) -> PairedDelta:
    """Mean difference ``candidate - reference`` over shared documents, with its paired stderr.

    Both mappings must hold the same document keys, at least two, all finite:
    :class:`ValueError` says which condition failed (callers turn it into a failed verdict).
    """
    z = _z(confidence)
    only_c = sorted(set(candidate) - set(reference))
    only_r = sorted(set(reference) - set(candidate))
    if only_c or only_r:
        raise ValueError(
            f"the two runs scored different documents ({len(only_c)} only in the adapter's, "
            f"{len(only_r)} only in the reference's, e.g. {(only_c or only_r)[0]!r})"
        )
    keys = sorted(candidate)
    if len(keys) < 2:
        raise ValueError(f"{len(keys)} document(s) scored: at least 2 are needed to estimate a stderr")
    c = [float(candidate[k]) for k in keys]
    r = [float(reference[k]) for k in keys]
    bad = [k for k, a, b in zip(keys, c, r, strict=True) if not (math.isfinite(a) and math.isfinite(b))]
    if bad:
        raise ValueError(f"{len(bad)} document(s) have a non-finite score (NaN/Inf), e.g. {bad[0]!r}")
    n = len(keys)
    diffs = [a - b for a, b in zip(c, r, strict=True)]
    delta = math.fsum(diffs) / n
    stderr = _sample_sd(diffs) / math.sqrt(n)
    unpaired = math.sqrt(_sample_sd(c) ** 2 / n + _sample_sd(r) ** 2 / n)
    return PairedDelta(
        n=n,
        candidate_mean=math.fsum(c) / n,
        reference_mean=math.fsum(r) / n,
        delta=delta,
        stderr=stderr,
        unpaired_stderr=unpaired,
        lower_bound=delta - z * stderr,
        confidence=confidence,
    )


@dataclass(frozen=True)
class MetricVerdict:
    """The judged outcome of one contract metric."""

    task: str
    metric: str
    filter: str
    kind: str
    #: ``"base"`` or ``"baseline"``: what the adapter is compared with.
    reference: str
    n: int
    adapter: float | None
    reference_score: float | None
    delta: float | None
    stderr: float | None
    unpaired_stderr: float | None
    lower_bound: float | None
    confidence: float
    min: float | None
    max_regression: float
    passed: bool
    #: Why it failed (empty when it passed); each names the metric and the margin.
    reasons: tuple[str, ...]

    @property
    def key(self) -> str:
        """``task/metric,filter``."""
        return f"{self.task}/{metric_key(self.metric, self.filter)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN/Inf become ``None``: JSON has no NaN)."""
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        for k, v in data.items():
            if isinstance(v, float) and not math.isfinite(v):
                data[k] = None
        data["key"] = self.key
        return data


def _fmt(x: float) -> str:
    return f"{x:+.4f}" if x < 0 or x > 0 else "0.0000"


def judge_metric(
    threshold: MetricThreshold,
    adapter: DocScores | None,
    reference: DocScores | None,
    *,
    confidence: float,
    reference_label: str = "base",
) -> MetricVerdict:
    """Judge one metric: absolute minimum, then the paired regression bound.

    ``adapter``/``reference`` are per-document scores, or ``None`` when the run
    did not produce the metric at all. Every anomaly is a failure with a reason.
    """
    name = threshold.key
    reasons: list[str] = []
    pd: PairedDelta | None = None
    adapter_mean: float | None = None
    ref_mean: float | None = None
    n = 0
    if adapter is None:
        reasons.append(f"{name}: missing from the adapter's results")
    if reference is None:
        reasons.append(f"{name}: missing from the {reference_label}'s results")
    if adapter is not None:
        n = len(adapter)
        adapter_mean = _mean_or_none(adapter)
        if n == 0:
            reasons.append(f"{name}: zero documents scored for the adapter")
        elif adapter_mean is None or not math.isfinite(adapter_mean):
            reasons.append(f"{name}: the adapter's score is not a finite number (NaN/Inf)")
    if reference is not None:
        ref_mean = _mean_or_none(reference)
        if len(reference) == 0:
            reasons.append(f"{name}: zero documents scored for the {reference_label}")
        elif ref_mean is None or not math.isfinite(ref_mean):
            reasons.append(f"{name}: the {reference_label}'s score is not a finite number (NaN/Inf)")
    if not reasons and adapter is not None and reference is not None:
        try:
            pd = paired_delta(adapter, reference, confidence=confidence)
        except ValueError as e:
            reasons.append(f"{name}: {e}")
    if (
        threshold.min is not None
        and adapter_mean is not None
        and math.isfinite(adapter_mean)
        and adapter_mean < threshold.min
    ):
        reasons.append(
            f"{name}: adapter {adapter_mean:.4f} is below the minimum {threshold.min:.4f} "
            f"(short by {threshold.min - adapter_mean:.4f})"
        )
    if pd is not None and pd.lower_bound < -threshold.max_regression:
        reasons.append(
            f"{name}: regression versus {reference_label}: delta {_fmt(pd.delta)} "
            f"(paired stderr {pd.stderr:.4f}, {confidence:.0%} lower bound {_fmt(pd.lower_bound)}) "
            f"is below the allowed -{threshold.max_regression:.4f} "
            f"(by {-threshold.max_regression - pd.lower_bound:.4f})"
        )
    return MetricVerdict(
        task=threshold.task,
        metric=threshold.metric,
        filter=threshold.filter,
        kind=threshold.kind,
        reference=reference_label,
        n=pd.n if pd is not None else n,
        adapter=adapter_mean,
        reference_score=ref_mean,
        delta=pd.delta if pd is not None else None,
        stderr=pd.stderr if pd is not None else None,
        unpaired_stderr=pd.unpaired_stderr if pd is not None else None,
        lower_bound=pd.lower_bound if pd is not None else None,
        confidence=confidence,
        min=threshold.min,
        max_regression=threshold.max_regression,
        passed=not reasons,
        reasons=tuple(reasons),
    )


def _mean_or_none(scores: DocScores) -> float | None:
    if not scores:
        return None
    try:
        values = [float(v) for v in scores.values()]
    except (TypeError, ValueError):
        return math.nan
    return math.fsum(values) / len(values) if all(math.isfinite(v) for v in values) else math.nan
