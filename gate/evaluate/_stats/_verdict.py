"""One metric judged: absolute minimum, the paired regression bound, power and tagged slices, with reasons."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gate.evaluate._dist import clopper_pearson_upper
from gate.evaluate._stats._paired import (
    POWER,
    DocScores,
    PairedDelta,
    TestName,
    min_detectable_regression,
    paired_delta,
)
from gate.evaluate._stats._thresholds import MetricThreshold, Planning, metric_key

__all__ = ["MAX_LISTED_DOCS", "MetricVerdict", "SliceVerdict", "judge_metric"]

#: How many failing document ids a slice lists (the report stays bounded).
MAX_LISTED_DOCS = 50


@dataclass(frozen=True)
class SliceVerdict:
    """One tagged slice of a task's documents, judged like the whole task."""

    name: str
    n: int
    adapter: float
    reference_score: float
    delta: float
    lower_bound: float | None
    test: str | None
    regressed: bool
    #: Ids of the slice's documents where the adapter scored below the reference (at most 50).
    failing_documents: tuple[str, ...]
    failing_count: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["failing_documents"] = list(self.failing_documents)
        return data


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
    #: The method of the lower bound (None when no bound could be computed).
    test: TestName | None = None
    wins: int | None = None
    losses: int | None = None
    p_value: float | None = None
    #: Smallest regression this task can detect (see :mod:`gate.evaluate._stats`) and what it came from.
    min_detectable_regression: float | None = None
    power_basis: str | None = None
    underpowered: bool = False
    #: Things a reviewer must see that did not fail the metric (underpowered, a regressed slice).
    warnings: tuple[str, ...] = ()
    slices: tuple[SliceVerdict, ...] = field(default=())

    @property
    def key(self) -> str:
        """``task/metric,filter``."""
        return f"{self.task}/{metric_key(self.metric, self.filter)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN/Inf become ``None``: JSON has no NaN)."""
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        data["warnings"] = list(self.warnings)
        data["slices"] = [s.to_dict() for s in self.slices]
        for k, v in data.items():
            if isinstance(v, float) and not math.isfinite(v):
                data[k] = None
        data["key"] = self.key
        return data


def _fmt(x: float) -> str:
    return f"{x:+.4f}" if x < 0 or x > 0 else "0.0000"


def _judge_slices(
    threshold: MetricThreshold,
    adapter: DocScores,
    reference: DocScores,
    tags: Mapping[str, Sequence[str]],
    doc_ids: Mapping[str, str],
    confidence: float,
) -> tuple[SliceVerdict, ...]:
    groups: dict[str, list[str]] = {}
    for doc in sorted(adapter):
        for tag in tags.get(doc, ()):
            groups.setdefault(tag, []).append(doc)
    out = []
    for name in sorted(groups):
        docs = groups[name]
        a = {d: adapter[d] for d in docs}
        r = {d: reference[d] for d in docs if d in reference}
        if len(r) != len(a):
            continue
        n = len(docs)
        delta = math.fsum(a[d] - r[d] for d in docs) / n
        lower: float | None = None
        test: str | None = None
        if n >= 2:
            pd = paired_delta(a, r, confidence=confidence)
            lower, test = pd.lower_bound, pd.test
        bound = delta if lower is None else lower
        failing = [doc_ids.get(d, d) for d in docs if a[d] < r[d]]
        out.append(
            SliceVerdict(
                name=name,
                n=n,
                adapter=math.fsum(a.values()) / n,
                reference_score=math.fsum(r.values()) / n,
                delta=delta,
                lower_bound=lower,
                test=test,
                # A slice regressed when it actually lost ground and its bound crosses the margin.
                regressed=delta < 0 and bound < -threshold.max_regression,
                failing_documents=tuple(failing[:MAX_LISTED_DOCS]),
                failing_count=len(failing),
            )
        )
    return tuple(out)


