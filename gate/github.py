"""GitHub Actions integration: the job summary and error annotations gate writes itself.

Inside a GitHub Actions job (``GITHUB_ACTIONS=true``) gate appends its verdict to
the step summary (``$GITHUB_STEP_SUMMARY``, markdown tables) and prints one
``::error`` workflow command per failed gate or finding, so a failed release
shows up on the run page and in the pull request. Outside Actions every
function here is a no-op and returns ``False``; the same markdown is available
from :func:`render_markdown` (``gate release ... --summary FILE``).

Example::

    from gate import github

    verdict = {"released": False, "gates": [{"name": "check", "passed": False,
               "findings": [{"rule": "rank", "message": "rank 64 > max 16"}]}]}
    github.report(verdict, summary_file=Path("summary.md"))

Workflow commands are written to stderr: the Actions runner reads commands from
both output streams, and gate keeps stdout for results (``--json | jq``).
"""

from __future__ import annotations

import html
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TextIO

from gate.console import atomic_write_text

__all__ = [
    "MAX_ANNOTATIONS",
    "SUMMARY_LIMIT_BYTES",
    "Annotation",
    "Finding",
    "GateRow",
    "ReportOutcome",
    "annotate",
    "annotate_error",
    "annotations_for",
    "escape_data",
    "escape_property",
    "gate_rows",
    "in_actions",
    "markdown_table",
    "md_cell",
    "release_verdict",
    "render_markdown",
    "report",
    "report_error",
    "write_summary",
]

#: GitHub refuses a step summary larger than 1 MiB (and then shows none of it).
SUMMARY_LIMIT_BYTES = 1024 * 1024
#: GitHub displays at most 10 error annotations per step; more are dropped silently.
MAX_ANNOTATIONS = 10
#: A gate report larger than this is not read for findings (reports are KBs; a bundle is not trusted).
_REPORT_LIMIT_BYTES = 8 << 20
#: The gates a release runs, in order (gate.bundle.REQUIRED_GATES), then what follows them.
_RELEASE_STEPS = ("check", "smoke", "eval")
#: A table cell longer than this is cut: findings can quote hostile adapter files.
_CELL_LIMIT = 300
_MESSAGE_LIMIT = 2000

Level = Literal["error", "warning", "notice"]


def in_actions(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs inside a GitHub Actions job (``GITHUB_ACTIONS=true``)."""
    env = os.environ if environ is None else environ
    return env.get("GITHUB_ACTIONS") == "true"


def escape_data(value: str) -> str:
    """Escape the message part of a workflow command (``%``, CR, LF), as @actions/core does."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a workflow-command property value (data escapes plus ``:`` and ``,``)."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True)
class Annotation:
    """One workflow-command annotation (``::error file=...,title=...::message``)."""

    message: str
    level: Level = "error"
    title: str | None = None
    file: str | None = None
    line: int | None = None
    end_line: int | None = None
    col: int | None = None
    end_column: int | None = None

    def to_command(self) -> str:
        """The workflow-command line, with every property and the message escaped."""
        props: list[tuple[str, str]] = []
        for key, value in (
            ("title", self.title),
            ("file", self.file),
            ("line", self.line),
            ("endLine", self.end_line),
            ("col", self.col),
            ("endColumn", self.end_column),
        ):
            if value is not None and value != "":
                props.append((key, escape_property(str(value))))
        head = f"::{self.level}"
        if props:
            head += " " + ",".join(f"{k}={v}" for k, v in props)
        return f"{head}::{escape_data(_clip(self.message, _MESSAGE_LIMIT))}"


