"""The few distributions the eval statistics need, in plain Python (gate's core has no SciPy).

The regularized incomplete beta function ``I_x(a, b)`` gives both the binomial
CDF (for McNemar's exact test and Clopper-Pearson bounds) and Student's t CDF
(for the paired t bound); quantiles are found by bisection, which is exact to
the tolerance asked and cannot diverge. Every function raises ``ValueError`` on
arguments outside its domain rather than returning NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

__all__ = [
    "binom_cdf",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "mcnemar_exact_p",
    "normal_quantile",
    "t_cdf",
    "t_quantile",
]

_EPS = 1e-15
_TINY = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    # Continued fraction for I_x(a, b) (modified Lentz), valid and fast for x < (a + 1) / (a + b + 2).
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ValueError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)`` for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0 or not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs a, b > 0 and x in [0, 1], got a={a}, b={b}, x={x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"binom_cdf needs n >= 0 and p in [0, 1], got n={n}, p={p}")
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return betainc(n - k, k + 1, 1.0 - p)


def _bisect(f: Callable[[float], float], lo: float, hi: float, *, tol: float = 1e-12) -> float:
    # f is increasing on [lo, hi] with f(lo) <= 0 <= f(hi).
    for _ in range(200):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    return (lo + hi) / 2


def clopper_pearson_lower(k: int, n: int, confidence: float) -> float:
    """One-sided exact lower bound for a binomial proportion: P(X >= k | p_L) = 1 - confidence."""
    _check(k, n, confidence)
    if k == 0:
        return 0.0
    alpha = 1.0 - confidence
    # P(X >= k | p) = 1 - binom_cdf(k - 1, n, p) increases with p.
    return _bisect(lambda p: (1.0 - binom_cdf(k - 1, n, p)) - alpha, 0.0, 1.0)


def clopper_pearson_upper(k: int, n: int, confidence: float) -> float:
    """One-sided exact upper bound for a binomial proportion: P(X <= k | p_U) = 1 - confidence."""
    _check(k, n, confidence)
    if k == n:
        return 1.0
    alpha = 1.0 - confidence
    # binom_cdf(k, n, p) decreases with p.
    return _bisect(lambda p: alpha - binom_cdf(k, n, p), 0.0, 1.0)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (a sign test on b of b + c)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b}, {c}")
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binom_cdf(min(b, c), n, 0.5))


def t_cdf(t: float, df: float) -> float:
    """Student's t CDF with ``df`` degrees of freedom."""
    if df <= 0 or math.isnan(t):
        raise ValueError(f"t_cdf needs df > 0 and a number, got t={t}, df={df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (0 < q < 1)."""
    if not 0.0 < q < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs q in (0, 1) and df > 0, got q={q}, df={df}")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    hi = 1.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
        if hi > 1e12:
            raise ValueError(f"t quantile {q} with df={df} is out of range")
    return _bisect(lambda t: t_cdf(t, df) - q, 0.0, hi)


def normal_quantile(q: float) -> float:
    """The ``q`` quantile of the standard normal distribution (0 < q < 1)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"normal_quantile needs q in (0, 1), got {q}")
    return NormalDist().inv_cdf(q)


def _check(k: int, n: int, confidence: float) -> None:
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
