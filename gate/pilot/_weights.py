"""Weighted scoring of a pilot matrix: user weights, default weights, what carries weight, uncertainty.

A scored criterion carries weight only where it can tell the toolkits apart:

* **equal for all** (every toolkit measured the same value, or all fail the same
  gate) - no weight: it would hand everyone the same points;
* **within uncertainty** - no weight when every pair of values lies inside their
  own uncertainties (each value's interval ``v +- u`` overlaps every other's;
  ``u`` is the eval's paired bound margin, or the spread between repeats);
* **not comparable** - no weight when the criterion does not apply to some
  toolkit (Unsloth has no native config to count).

A toolkit that could not measure a criterion differs from those that did, so
such a criterion keeps its weight and the unmeasured value counts 0. The rest
is normalised across the toolkits min-max: ``(v - min) / (max - min)`` when
higher is better, ``(max - v) / (max - min)`` when lower is better; a boolean
is 1 (true) or 0 (false). A toolkit's score is ``100 * sum(w_c * n_c) / sum(w_c)``
over the criteria that carry weight; each contribution is its part of that sum.
Each contribution's uncertainty is the points it could move if the value lay
anywhere within its own uncertainty (``100 * w * min(1, u / (max - min)) / sum(w)``);
the score's uncertainty is their sum (a worst case, not a standard error).
Team familiarity (0..1 per toolkit, typed by the user) is used as given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.errors import InputError
from gate.pilot._matrix import Cell, Criterion, ScoreTerm, ToolkitScore, same_value

__all__ = [
    "DEFAULT_WEIGHTS",
    "EVAL_DELTA_WEIGHT",
    "FAMILIARITY",
    "NORMALISATION",
    "Weights",
    "score",
    "unweighted_reason",
]

#: Default weight of each scored criterion (stated in pilot.json, pilot.md and docs/pilot.md).
DEFAULT_WEIGHTS: dict[str, float] = {
    "setup.env_build_seconds": 0.5,
    "setup.env_size_bytes": 0.5,
    "train.wall_seconds": 1.0,
    "train.tokens_per_second": 1.0,
    "train.peak_rss_bytes": 1.0,
    "train.final_loss": 0.5,
    "check.errors": 2.0,
    "check.warnings": 0.5,
    "smoke.passed": 2.0,
    "smoke.parity_match_rate": 1.0,
    "smoke.stop_rate": 1.0,
    "smoke.failed_probes": 0.5,
    "eval.passed": 1.0,
    "repro.adapter_identical": 0.5,
    "repro.max_weight_diff": 1.0,
    "repro.final_loss_diff": 0.5,
    "reliability.success_rate": 2.0,
    "effort.native_config_lines": 0.5,
    "effort.fixes": 0.5,
    "observability.logged_steps": 0.25,
    "observability.metric_fields": 0.5,
    "custom.native_config_keys": 0.5,
}
#: Default weight of each contract metric's eval delta (``eval.<task>/<metric>,<filter>.delta``).
EVAL_DELTA_WEIGHT = 1.5
#: The criterion key of team familiarity (weight 1 by default when familiarity values are given).
FAMILIARITY = "familiarity"
NORMALISATION = (
    "min-max across toolkits over the criteria that carry weight: (v-min)/(max-min) when higher is better, "
    "(max-v)/(max-min) when lower is better; booleans 1/0; unmeasured 0; familiarity used as given (0..1). "
    "No weight for a criterion equal for all toolkits, not comparable for some, or whose differences all "
    "lie within the values' own uncertainty (eval paired bound, spread between repeats). "
    "score = 100 * sum(weight * normalised) / sum(weight); +- is the worst case over each value's uncertainty"
)
_MAX_FILE = 1 << 20


@dataclass(frozen=True)
class Weights:
    """The weights in force: user overrides over the defaults, plus optional familiarity."""

    overrides: dict[str, float] = field(default_factory=dict)
    familiarity: dict[str, float] = field(default_factory=dict)
    source: str = "default"

    @classmethod
    def load(cls, path: Path) -> Weights:
        """Read a YAML/JSON file ``{criterion: weight, ..., familiarity: {toolkit: 0..1}}``."""
        import yaml

        try:
            if path.is_symlink() or not path.is_file():
                raise InputError(f"--weights {path}: not a regular file")
            if path.stat().st_size > _MAX_FILE:
                raise InputError(f"--weights {path}: larger than {_MAX_FILE} bytes")
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise InputError(f"--weights {path}: not readable YAML/JSON: {e}") from None
        if not isinstance(data, dict):
            raise InputError(f"--weights {path}: must be a mapping of criterion -> weight")
        overrides: dict[str, float] = {}
        familiarity: dict[str, float] = {}
        for key, value in data.items():
            if key == FAMILIARITY and isinstance(value, dict):
                for tk, v in value.items():
                    familiarity[str(tk)] = _number(v, f"familiarity.{tk}", lo=0.0, hi=1.0, where=path)
            else:
                overrides[str(key)] = _number(value, str(key), lo=0.0, hi=1000.0, where=path)
        return cls(overrides, familiarity, source=path.name)

    def resolve(self, criteria: Sequence[Criterion], toolkits: Sequence[str]) -> dict[str, float]:
        """Weight of every scored criterion; unknown keys in the file are refused (typos)."""
        scored = {c.key for c in criteria if c.better is not None}
        known = scored | {FAMILIARITY}
        for key in self.overrides:
            if key not in known:
                import difflib

                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "see docs/pilot.md for the criteria"
                raise InputError(f"--weights: no scored criterion named {key!r}", hint=hint)
        for tk in self.familiarity:
            if tk not in toolkits:
                raise InputError(f"--weights: familiarity names {tk!r}, which is not a pilot toolkit")
        out = {k: self.overrides.get(k, default_weight(k)) for k in sorted(scored)}
        if self.familiarity:
            out[FAMILIARITY] = self.overrides.get(FAMILIARITY, 1.0)
        return out


def default_weight(key: str) -> float:
    """The default weight of criterion ``key``."""
    if key.startswith("eval.") and key.endswith(".delta"):
        return EVAL_DELTA_WEIGHT
    return DEFAULT_WEIGHTS.get(key, 0.0)


def _number(value: Any, key: str, *, lo: float, hi: float, where: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"--weights {where}: {key} must be a number, not {value!r}")
    if not lo <= float(value) <= hi:
        raise InputError(f"--weights {where}: {key} = {value} is outside {lo:g}..{hi:g}")
    return float(value)


def _uncertainty(cell: Cell | None) -> float:
    u = cell.uncertainty.value if cell is not None and cell.uncertainty is not None else None
    if isinstance(u, bool) or not isinstance(u, int | float) or not math.isfinite(u):
        return 0.0
    return abs(float(u))


def unweighted_reason(column: Mapping[str, Cell | None]) -> str | None:
    """Why a criterion with these cells (toolkit -> cell) carries no weight; None when it separates them."""
    na = {tk: c.not_applicable for tk, c in column.items() if c is not None and c.not_applicable}
    if na:
        tk, why = next(iter(na.items()))
        return f"not comparable: {tk}: {why}"
    measured = {tk: c for tk, c in column.items() if c is not None and c.value is not None}
    if not measured:
        return "measured by no toolkit"
    if len(measured) < len(column):
        return None  # an unmeasured toolkit differs from the ones that measured it
    if len(measured) < 2:
        return "only one toolkit: nothing to compare"
    values = [c.value for c in measured.values()]
    if all(same_value(v, values[0]) for v in values):
        return "equal for all toolkits"
    if any(isinstance(v, bool) for v in values):
        return None
    lows = [float(c.value) - _uncertainty(c) for c in measured.values()]  # type: ignore[arg-type]
    highs = [float(c.value) + _uncertainty(c) for c in measured.values()]  # type: ignore[arg-type]
    if max(lows) <= min(highs):
        bases = sorted({c.uncertainty.basis or "" for c in measured.values() if c.uncertainty is not None})
        return (
            "every difference lies within the values' own uncertainty ("
            + "; ".join(b for b in bases if b)
            + ")"
        )
    return None


def _normalised(c: Criterion, cell: Cell | None, values: Sequence[float]) -> float | None:
    if cell is None or cell.value is None:
        return None
    if isinstance(cell.value, bool):
        good = cell.value if c.better == "higher" else not cell.value
        return 1.0 if good else 0.0
    v = float(cell.value)
    lo, hi = min(values), max(values)
    if not math.isfinite(v):
        return 0.0
    if hi == lo or not math.isfinite(hi - lo):
        return 1.0
    return (v - lo) / (hi - lo) if c.better == "higher" else (hi - v) / (hi - lo)


def score(
    criteria: Sequence[Criterion],
    cells: Mapping[str, Mapping[str, Cell]],
    weights: Mapping[str, float],
    familiarity: Mapping[str, float],
) -> tuple[list[ToolkitScore], dict[str, str]]:
    """Each toolkit's weighted score, and the scored criteria that carry no weight (key -> why).

    ``cells`` is toolkit -> criterion key -> cell.
    """
    unweighted: dict[str, str] = {}
    for c in criteria:
        if c.better is not None and weights.get(c.key, 0.0) > 0:
            why = unweighted_reason({tk: tk_cells.get(c.key) for tk, tk_cells in cells.items()})
            if why is not None:
                unweighted[c.key] = why
    w_fam = weights.get(FAMILIARITY, 0.0)
    if familiarity and w_fam > 0 and len({familiarity.get(tk, 0.0) for tk in cells}) == 1:
        unweighted[FAMILIARITY] = "equal for all toolkits"
    total = sum(
        w for k, w in weights.items() if w > 0 and k not in unweighted and (k != FAMILIARITY or familiarity)
    )
    terms: dict[str, dict[str, ScoreTerm]] = {tk: {} for tk in cells}
    for c in criteria:
        w = weights.get(c.key, 0.0)
        if c.better is None or w <= 0:
            continue
        values = [
            float(cell.value)
            for tk_cells in cells.values()
            if (cell := tk_cells.get(c.key)) is not None
            and cell.value is not None
            and not isinstance(cell.value, bool)
            and math.isfinite(float(cell.value))
        ]
        spread = max(values) - min(values) if values else 0.0
        for tk, tk_cells in cells.items():
            cell = tk_cells.get(c.key)
            n = _normalised(c, cell, values)
            if c.key in unweighted or not total:
                terms[tk][c.key] = ScoreTerm(weight=w, normalised=n, contribution=0.0)
                continue
            moves = min(1.0, _uncertainty(cell) / spread) if spread > 0 else 0.0
            terms[tk][c.key] = ScoreTerm(
                weight=w,
                normalised=n,
                contribution=round(100 * w * (n or 0.0) / total, 4),
                uncertainty=round(100 * w * moves / total, 4),
            )
    if familiarity and w_fam > 0:
        for tk in cells:
            n = familiarity.get(tk, 0.0)
            share = 0.0 if FAMILIARITY in unweighted or not total else 100 * w_fam * n / total
            terms[tk][FAMILIARITY] = ScoreTerm(weight=w_fam, normalised=n, contribution=round(share, 4))
    scores = [
        ToolkitScore(
            toolkit=tk,
            score=round(sum(t.contribution for t in ts.values()), 2),
            terms=ts,
            uncertainty=round(sum(t.uncertainty for t in ts.values()), 2),
        )
        for tk, ts in terms.items()
    ]
    return scores, unweighted