def judge_metric(
    threshold: MetricThreshold,
    adapter: DocScores | None,
    reference: DocScores | None,
    *,
    confidence: float,
    reference_label: str = "base",
    planning: Planning | None = None,
    tags: Mapping[str, Sequence[str]] | None = None,
    doc_ids: Mapping[str, str] | None = None,
) -> MetricVerdict:
    """Judge one metric: absolute minimum, the paired regression bound, power, slices.

    ``adapter``/``reference`` are per-document scores, or ``None`` when the run
    did not produce the metric at all. Every anomaly is a failure with a reason.
    ``tags`` (document key -> slice names) breaks the metric down by slice;
    ``doc_ids`` names documents in the report.
    """
    plan = planning or Planning()
    name = threshold.key
    reasons: list[str] = []
    warnings: list[str] = []
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
        spread = f"{pd.wins} won, {pd.losses} lost" if pd.binary else f"paired stderr {pd.stderr:.4f}"
        reasons.append(
            f"{name}: regression versus {reference_label}: delta {_fmt(pd.delta)} "
            f"({spread}; {confidence:.0%} lower bound {_fmt(pd.lower_bound)} by {pd.test}) "
            f"is below the allowed -{threshold.max_regression:.4f} "
            f"(by {-threshold.max_regression - pd.lower_bound:.4f})"
        )
    mdr: float | None = None
    basis: str | None = None
    underpowered = False
    slices: tuple[SliceVerdict, ...] = ()
    if pd is not None:
        if pd.binary:
            # The observed discordance of a few documents is itself uncertain: plan with its upper bound.
            discordant = (pd.wins or 0) + (pd.losses or 0)
            q = clopper_pearson_upper(discordant, pd.n, confidence)
            mdr = min_detectable_regression(pd.n, binary=True, confidence=confidence, discordance=q)
            basis = (
                f"observed: {pd.n} documents, {discordant} discordant, "
                f"discordance up to {q:.3f} at {confidence:.0%}"
            )
        else:
            sd = pd.stderr * math.sqrt(pd.n)
            mdr = min_detectable_regression(pd.n, binary=False, confidence=confidence, sd=sd)
            basis = f"observed: {pd.n} documents, sd of differences {sd:.3f}"
        underpowered = mdr > threshold.max_regression
        if underpowered:
            text = (
                f"{name}: underpowered: {pd.n} documents can detect a regression of {mdr:.4f} at "
                f"{confidence:.0%} confidence and {POWER:.0%} power, more than max_regression "
                f"{threshold.max_regression:.4f} ({basis})"
            )
            (reasons if plan.underpowered == "fail" else warnings).append(text)
        if tags and adapter is not None and reference is not None:
            slices = _judge_slices(threshold, adapter, reference, tags, doc_ids or {}, confidence)
            for s in slices:
                if s.regressed:
                    shown = ", ".join(s.failing_documents[:10])
                    more = f" and {s.failing_count - 10} more" if s.failing_count > 10 else ""
                    text = (
                        f"{name}: slice {s.name!r} regressed: {s.n} documents, delta {_fmt(s.delta)}; "
                        f"failing documents: {shown}{more}"
                    )
                    (reasons if plan.slice_regression == "fail" else warnings).append(text)
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
        test=pd.test if pd is not None else None,
        wins=pd.wins if pd is not None else None,
        losses=pd.losses if pd is not None else None,
        p_value=pd.p_value if pd is not None else None,
        min_detectable_regression=mdr,
        power_basis=basis,
        underpowered=underpowered,
        warnings=tuple(warnings),
        slices=slices,
    )


def _mean_or_none(scores: DocScores) -> float | None:
    if not scores:
        return None
    try:
        values = [float(v) for v in scores.values()]
    except (TypeError, ValueError):
        return math.nan
    return math.fsum(values) / len(values) if all(math.isfinite(v) for v in values) else math.nan
