"""The evaluation report: JSON for machines, Markdown for people, both from one dict.

The JSON form is self-contained (verdicts, per-document scores, provenance),
so the release bundle carries it and ``gate verify bundle`` can render it with
:func:`render_markdown` without re-running anything. A later ``gate eval
--baseline`` reads the adapter's per-document scores back from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.console import atomic_write_json, atomic_write_text
from gate.evaluate._stats import MetricVerdict

__all__ = ["REPORT_KIND", "REPORT_VERSION", "EvalReport", "render_markdown"]

REPORT_KIND = "gate.eval-report"
REPORT_VERSION = "1.1"

#: task -> "metric,filter" -> document key -> score
PerDoc = Mapping[str, Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True)
class EvalReport:
    """Outcome of ``gate eval``: one verdict per contract metric, or the error that stopped it."""

    passed: bool
    verdicts: tuple[MetricVerdict, ...]
    #: Why the evaluation could not complete (server died, timed out, evaluator crashed).
    error: str | None
    #: ``"base"`` or ``"baseline"``.
    reference: str
    context: Mapping[str, Any] = field(default_factory=dict)
    #: Per-document scores by model label (``"adapter"``, ``"base"``).
    scores: Mapping[str, PerDoc] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """Every reason the gate failed, each naming the metric and the margin."""
        reasons = [r for v in self.verdicts for r in v.reasons]
        if self.error:
            reasons.insert(0, self.error)
        if not self.verdicts and not self.error:
            reasons.append("no metric was judged (an empty evaluation never passes)")
        return reasons

    @property
    def warnings(self) -> list[str]:
        """What did not fail the gate but a reviewer must see (underpowered tasks, regressed slices)."""
        return [w for v in self.verdicts for w in v.warnings]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready report (versioned, self-contained)."""
        return {
            "kind": REPORT_KIND,
            "version": REPORT_VERSION,
            "passed": self.passed,
            "reference": self.reference,
            "error": self.error,
            "failures": self.failures,
            "warnings": self.warnings,
            "metrics": [v.to_dict() for v in self.verdicts],
            **dict(self.context),
            "per_document": {label: _plain(s) for label, s in self.scores.items()},
        }

    def to_markdown(self) -> str:
        """A human-readable summary (the same text :func:`render_markdown` makes from the JSON)."""
        return render_markdown(self.to_dict())

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """Write ``report.json`` and ``report.md`` into ``out_dir`` atomically."""
        json_path, md_path = out_dir / "report.json", out_dir / "report.md"
        data = self.to_dict()
        atomic_write_json(json_path, data)
        atomic_write_text(md_path, render_markdown(data))
        return json_path, md_path


def _plain(scores: PerDoc) -> dict[str, dict[str, dict[str, float | None]]]:
    return {
        task: {
            key: {doc: (v if math.isfinite(v) else None) for doc, v in docs.items()}
            for key, docs in metrics.items()
        }
        for task, metrics in scores.items()
    }


def _num(value: Any, digits: int = 4, signed: bool = False) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    if signed:
        return f"{value:+.{digits}f}"
    return f"{value:.{digits}f}"


def _text(value: Any) -> str:
    # Report text may come from a bundle: keep it from breaking the table.
    return "-" if not isinstance(value, str) else value.replace("|", "\\|").replace("\n", " ")[:200]


