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
The contract's side of a metric is in ``_thresholds``, the paired tests and the power
in ``_paired``, one metric's judged verdict (with its slices) in ``_verdict``.
"""

from __future__ import annotations

from gate.evaluate._stats._paired import (
    EXACT_BELOW,
    POWER,
    PairedDelta,
    TestName,
    min_detectable_regression,
    paired_delta,
)
from gate.evaluate._stats._thresholds import MetricThreshold, Planning, Policy, metric_key
from gate.evaluate._stats._verdict import MetricVerdict, SliceVerdict, judge_metric

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
