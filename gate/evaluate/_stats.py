"""The verdict arithmetic of ``gate eval``: paired per-document tests, power, thresholds.

Base (or baseline) and adapter are scored over the same documents, so every
metric is judged on the per-document differences ``d_i = adapter_i - reference_i``
with a one-sided lower confidence bound of their mean, by the method that holds
for the data (the report names it as the metric's ``test``):

* ``mcnemar-exact``: a binary metric (every score 0 or 1) with fewer than 25
  discordant documents. Conditional on the ``D`` documents where the two models
  disagree, the adapter wins ``b`` of them as Binomial(D, theta) under McNemar's
  model; the exact (Clopper-Pearson) lower bound ``theta_L`` of theta gives the
  bound ``(D / n) * (2 * theta_L - 1)`` of the difference of paired proportions.
  The two-sided exact McNemar p-value is reported beside it.
* ``paired-normal``: a binary metric with at least 25 discordant documents, where
  the normal approximation of McNemar's statistic holds: ``delta - z * sd(d) / sqrt(n)``.
* ``paired-t``: a continuous metric: ``delta - t(n - 1) * sd(d) / sqrt(n)``.

A metric fails when its scores are missing, empty, or hold a non-finite value
(never fail open), when the adapter's mean is below the contract's absolute
``min``, or when the lower bound is below ``-max_regression``.

Power, stated up front: ``min_detectable_regression`` is the smallest regression
the task can tell apart from no change at the contract's confidence with 80%
power: the bound's own width at a zero difference plus the power term, from the
document count and the discordance (binary: its exact upper confidence bound, as a
handful of discordant documents says little about the true rate) or the spread
(continuous) observed, or the contract's planning values before a run. A task whose minimum detectable
regression exceeds ``max_regression`` is *underpowered*: it cannot see the
regression the contract forbids, and the contract decides whether that warns or
fails (``eval.underpowered``).

Nothing here talks to a server: it is plain arithmetic over per-document rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gate.evaluate._dist import (
    clopper_pearson_lower,
    clopper_pearson_upper,
    mcnemar_exact_p,
    normal_quantile,
    t_quantile,
)

__all__ = [
    "EXACT_BELOW",
    "POWER",
    "MetricThreshold",
    "MetricVerdict",
    "PairedDelta",
    "Planning",
    "Policy",
    "SliceVerdict",
    "TestName",
    "judge_metric",
    "metric_key",
    "min_detectable_regression",
    "paired_delta",
]

#: Per-document scores of one metric: document key -> value.
DocScores = Mapping[str, float]
TestName = Literal["mcnemar-exact", "paired-normal", "paired-t"]
Policy = Literal["warn", "fail"]
#: Below this many discordant documents a binary metric is judged by McNemar's exact test.
EXACT_BELOW = 25
#: The power at which the minimum detectable regression is stated.
POWER = 0.8
#: How many failing document ids a slice lists (the report stays bounded).
MAX_LISTED_DOCS = 50


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


@dataclass(frozen=True)
class PairedDelta:
    """The difference of two models' means over the same documents, and its lower bound."""

    n: int
    candidate_mean: float
    reference_mean: float
    delta: float
    #: Paired stderr: sd of the per-document differences over sqrt(n).
    stderr: float
    #: The stderr combining both means as if independent (for comparison only).
    unpaired_stderr: float
    #: One-sided lower confidence bound of ``delta`` by ``test``.
    lower_bound: float
    confidence: float
    test: TestName
    binary: bool
    #: Documents the adapter won / lost against the reference (binary metrics).
    wins: int | None = None
    losses: int | None = None
    #: Two-sided exact McNemar p-value (binary metrics).
    p_value: float | None = None


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0 or math.isnan(confidence):
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _sample_sd(values: Sequence[float]) -> float:
    n = len(values)
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def _is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def paired_delta(candidate: DocScores, reference: DocScores, *, confidence: float) -> PairedDelta:
    """Mean difference ``candidate - reference`` over shared documents, bounded by the test that holds.

    Both mappings must hold the same document keys, at least two, all finite:
    :class:`ValueError` says which condition failed (callers turn it into a failed verdict).
    """
    _check_confidence(confidence)
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

    def result(lower: float, test: TestName, **binary: Any) -> PairedDelta:
        return PairedDelta(
            n=n,
            candidate_mean=math.fsum(c) / n,
            reference_mean=math.fsum(r) / n,
            delta=delta,
            stderr=stderr,
            unpaired_stderr=unpaired,
            lower_bound=lower,
            confidence=confidence,
            test=test,
            binary=bool(binary),
            **binary,
        )

    if _is_binary(c) and _is_binary(r):
        wins = sum(1 for d in diffs if d > 0)
        losses = sum(1 for d in diffs if d < 0)
        discordant = wins + losses
        p_value = mcnemar_exact_p(wins, losses)
        if discordant < EXACT_BELOW:
            theta = clopper_pearson_lower(wins, discordant, confidence) if discordant else 0.5
            lower = (discordant / n) * (2.0 * theta - 1.0)
            test: TestName = "mcnemar-exact"
        else:
            lower = delta - normal_quantile(confidence) * stderr
            test = "paired-normal"
        return result(lower, test, wins=wins, losses=losses, p_value=p_value)
    return result(delta - t_quantile(confidence, n - 1) * stderr, "paired-t")


def min_detectable_regression(
    n: int,
    *,
    binary: bool,
    confidence: float,
    discordance: float | None = None,
    sd: float | None = None,
    power: float = POWER,
) -> float:
    """The smallest regression ``n`` documents tell apart from no change, at ``confidence`` and ``power``.

    Binary metrics need the discordance (share of documents where the models
    disagree), continuous ones the sd of the per-document differences. The value
    is the width of the test's own lower bound at a zero difference plus the power
    term (normal approximation for that term); ``inf`` below two documents.
    """
    _check_confidence(confidence)
    if n < 2:
        return math.inf
    if binary:
        q = min(1.0, max(float(discordance or 0.0), 1.0 / n))
        spread = math.sqrt(q / n)
        expected = q * n
        if expected < EXACT_BELOW:
            d = max(1, round(expected))
            width = -(d / n) * (2.0 * clopper_pearson_lower(d // 2, d, confidence) - 1.0)
        else:
            width = normal_quantile(confidence) * spread
        return width + normal_quantile(power) * spread
    s = max(float(sd or 0.0), 0.0)
    return (t_quantile(confidence, n - 1) + t_quantile(power, n - 1)) * s / math.sqrt(n)


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
    #: Smallest regression this task can detect (see the module docstring) and what it came from.
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
