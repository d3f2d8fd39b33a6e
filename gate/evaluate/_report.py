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
REPORT_VERSION = "1.0"

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

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready report (versioned, self-contained)."""
        return {
            "kind": REPORT_KIND,
            "version": REPORT_VERSION,
            "passed": self.passed,
            "reference": self.reference,
            "error": self.error,
            "failures": self.failures,
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
    if isinstance(baseline, Mapping) and baseline.get("path"):
        lines.append(f"- compared with the last released bundle: `{baseline.get('path')}`")
    else:
        lines.append(f"- compared with: the {ref} model, same server, same documents")
    conf = report.get("confidence")
    if isinstance(conf, int | float):
        lines.append(
            f"- a metric fails when its one-sided {conf:.0%} lower bound of (adapter - {ref}), "
            "from the paired per-document stderr, is below -max_regression, or it is below its minimum"
        )
    lines.append("")
    metrics = report.get("metrics")
    if isinstance(metrics, Sequence) and metrics:
        lines.append(
            f"| task | metric | n | {ref} | adapter | delta | paired stderr | lower bound | min | "
            "max regression | verdict |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for m in metrics:
            if not isinstance(m, Mapping):
                continue
            lines.append(
                f"| {m.get('task')} | {m.get('metric')},{m.get('filter')} | {m.get('n')} "
                f"| {_num(m.get('reference_score'))} | {_num(m.get('adapter'))} "
                f"| {_num(m.get('delta'), signed=True)} | {_num(m.get('stderr'))} "
                f"| {_num(m.get('lower_bound'), signed=True)} | {_num(m.get('min'), 2)} "
                f"| {_num(m.get('max_regression'), 2)} "
                f"| {'pass' if m.get('passed') is True else '**FAIL**'} |"
            )
        lines.append("")
    failures = report.get("failures")
    if isinstance(failures, Sequence) and failures:
        lines.append("## Why it failed")
        lines.append("")
        lines += [f"- {f}" for f in failures]
        lines.append("")
    raw = report.get("raw")
    if isinstance(raw, Mapping) and raw:
        lines.append(
            "Raw lm-eval results and per-document samples: " + ", ".join(f"`{p}`" for p in raw.values())
        )
        lines.append("")
    return "\n".join(lines)
