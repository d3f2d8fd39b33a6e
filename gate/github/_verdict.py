"""A verdict read as gate rows and findings, rendered as summary markdown and error annotations."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gate.github._actions import Annotation, workspace_relative
from gate.github._markdown import MESSAGE_LIMIT, markdown_table, md_cell, plain

#: GitHub displays at most 10 error annotations per step; more are dropped silently.
MAX_ANNOTATIONS = 10


@dataclass(frozen=True)
class Finding:
    """One problem a gate reported, normalised from the gate's own report."""

    gate: str
    message: str
    severity: str = "error"
    rule: str = ""
    file: str | None = None
    line: int | None = None
    #: Where in the adapter or bundle the problem is (shown in the table; ``file`` is what an
    #: annotation links to, a file of the repository).
    where: str = ""


@dataclass(frozen=True)
class GateRow:
    """One gate's line in the summary: name, status, one-line detail and its findings."""

    name: str
    status: str
    detail: str
    findings: tuple[Finding, ...] = ()
    markdown: str = ""


_STATUS_ICON = {"passed": "✅ passed", "failed": "❌ failed", "skipped": "⏭️ skipped", "error": "💥 error"}


def gate_rows(verdict: Mapping[str, Any]) -> list[GateRow]:
    """The gates of a release verdict, in order.

    Accepts ``gates`` as a list of objects with ``name`` or as a mapping
    name -> object; each gate carries ``passed`` (bool) or ``status``
    (passed/failed/skipped/error), an optional one-line ``summary``
    (or ``message``/``reason``/``error``) and optional ``findings``.
    """
    raw = verdict.get("gates") or []
    items: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(raw, Mapping):
        items = [(str(k), v) for k, v in raw.items() if isinstance(v, Mapping)]
    elif isinstance(raw, list):
        items = [
            (str(g.get("name") or g.get("gate") or f"gate {i + 1}"), g)
            for i, g in enumerate(raw)
            if isinstance(g, Mapping)
        ]
    rows = []
    for name, gate in items:
        nested = gate.get("report")
        report: Mapping[str, Any] = nested if isinstance(nested, Mapping) else {}
        findings = tuple(_findings(name, gate.get("findings") or report.get("findings") or []))
        rows.append(
            GateRow(
                name=name,
                status=_status(gate),
                detail=plain(
                    next((gate[k] for k in ("summary", "message", "reason", "error") if gate.get(k)), "")
                ),
                findings=findings,
                markdown=str(gate.get("markdown") or ""),
            )
        )
    return rows


def _status(gate: Mapping[str, Any]) -> str:
    status = gate.get("status")
    if isinstance(status, str) and status:
        s = status.lower()
        return {"pass": "passed", "ok": "passed", "fail": "failed", "skip": "skipped"}.get(s, s)
    passed = gate.get("passed")
    if passed is None and isinstance(gate.get("report"), Mapping):
        passed = gate["report"].get("passed")
    if passed is True:
        return "passed"
    if passed is False:
        return "failed"
    return "skipped"


def _findings(gate: str, raw: object) -> Iterable[Finding]:
    if not isinstance(raw, list):
        return
    for item in raw:
        if isinstance(item, str):
            yield Finding(gate=gate, message=item)
            continue
        if not isinstance(item, Mapping):
            continue
        line = item.get("line")
        yield Finding(
            gate=gate,
            message=plain(item.get("message") or item.get("detail") or item.get("summary") or ""),
            severity=str(item.get("severity") or item.get("level") or "error").lower(),
            rule=plain(item.get("rule") or item.get("code") or item.get("id") or item.get("check") or ""),
            file=str(item.get("file") or item.get("path"))
            if (item.get("file") or item.get("path"))
            else None,
            line=line if isinstance(line, int) and not isinstance(line, bool) and line > 0 else None,
            where=plain(item.get("where") or ""),
        )


