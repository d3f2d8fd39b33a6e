"""Build a :class:`PilotMatrix` from a pilot directory's run records and gate reports.

Every cell is computed by :func:`gate.pilot._matrix.trace` from its declared
sources, exactly as a reader would recompute it; a cell whose source is absent
(its run failed, a gate raised) gets no value and a reason, and is listed in
``missing``. The directory's layout: :mod:`gate.pilot._columns`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gate import __version__
from gate.errors import InputError
from gate.pilot._columns import GATE_NAMES, Column, run_id
from gate.pilot._criteria import criteria_for
from gate.pilot._matrix import PilotMatrix, ToolkitResult, ToolkitScore
from gate.pilot._weights import DEFAULT_WEIGHTS, NORMALISATION, Weights, default_weight, score

__all__ = ["build_matrix", "criteria_for", "headline", "run_id"]


def build_matrix(
    root: Path,
    *,
    toolkits: Sequence[str],
    repeats: int,
    eval_metrics: Sequence[str],
    weights: Weights,
    weights_file: str | None,
    spec: Mapping[str, str],
    contract: Mapping[str, str],
    settings: Mapping[str, Any],
    phases: Mapping[str, float],
) -> PilotMatrix:
    """Read the pilot directory ``root`` and return its matrix (cells traced, scored, ``missing`` listed)."""
    root = Path(root)
    if weights.familiarity and weights_file is None:
        raise InputError(
            "team familiarity needs its weights file inside the pilot directory (it is the cells' source)"
        )
    fam_file = weights_file if weights.familiarity else None
    criteria = criteria_for(eval_metrics, repeats=repeats, familiarity=fam_file is not None)
    columns = []
    for tk in toolkits:
        col = Column(root, tk, repeats, fam_file)
        col.build(eval_metrics)
        col.uncertainties(eval_metrics)
        col.not_applicable()
        columns.append(
            ToolkitResult(
                toolkit=tk,
                version=col.version(),
                runs=tuple(col.runs),
                cells=col.cells,
                verdicts=col.verdicts(),
            )
        )
    resolved = weights.resolve(criteria, toolkits)
    scores, unweighted = score(criteria, {t.toolkit: t.cells for t in columns}, resolved, weights.familiarity)
    missing = tuple(
        f"{t.toolkit}/{c.key}: {cell.missing}"
        for t in columns
        for c in criteria
        if (cell := t.cells.get(c.key)) is not None and cell.value is None and not cell.not_applicable
    )
    return PilotMatrix(
        gate_version=__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        spec=dict(spec),
        contract=dict(contract),
        settings=dict(settings),
        criteria=tuple(criteria),
        toolkits=tuple(columns),
        weights=resolved,
        weights_source=weights.source,
        default_weights={
            **{k: v for k, v in DEFAULT_WEIGHTS.items() if any(c.key == k for c in criteria)},
            **{c.key: default_weight(c.key) for c in criteria if c.key.startswith("eval.") and c.better},
        },
        familiarity=dict(weights.familiarity),
        normalisation=NORMALISATION,
        scores=tuple(scores),
        unweighted=unweighted,
        headline=headline(columns, scores, resolved, unweighted),
        phases={k: round(v, 1) for k, v in phases.items()},
        missing=missing,
    )


def _names(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "none"


def headline(
    columns: Sequence[ToolkitResult],
    scores: Sequence[ToolkitScore],
    weights: Mapping[str, float],
    unweighted: Mapping[str, str],
) -> tuple[str, ...]:
    """What a reader must see first: gates nobody passes, who passes all, whether the scores separate."""
    lines: list[str] = []
    for gate in GATE_NAMES:
        if not any(t.verdicts.get(gate) == "passed" for t in columns):
            lines.append(f"No toolkit passes {gate}.")
    every = [t.toolkit for t in columns if all(t.verdicts.get(g) == "passed" for g in GATE_NAMES)]
    lines.append(
        f"Pass every gate: {_names(every)}."
        if every
        else "No toolkit passes every gate: none of these adapters could be released; "
        "the score only ranks them."
    )
    if not any(w > 0 and k not in unweighted for k, w in weights.items()):
        lines.append(
            "No criterion separates the toolkits: each is equal for all, not comparable, unmeasured, "
            "or its differences lie within the measurements' own uncertainty."
        )
        return tuple(lines)
    ranked = sorted(scores, key=lambda s: -s.score)
    best = ranked[0]
    tied = [s.toolkit for s in ranked[1:] if best.score - s.score <= best.uncertainty + s.uncertainty]
    text = f"Highest score: {best.toolkit} {best.score:.1f} ± {best.uncertainty:.1f}"
    if tied:
        text += f", not separated from {_names(tied)} (the scores overlap within their uncertainty)"
    lines.append(text + ".")
    return tuple(lines)
