"""A pilot's matrix files: writing them, reading ``pilot.json`` back, re-scoring a finished pilot.

:mod:`._runner` trains and gates, then writes the matrix here; :func:`rescore` rebuilds
it from the run records and gate reports already on disk (other weights, a newer
scoring) without running anything.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gate.console import atomic_write_json, atomic_write_text, err
from gate.errors import InputError
from gate.pilot._build import build_matrix
from gate.pilot._matrix import PilotMatrix
from gate.pilot._render import render_html, render_markdown, score_chart_svg
from gate.pilot._weights import Weights

__all__ = ["PilotResult", "load_matrix", "rescore", "write_outputs"]

MATRIX_FILE = "pilot.json"
MARKDOWN_FILE = "pilot.md"
HTML_FILE = "pilot.html"
CHART_FILE = "pilot-chart.svg"


@dataclass(frozen=True)
class PilotResult:
    """The matrix and where it was written."""

    matrix: PilotMatrix
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when every cell was measured, 1 when some could not be (a run or gate failed to produce it)."""
        return 0 if self.matrix.complete else 1


def write_outputs(matrix: PilotMatrix, out: Path) -> dict[str, Path]:
    """Write pilot.json, pilot.md, pilot.html and pilot-chart.svg into ``out`` atomically."""
    files = {
        "json": out / MATRIX_FILE,
        "markdown": out / MARKDOWN_FILE,
        "html": out / HTML_FILE,
        "chart": out / CHART_FILE,
    }
    atomic_write_json(files["json"], matrix.to_dict())
    atomic_write_text(files["markdown"], render_markdown(matrix))
    atomic_write_text(files["html"], render_html(matrix))
    atomic_write_text(files["chart"], score_chart_svg(matrix) + "\n")
    return files


def _weights_of(out: Path, old: PilotMatrix, weights_path: Path | None) -> tuple[Weights, str | None]:
    if weights_path is not None:
        weights = Weights.load(weights_path)
        inputs = out / "inputs"
        inputs.mkdir(exist_ok=True)
        for stale in inputs.glob("weights.*"):
            stale.unlink()
        weights_file = f"inputs/weights{weights_path.suffix or '.yaml'}"
        shutil.copyfile(weights_path, out / weights_file)
        return weights, weights_file
    kept = sorted((out / "inputs").glob("weights.*")) if old.weights_source != "default" else []
    if kept:
        return Weights.load(kept[0]), f"inputs/{kept[0].name}"
    return Weights(), None


def rescore(out_dir: Path, *, weights_path: Path | None = None) -> PilotResult:
    """Rebuild and re-score the matrix of the pilot in ``out_dir`` from its run records and gate reports.

    Nothing trains or runs: the cells are traced again from the same files, so a
    newer scoring, or other weights (``weights_path``), apply to a finished pilot.
    """
    out = Path(out_dir)
    old = load_matrix(out / MATRIX_FILE)
    weights, weights_file = _weights_of(out, old, weights_path)
    metrics = [
        c.key.removeprefix("eval.").removesuffix(".delta")
        for c in old.criteria
        if c.key.startswith("eval.") and c.key.endswith(".delta")
    ]
    settings = dict(old.settings)
    toolkits = tuple(str(t) for t in settings.get("toolkits") or [t.toolkit for t in old.toolkits])
    matrix = build_matrix(
        out,
        toolkits=toolkits,
        repeats=int(settings.get("repeats") or 1),
        eval_metrics=metrics,
        weights=weights,
        weights_file=weights_file,
        spec=old.spec,
        contract=old.contract,
        settings={**settings, "rescored_at": datetime.now(UTC).isoformat(timespec="seconds")},
        phases=old.phases,
    )
    files = write_outputs(matrix, out)
    err.print(f"gate pilot: matrix rebuilt from {out}: {files['html']}")
    return PilotResult(matrix, out, files)


def load_matrix(path: Path, *, max_bytes: int = 16 << 20) -> PilotMatrix:
    """Read and validate a ``pilot.json`` (bounded size, no symlink)."""
    import json

    if path.is_symlink() or not path.is_file():
        raise InputError(f"{path}: not a regular file")
    if path.stat().st_size > max_bytes:
        raise InputError(f"{path}: larger than {max_bytes} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON: {e}") from None
    return PilotMatrix.from_dict(data, where=str(path))
