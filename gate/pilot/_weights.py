"""Weighted scoring of a pilot matrix: user weights, default weights, min-max normalisation.

Each scored criterion is normalised across the toolkits that measured it:
``(v - min) / (max - min)`` when higher is better, ``(max - v) / (max - min)``
when lower is better, 1.0 for everyone when all values are equal, a boolean is
1 (true) or 0 (false), and a value that could not be measured is 0. A toolkit's
score is ``100 * sum(w_c * n_c) / sum(w_c)`` over criteria with a weight above 0;
each criterion's contribution is its part of that sum. Team familiarity (0..1
per toolkit, typed by the user) is used as given, not normalised.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.errors import InputError
from gate.pilot._matrix import Cell, Criterion, ScoreTerm, ToolkitScore

__all__ = ["DEFAULT_WEIGHTS", "EVAL_DELTA_WEIGHT", "FAMILIARITY", "NORMALISATION", "Weights", "score"]

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
    "min-max across toolkits: (v-min)/(max-min) when higher is better, (max-v)/(max-min) when lower is "
    "better; 1 for all when equal; booleans 1/0; unmeasured 0; familiarity used as given (0..1). "
    "score = 100 * sum(weight * normalised) / sum(weight)"
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
) -> list[ToolkitScore]:
    """Each toolkit's weighted score; ``cells`` is toolkit -> criterion key -> cell."""
    total = sum(w for w in weights.values() if w > 0)
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
        for tk, tk_cells in cells.items():
            n = _normalised(c, tk_cells.get(c.key), values)
            terms[tk][c.key] = ScoreTerm(
                weight=w, normalised=n, contribution=round(100 * w * (n or 0.0) / total, 4) if total else 0
            )
    w_fam = weights.get(FAMILIARITY, 0.0)
    if familiarity and w_fam > 0:
        for tk in cells:
            n = familiarity.get(tk, 0.0)
            terms[tk][FAMILIARITY] = ScoreTerm(
                weight=w_fam, normalised=n, contribution=round(100 * w_fam * n / total, 4) if total else 0
            )
    return [
        ToolkitScore(toolkit=tk, score=round(sum(t.contribution for t in ts.values()), 2), terms=ts)
        for tk, ts in terms.items()
    ]