def _slice_lines(metrics: Sequence[Any], ref: str) -> list[str]:
    lines: list[str] = []
    for m in metrics:
        slices = m.get("slices") if isinstance(m, Mapping) else None
        if not isinstance(slices, Sequence) or not slices:
            continue
        lines.append(
            f"### Slices of {_text(m.get('task'))} / {_text(m.get('metric'))},{_text(m.get('filter'))}"
        )
        lines.append("")
        lines.append(f"| slice | n | {ref} | adapter | delta | lower bound | regressed | failing documents |")
        lines.append("|---|---:|---:|---:|---:|---:|---|---|")
        for sl in slices:
            if not isinstance(sl, Mapping):
                continue
            docs = sl.get("failing_documents")
            shown = ", ".join(_text(d) for d in docs[:10]) if isinstance(docs, Sequence) else ""
            count = sl.get("failing_count")
            if isinstance(count, int) and isinstance(docs, Sequence) and count > min(len(docs), 10):
                shown += f" (+{count - min(len(docs), 10)})"
            lines.append(
                f"| {_text(sl.get('name'))} | {sl.get('n')} | {_num(sl.get('reference_score'))} "
                f"| {_num(sl.get('adapter'))} | {_num(sl.get('delta'), signed=True)} "
                f"| {_num(sl.get('lower_bound'), signed=True)} "
                f"| {'**yes**' if sl.get('regressed') is True else 'no'} | {shown or '-'} |"
            )
        lines.append("")
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """Render a report dict (from :meth:`EvalReport.to_dict` or a bundle's JSON) as Markdown."""
    verdict = "PASSED" if report.get("passed") is True else "FAILED"
    ref = str(report.get("reference") or "base")
    lines = [f"# gate eval: {verdict}", ""]
    adapter = report.get("adapter")
    if isinstance(adapter, Mapping) and adapter.get("path"):
        lines.append(f"- adapter: `{adapter.get('path')}`")
    contract = report.get("contract")
    if isinstance(contract, Mapping) and contract.get("path"):
        lines.append(
            f"- contract: `{contract.get('path')}` (sha256 `{str(contract.get('sha256', ''))[:16]}…`)"
        )
    server = report.get("server")
    if isinstance(server, Mapping) and server.get("url"):
        lines.append(f"- server: {server.get('url')} (base model `{server.get('served_model')}`)")
    baseline = report.get("baseline")
    if isinstance(baseline, Mapping) and baseline.get("ref"):
        lines.append(
            f"- compared with the verified release `{_text(baseline.get('ref'))}` "
            f"(signed by {_text(baseline.get('signer'))})"
        )
    else:
        lines.append(f"- compared with: the {ref} model, same server, same documents")
    conf = report.get("confidence")
    if isinstance(conf, int | float):
        lines.append(
            f"- a metric fails when its one-sided {conf:.0%} lower bound of (adapter - {ref}) is below "
            "-max_regression, or it is below its minimum; the bound's method is the metric's test "
            "(mcnemar-exact: binary, < 25 discordant documents; paired-normal: binary, >= 25; "
            "paired-t: continuous)"
        )
    lines.append("")
    metrics = report.get("metrics")
    if isinstance(metrics, Sequence) and metrics:
        lines.append(
            f"| task | metric | n | {ref} | adapter | delta | test | lower bound | min | "
            "max regression | min detectable | verdict |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|")
        for m in metrics:
            if not isinstance(m, Mapping):
                continue
            mdr = _num(m.get("min_detectable_regression"))
            if m.get("underpowered") is True:
                mdr += " (underpowered)"
            lines.append(
                f"| {m.get('task')} | {m.get('metric')},{m.get('filter')} | {m.get('n')} "
                f"| {_num(m.get('reference_score'))} | {_num(m.get('adapter'))} "
                f"| {_num(m.get('delta'), signed=True)} | {_text(m.get('test'))} "
                f"| {_num(m.get('lower_bound'), signed=True)} | {_num(m.get('min'), 2)} "
                f"| {_num(m.get('max_regression'), 2)} | {mdr} "
                f"| {'pass' if m.get('passed') is True else '**FAIL**'} |"
            )
        lines.append("")
        lines += _slice_lines(metrics, ref)
    for title, key in (("Why it failed", "failures"), ("Warnings", "warnings")):
        items = report.get(key)
        if isinstance(items, Sequence) and not isinstance(items, str) and items:
            lines.append(f"## {title}")
            lines.append("")
            lines += [f"- {f}" for f in items]
            lines.append("")
    raw = report.get("raw")
    if isinstance(raw, Mapping) and raw:
        lines.append(
            "Raw lm-eval results and per-document samples: " + ", ".join(f"`{p}`" for p in raw.values())
        )
        lines.append("")
    return "\n".join(lines)