def annotate(
    annotation: Annotation, *, stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Print ``annotation`` as a workflow command when in Actions; return whether it was printed."""
    if not in_actions(environ):
        return False
    out = sys.stderr if stream is None else stream
    out.write(annotation.to_command() + "\n")
    out.flush()
    return True


def annotate_error(
    message: str,
    *,
    file: str | os.PathLike[str] | None = None,
    line: int | None = None,
    title: str | None = None,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Print an ``::error`` annotation when in Actions (paths made relative to the workspace)."""
    env = os.environ if environ is None else environ
    rel = _workspace_relative(file, env) if file is not None else None
    return annotate(
        Annotation(message=message, title=title, file=rel, line=line), stream=stream, environ=environ
    )


def write_summary(markdown: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Append ``markdown`` to the step summary when in Actions; return whether it was written.

    The summary file is shared by every command of the step, so gate appends, as
    ``echo ... >> $GITHUB_STEP_SUMMARY`` does. Text that would push the file past
    GitHub's 1 MiB limit is cut, with a note, rather than losing the whole summary.
    """
    env = os.environ if environ is None else environ
    target = env.get("GITHUB_STEP_SUMMARY")
    if not in_actions(env) or not target:
        return False
    path = Path(target)
    used = path.stat().st_size if path.exists() else 0
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    room = SUMMARY_LIMIT_BYTES - used - 200
    data = text.encode("utf-8")
    if len(data) > room:
        cut = data[: max(room, 0)].decode("utf-8", errors="ignore")
        text = cut + "\n\n_(gate: summary cut at GitHub's 1 MiB limit; the full report is in the bundle)_\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
    return True


def md_cell(value: object, *, limit: int = _CELL_LIMIT) -> str:
    """Render ``value`` safely inside a markdown table cell.

    HTML is escaped (the summary renders HTML, and messages may quote adapter
    files), pipes are escaped so they cannot split the row, and newlines become
    ``<br>`` so they cannot end it.
    """
    text = _clip(_plain(value), limit)
    text = html.escape(text, quote=False).replace("|", "\\|")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; every cell is escaped with :func:`md_cell`."""
    lines = [
        "| " + " | ".join(md_cell(h) for h in headers) + " |",
        "|" + "|".join(" --- " for _ in headers) + "|",
    ]
    for row in rows:
        cells = [md_cell(c) for c in row]
        cells += [""] * (len(headers) - len(cells))
        lines.append("| " + " | ".join(cells[: len(headers)]) + " |")
    return "\n".join(lines) + "\n"


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
                detail=_plain(
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
            message=_plain(item.get("message") or item.get("detail") or item.get("summary") or ""),
            severity=str(item.get("severity") or item.get("level") or "error").lower(),
            rule=_plain(item.get("rule") or item.get("code") or item.get("id") or item.get("check") or ""),
            file=str(item.get("file") or item.get("path"))
            if (item.get("file") or item.get("path"))
            else None,
            line=line if isinstance(line, int) and not isinstance(line, bool) and line > 0 else None,
            where=_plain(item.get("where") or ""),
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
        parts.append(f"**Error:** {md_cell(error, limit=_MESSAGE_LIMIT)}\n")
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
                        file=_workspace_relative(f.file, env) if f.file else None,
                        line=f.line,
                    )
                )
        elif r.status in ("failed", "error"):
            notes.append(
                Annotation(message=r.detail or f"the {r.name} gate {r.status}", title=f"gate {r.name}")
            )
    if not rows and not _overall(verdict, rows):
        notes.append(Annotation(message=_plain(verdict.get("error") or "no gate ran"), title="gate release"))
    elif verdict.get("error") and not notes:
        notes.append(Annotation(message=_plain(verdict["error"]), title="gate release"))
    if len(notes) > MAX_ANNOTATIONS:
        extra = len(notes) - (MAX_ANNOTATIONS - 1)
        notes = notes[: MAX_ANNOTATIONS - 1]
        notes.append(Annotation(message=f"{extra} more problems: see the job summary", title="gate release"))
    return notes


@dataclass(frozen=True)
class ReportOutcome:
    """What :func:`report` did: whether it wrote the step summary, how many annotations it printed."""

    summary_written: bool
    annotations: int
    summary_file: Path | None


def report(
    verdict: Mapping[str, Any],
    *,
    summary_file: Path | None = None,
    title: str = "gate release",
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> ReportOutcome:
    """Publish a verdict: markdown to ``summary_file`` (any host) and, in Actions, the
    step summary plus error annotations. Outside Actions without ``summary_file`` it does nothing."""
    markdown = render_markdown(verdict, title=title)
    if summary_file is not None:
        atomic_write_text(summary_file, markdown)
    written = write_summary(markdown, environ=environ)
    count = 0
    if in_actions(environ):
        for note in annotations_for(verdict, environ=environ):
            count += annotate(note, stream=stream, environ=environ)
    return ReportOutcome(summary_written=written, annotations=count, summary_file=summary_file)


def release_verdict(
    result: Mapping[str, Any],
    *,
    bundle_dir: Path | None = None,
    contract: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Turn ``gate release --json`` output into the verdict shape :func:`report` renders.

    Adds a row for every required gate that did not run and for signing and
    publishing, and reads each gate's findings from its report in the bundle
    (check findings, failed smoke probes, eval failures). ``contract`` (the
    contract file in the repository) is what annotations of failed gates point at.
    """
    verdict = _mapping(result.get("verdict"))
    released = result.get("released") is True
    published = _mapping(result.get("published")) or None
    bundle = Path(bundle_dir) if bundle_dir is not None else None
    if bundle is None and isinstance(result.get("bundle"), str):
        bundle = Path(result["bundle"])
    ran = {str(g.get("name")): g for g in verdict.get("gates") or [] if isinstance(g, Mapping)}
    gates: list[dict[str, Any]] = []
    for name in (*_RELEASE_STEPS, *(n for n in ran if n not in _RELEASE_STEPS)):
        gate = ran.get(name)
        if gate is None:
            gates.append({"name": name, "status": "skipped", "summary": "not run: an earlier gate stopped"})
            continue
        report = _read_report(bundle, gate.get("report"))
        row: dict[str, Any] = {
            "name": name,
            "status": str(gate.get("status") or ""),
            "summary": gate.get("summary") or "",
            "findings": _report_findings(report, contract),
        }
        if name == "eval" and bundle is not None:
            row["markdown"] = _read_text(bundle / "gate" / "reports" / "eval.md")
        gates.append(row)
    if released and published is not None:
        gates.append({"name": "sign", "status": "passed", "summary": "bundle signed"})
        gates.append({"name": "publish", "status": "passed", "summary": str(published.get("ref") or "")})
    else:
        reason = "not signed: a gate did not pass" if verdict.get("passed") is not True else "not released"
        gates.append({"name": "sign", "status": "skipped", "summary": reason})
        gates.append({"name": "publish", "status": "skipped", "summary": "nothing published"})
    contract_info = _mapping(verdict.get("contract"))
    out: dict[str, Any] = {
        "released": released,
        "gates": gates,
        "contract": contract_info.get("name"),
        "adapter": verdict.get("adapter_digest"),
        "ref": (published or {}).get("ref"),
        "digest": (published or {}).get("digest"),
        "bundle": str(bundle) if bundle is not None else None,
    }
    if not released and verdict.get("reason") and verdict.get("stopped_at") not in ran:
        # A stop that no gate row explains (approval missing, say) is shown on its own.
        out["error"] = verdict["reason"]
    return out


def report_error(
    command: str,
    message: str,
    *,
    hint: str | None = None,
    file: str | os.PathLike[str] | None = None,
    summary_file: Path | None = None,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> ReportOutcome:
    """Report a command that stopped before it had a verdict (bad input, a tool that died).

    Writes a short markdown section (to ``summary_file`` and, in Actions, the step
    summary) and one ``::error`` annotation naming the problem.
    """
    text = message + (f" (hint: {hint})" if hint else "")
    markdown = f"## {md_cell(command)}: ❌ stopped\n\n**Error:** {md_cell(text, limit=_MESSAGE_LIMIT)}\n"
    if summary_file is not None:
        atomic_write_text(summary_file, markdown)
    written = write_summary(markdown, environ=environ)
    printed = annotate_error(text, file=file, title=command, stream=stream, environ=environ)
    return ReportOutcome(summary_written=written, annotations=int(printed), summary_file=summary_file)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _read_text(path: Path) -> str:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _REPORT_LIMIT_BYTES:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _read_report(bundle: Path | None, rel: object) -> Mapping[str, Any]:
    """A gate's JSON report from the bundle; {} when absent, oversized, a symlink or outside it."""
    if bundle is None or not isinstance(rel, str) or not rel:
        return {}
    path = bundle / rel
    try:
        path.resolve().relative_to(bundle.resolve())
    except (OSError, ValueError):
        return {}
    text = _read_text(path)
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, Mapping) else {}


def _report_findings(
    report: Mapping[str, Any], contract: str | os.PathLike[str] | None
) -> list[dict[str, Any]]:
    """Findings of one gate's report: check findings, failed smoke probes, eval failures."""
    file = os.fspath(contract) if contract is not None else None
    found: list[dict[str, Any]] = []
    for f in report.get("findings") or []:
        if isinstance(f, Mapping):
            found.append(
                {
                    "rule": f.get("rule") or "",
                    "severity": f.get("severity") or "error",
                    "message": f.get("message") or "",
                    "file": file,
                    "where": f.get("path") or "",
                }
            )
    for probe in report.get("probes") or []:
        if isinstance(probe, Mapping) and probe.get("status") not in ("pass", "passed", None):
            status = str(probe.get("status"))
            found.append(
                {
                    "rule": probe.get("name") or "",
                    "severity": "error" if status in ("fail", "error") else "warning",
                    "message": probe.get("message") or status,
                    "file": file,
                }
            )
    for failure in report.get("failures") or []:
        found.append({"rule": "", "severity": "error", "message": _plain(failure), "file": file})
    return found


def _workspace_relative(file: str | os.PathLike[str], env: Mapping[str, str]) -> str:
    """GitHub links an annotation to a file only by its path relative to the repository root."""
    path = Path(file)
    workspace = env.get("GITHUB_WORKSPACE")
    if workspace and path.is_absolute():
        try:
            return PurePosixPath(path.relative_to(Path(workspace))).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def _location(f: Finding) -> str:
    if not f.file:
        return ""
    return f"{f.file}:{f.line}" if f.line else f.file


def _plain(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
