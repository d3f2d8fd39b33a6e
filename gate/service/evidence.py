"""Each gate's report as the rows of the UI's evidence tables (a view of the reports, never a second verdict).

Reports come from the database as the pipeline wrote them; every field is read
defensively (a report from an older gate version may lack one) and shown as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Table", "check_tables", "eval_tables", "smoke_tables", "tables_for"]


@dataclass(frozen=True)
class Table:
    """One evidence table: a caption, column names and rows of cell text."""

    id: str
    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str = "nothing to show"


def _text(value: Any, limit: int = 2000) -> str:
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    return s if len(s) <= limit else s[:limit] + "…"


def _num(value: Any, signed: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def check_tables(report: Mapping[str, Any]) -> list[Table]:
    """Findings: rule, severity, message, file, fix."""
    rows = tuple(
        (
            _text(f.get("rule")),
            _text(f.get("severity")),
            _text(f.get("message")),
            _text(f.get("path")),
            _text(f.get("hint")),
        )
        for f in _dicts(report.get("findings"))
    )
    return [
        Table(
            "check-findings",
            "Packaging findings",
            ("rule", "severity", "finding", "file", "fix"),
            rows,
            empty="no findings: every rule passed",
        )
    ]


def smoke_tables(report: Mapping[str, Any]) -> list[Table]:
    """Probes (status and message), then each prompt's expected and actual text."""
    probes = _dicts(report.get("probes"))
    summary = tuple(
        (_text(p.get("name")), _text(p.get("status")), _text(p.get("message")), _num(p.get("seconds")))
        for p in probes
    )
    answers: list[tuple[str, ...]] = []
    for p in probes:
        details = p.get("details")
        for a in _dicts(details.get("answers") if isinstance(details, Mapping) else None):
            expected = a.get("expect_regex")
            if "matched" in a:
                verdict = "matched" if a.get("matched") else "no match"
            elif "same_tokens_as_chat" in a:
                verdict = "same tokens as chat" if a.get("same_tokens_as_chat") else "differs from chat"
            else:
                verdict = _text(a.get("finish_reason"))
            answers.append(
                (
                    _text(p.get("name")),
                    _text(a.get("prompt")),
                    f"/{expected}/" if expected else "any non-empty answer",
                    _text(a.get("text")),
                    verdict,
                )
            )
    return [
        Table("smoke-probes", "Smoke probes", ("probe", "status", "result", "seconds"), summary),
        Table(
            "smoke-answers",
            "Probe answers: expected and actual text",
            ("probe", "prompt", "expected", "actual", "verdict"),
            tuple(answers),
            empty="no prompt answers recorded",
        ),
    ]


def eval_tables(report: Mapping[str, Any]) -> list[Table]:
    """Metrics: base, adapter, delta, lower bound, threshold and verdict."""
    rows = []
    for m in _dicts(report.get("metrics")):
        floor = m.get("min")
        threshold = f"regression ≤ {_num(m.get('max_regression'))}"
        if isinstance(floor, int | float) and not isinstance(floor, bool):
            threshold += f", adapter ≥ {_num(floor)}"
        reasons = m.get("reasons")
        why = "; ".join(_text(r) for r in reasons) if isinstance(reasons, list) else ""
        rows.append(
            (
                _text(m.get("key") or f"{m.get('task')}/{m.get('metric')}"),
                _text(m.get("n")),
                _num(m.get("reference_score")),
                _num(m.get("adapter")),
                _num(m.get("delta"), signed=True),
                _num(m.get("lower_bound"), signed=True),
                threshold,
                ("passed" if m.get("passed") else "failed") + (f": {why}" if why else ""),
            )
        )
    tables = [
        Table(
            "eval-metrics",
            "Evaluation: adapter vs " + _text(report.get("reference") or "base"),
            ("metric", "n", "base", "adapter", "delta", "lower bound", "threshold", "verdict"),
            tuple(rows),
            empty="no metrics in the report",
        )
    ]
    slices = _slice_rows(report)
    if slices:
        tables.append(
            Table(
                "eval-slices",
                "Evaluation by slice (tagged documents, judged like the whole task)",
                (
                    "metric",
                    "slice",
                    "n",
                    "base",
                    "adapter",
                    "delta",
                    "lower bound",
                    "regressed",
                    "failing documents",
                ),
                slices,
            )
        )
    return tables


def _slice_rows(report: Mapping[str, Any]) -> tuple[tuple[str, ...], ...]:
    rows = []
    for m in _dicts(report.get("metrics")):
        key = _text(m.get("key") or f"{m.get('task')}/{m.get('metric')}")
        for sl in _dicts(m.get("slices")):
            docs = [_text(d, 200) for d in sl.get("failing_documents") or [] if isinstance(d, str)][:10]
            count = sl.get("failing_count")
            more = count - len(docs) if isinstance(count, int) and count > len(docs) else 0
            rows.append(
                (
                    key,
                    _text(sl.get("name")),
                    _text(sl.get("n")),
                    _num(sl.get("reference_score")),
                    _num(sl.get("adapter")),
                    _num(sl.get("delta"), signed=True),
                    _num(sl.get("lower_bound"), signed=True),
                    "yes" if sl.get("regressed") is True else "no",
                    ", ".join(docs) + (f" (+{more})" if more else ""),
                )
            )
    return tuple(rows)


_BY_GATE = {"check": check_tables, "smoke": smoke_tables, "eval": eval_tables}


def tables_for(gate: str, report: Any) -> list[Table]:
    """The evidence tables of one gate's report (none for a gate without a known report)."""
    if not isinstance(report, Mapping) or gate not in _BY_GATE:
        return []
    return _BY_GATE[gate](report)