def _overall(verdict: Mapping[str, Any], rows: Sequence[GateRow]) -> bool:
    for key in ("released", "passed"):
        if isinstance(verdict.get(key), bool):
            return bool(verdict[key])
    status = verdict.get("verdict") or verdict.get("status")
    if isinstance(status, str):
        return status.lower() in ("pass", "passed", "released", "ok")
    # No explicit verdict: pass only when there are gates and every one passed (never fail open).
    return bool(rows) and all(r.status == "passed" for r in rows)


def render_markdown(verdict: Mapping[str, Any], *, title: str = "gate release") -> str:
    """The verdict as markdown: a headline, a table of gates, a table of findings, details."""
    rows = gate_rows(verdict)
    ok = _overall(verdict, rows)
    parts = [f"## {md_cell(title)}: {'✅ released' if ok else '❌ not released'}\n"]
    facts = [
        (label, verdict.get(key))
        for label, key in (
            ("Adapter", "adapter"),
            ("Run", "run"),
            ("Contract", "contract"),
            ("Reference", "ref"),
            ("Digest", "digest"),
            ("Signing", "sign_method"),
            ("Bundle", "bundle"),
        )
        if verdict.get(key) not in (None, "")
    ]
    if facts:
        parts.append(markdown_table(("Item", "Value"), facts))
    if rows:
        parts.append("### Gates\n")
        parts.append(
            markdown_table(
                ("Gate", "Status", "Detail"),
                ((r.name, _STATUS_ICON.get(r.status, r.status), r.detail) for r in rows),
            )
        )
    else:
        parts.append("_No gate ran._\n")
    findings = [f for r in rows for f in r.findings]
    if findings:
        parts.append("### Findings\n")
        parts.append(
            markdown_table(
                ("Gate", "Severity", "Rule", "Message", "File"),
                ((f.gate, f.severity, f.rule, f.message, f.where or _location(f)) for f in findings),
            )
        )
    error = verdict.get("error")
    if error:
        parts.append(f"**Error:** {md_cell(error, limit=MESSAGE_LIMIT)}\n")
    for r in rows:
        if r.markdown:
            # Gate-generated markdown (e.g. the eval report's own tables): kept as written.
            parts.append(
                f"<details><summary>{md_cell(r.name)} report</summary>\n\n{r.markdown.strip()}\n\n"
                "</details>\n"
            )
    return "\n".join(parts)


def annotations_for(
    verdict: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
) -> list[Annotation]:
    """Error annotations for a verdict: one per failing finding, else one per failed gate.

    At most :data:`MAX_ANNOTATIONS` are returned (GitHub drops the rest); the last
    one then says how many more are in the summary.
    """
    env = os.environ if environ is None else environ
    rows = gate_rows(verdict)
    notes: list[Annotation] = []
    for r in rows:
        bad = [f for f in r.findings if f.severity in ("error", "fail", "failed", "critical")]
        if r.status in ("failed", "error") and bad:
            for f in bad:
                title = f"gate {r.name}" + (f": {f.rule}" if f.rule else "")
                notes.append(
                    Annotation(
                        message=f.message or r.detail or f"{r.name} failed",
                        title=title,
                        file=workspace_relative(f.file, env) if f.file else None,
                        line=f.line,
                    )
                )
        elif r.status in ("failed", "error"):
            notes.append(
                Annotation(message=r.detail or f"the {r.name} gate {r.status}", title=f"gate {r.name}")
            )
    if not rows and not _overall(verdict, rows):
        notes.append(Annotation(message=plain(verdict.get("error") or "no gate ran"), title="gate release"))
    elif verdict.get("error") and not notes:
        notes.append(Annotation(message=plain(verdict["error"]), title="gate release"))
    if len(notes) > MAX_ANNOTATIONS:
        extra = len(notes) - (MAX_ANNOTATIONS - 1)
        notes = notes[: MAX_ANNOTATIONS - 1]
        notes.append(Annotation(message=f"{extra} more problems: see the job summary", title="gate release"))
    return notes


def _location(f: Finding) -> str:
    if not f.file:
        return ""
    return f"{f.file}:{f.line}" if f.line else f.file
