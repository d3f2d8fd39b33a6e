"""One model's lm-eval results as per-document scores, read back (bounded) from lm-eval's files."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.errors import ToolError
from gate.evaluate._stats import metric_key

__all__ = ["ModelScores"]

_MAX_SAMPLES_BYTES = 1 << 30


@dataclass(frozen=True)
class ModelScores:
    """One model's lm-eval results on the contract's tasks, as per-document scores.

    Produced by :func:`score_base` (reusable across several :func:`run_eval`
    calls on the same server) and inside :func:`run_eval` for the adapter.
    """

    label: str
    model: str
    server_url: str
    tasks_sha256: str
    #: task -> "metric,filter" -> document key -> score
    per_doc: Mapping[str, Mapping[str, Mapping[str, float]]]
    #: task -> "metric,filter" -> lm-eval's own aggregate (and "<metric>_stderr,<filter>")
    aggregates: Mapping[str, Mapping[str, float | None]]
    raw_dir: Path
    seconds: float
    #: Documents scored per task (lm-eval ``limit``); ``None`` means every document.
    limit: int | None = None
    #: task -> document key -> the slice names its ``slice_field`` gave it.
    doc_tags: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    #: task -> document key -> a readable id (the document's own ``id`` field, else its position).
    doc_ids: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def doc_scores(self, task: str, key: str) -> Mapping[str, float] | None:
        """Per-document scores of ``task``'s ``metric,filter``, or ``None`` when absent."""
        metrics = self.per_doc.get(task)
        return None if metrics is None else metrics.get(key)


def _doc_key(row: Mapping[str, Any]) -> str:
    # Position and content together: a baseline only pairs with the very same documents.
    doc_hash = row.get("doc_hash")
    if not isinstance(doc_hash, str):
        doc_hash = hashlib.sha256(
            json.dumps(row.get("doc"), sort_keys=True, default=str).encode()
        ).hexdigest()
    return f"{row.get('doc_id')}:{doc_hash[:16]}"


def _score(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


#: Bounds on a document's slice tags (a hostile task file must not blow up the report).
_MAX_TAGS_PER_DOC = 16
_MAX_TAG_CHARS = 64


def _tags(doc: Any, slice_field: str | None) -> tuple[str, ...]:
    if slice_field is None or not isinstance(doc, Mapping):
        return ()
    value = doc.get(slice_field)
    values = value if isinstance(value, list) else [value]
    return tuple(
        dict.fromkeys(
            str(v)[:_MAX_TAG_CHARS]
            for v in values[:_MAX_TAGS_PER_DOC]
            if isinstance(v, str | int) and v != ""
        )
    )


def _doc_id(row: Mapping[str, Any]) -> str:
    doc = row.get("doc")
    if isinstance(doc, Mapping) and isinstance(doc.get("id"), str | int):
        return str(doc["id"])[:_MAX_TAG_CHARS]
    return f"doc {row.get('doc_id')}"


@dataclass(frozen=True)
class JobRows:
    """What one lm-eval job left: per-document scores, slice tags and ids, and lm-eval's results."""

    per_doc: dict[str, dict[str, dict[str, float]]]
    tags: dict[str, dict[str, tuple[str, ...]]]
    ids: dict[str, dict[str, str]]
    results: dict[str, Any]


def _read_job(out: Path, tasks: Sequence[str], slice_fields: Mapping[str, str | None]) -> JobRows:
    results_path = out / "results.json"
    if not results_path.is_file():
        raise ToolError(f"lm-eval wrote no results to {out}")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    rows = JobRows({}, {}, {}, results if isinstance(results, dict) else {})
    for task in tasks:
        path = out / "samples" / f"{task}.jsonl"
        metrics: dict[str, dict[str, float]] = {}
        tags: dict[str, tuple[str, ...]] = {}
        ids: dict[str, str] = {}
        if path.is_file():
            if path.stat().st_size > _MAX_SAMPLES_BYTES:
                raise ToolError(f"{path} is larger than {_MAX_SAMPLES_BYTES >> 20} MiB")
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    flt = str(row.get("filter", "none"))
                    key = _doc_key(row)
                    ids[key] = _doc_id(row)
                    found = _tags(row.get("doc"), slice_fields.get(task))
                    if found:
                        tags[key] = found
                    for name in row.get("metrics") or []:
                        value = _score(row.get(name))
                        # Corpus-level metrics (BLEU...) carry no per-document number: they stay absent.
                        if value is not None:
                            metrics.setdefault(metric_key(str(name), flt), {})[key] = value
        rows.per_doc[task] = metrics
        rows.tags[task] = tags
        rows.ids[task] = ids
    return rows


def _aggregates(results: Mapping[str, Any], tasks: Sequence[str]) -> dict[str, dict[str, float | None]]:
    table = results.get("results") or {}
    out: dict[str, dict[str, float | None]] = {}
    for task in tasks:
        row = table.get(task) or {}
        # JSON has no NaN: a non-finite aggregate is recorded as null (the verdict uses per-document scores).
        out[task] = {k: _finite_or_none(_score(v)) for k, v in row.items() if "," in k}
    return out
