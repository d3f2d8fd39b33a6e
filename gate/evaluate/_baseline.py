"""The last release's per-document scores, as the comparison for ``gate eval --baseline``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from gate.errors import InputError
from gate.evaluate._report import REPORT_KIND
from gate.evaluate._scores import _score

__all__ = ["load_baseline"]

_MAX_REPORT_BYTES = 256 << 20


def _find_report(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise InputError(f"--baseline {path} is neither a report file nor a bundle directory")
    for rel in (
        "eval/report.json",
        "eval-report.json",
        "eval_report.json",
        "reports/eval.json",
        "report.json",
    ):
        candidate = path / rel
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    # A bundle laid out differently: any JSON file that says it is an eval report (bounded search).
    for n, candidate in enumerate(sorted(path.rglob("*.json"))):
        if n > 500:
            break
        if candidate.is_symlink() or candidate.stat().st_size > _MAX_REPORT_BYTES:
            continue
        with open(candidate, "rb") as fh:
            head = fh.read(4096)
        if REPORT_KIND.encode() in head:
            return candidate
    raise InputError(
        f"--baseline {path} holds no gate eval report",
        hint="pass the released bundle directory or its eval report JSON (kind gate.eval-report)",
    )


def load_baseline(path: Path) -> tuple[Path, dict[str, dict[str, dict[str, float]]]]:
    """The released adapter's per-document scores from a bundle directory or an eval report file."""
    report_path = _find_report(Path(path))
    if report_path.is_symlink():
        raise InputError(f"--baseline {report_path} is a symlink")
    size = report_path.stat().st_size
    if size > _MAX_REPORT_BYTES:
        raise InputError(f"--baseline {report_path} is {size} bytes (limit {_MAX_REPORT_BYTES})")
    try:
        data = json.loads(report_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"--baseline {report_path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or data.get("kind") != REPORT_KIND:
        raise InputError(f"--baseline {report_path} is not a gate eval report (kind {REPORT_KIND!r})")
    scores = (data.get("per_document") or {}).get("adapter")
    if not isinstance(scores, dict):
        raise InputError(f"--baseline {report_path} has no per-document adapter scores")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for task, metrics in scores.items():
        if not isinstance(metrics, dict):
            raise InputError(f"--baseline {report_path}: per_document.adapter.{task} is not an object")
        for key, docs in metrics.items():
            if not isinstance(docs, dict):
                raise InputError(
                    f"--baseline {report_path}: per_document.adapter.{task}.{key} is not an object"
                )
            # JSON null is how a NaN was written: keep it NaN so the verdict fails, never passes.
            values: dict[str, float] = {}
            for doc, value in docs.items():
                number = _score(value)
                values[str(doc)] = math.nan if number is None else number
            out.setdefault(task, {})[key] = values
    return report_path, out
