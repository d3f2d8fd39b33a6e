"""The paired tests: the lower bound of a mean per-document difference, and the regression a task can detect.

See :mod:`gate.evaluate._stats` for which test holds when. Plain arithmetic over per-document rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gate.evaluate._dist import (
    clopper_pearson_lower,
    mcnemar_exact_p,
    normal_quantile,
    t_quantile,
)

__all__ = [
    "EXACT_BELOW",
    "POWER",
    "DocScores",
    "PairedDelta",
    "TestName",
    "min_detectable_regression",
    "paired_delta",
]

#: Per-document scores of one metric: document key -> value.
DocScores = Mapping[str, float]


TestName = Literal["mcnemar-exact", "paired-normal", "paired-t"]


#: Below this many discordant documents a binary metric is judged by McNemar's exact test.
EXACT_BELOW = 25


#: The power at which the minimum detectable regression is stated.
POWER = 0.8


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
