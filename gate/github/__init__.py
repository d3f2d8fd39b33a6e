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

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from gate.console import atomic_write_text
from gate.github._actions import (
    SUMMARY_LIMIT_BYTES,
    Annotation,
    annotate,
    annotate_error,
    escape_data,
    escape_property,
    in_actions,
    write_summary,
)
from gate.github._markdown import MESSAGE_LIMIT, markdown_table, md_cell
from gate.github._release import release_verdict
from gate.github._verdict import (
    MAX_ANNOTATIONS,
    Finding,
    GateRow,
    annotations_for,
    gate_rows,
    render_markdown,
)

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
    markdown = f"## {md_cell(command)}: ❌ stopped\n\n**Error:** {md_cell(text, limit=MESSAGE_LIMIT)}\n"
    if summary_file is not None:
        atomic_write_text(summary_file, markdown)
    written = write_summary(markdown, environ=environ)
    printed = annotate_error(text, file=file, title=command, stream=stream, environ=environ)
    return ReportOutcome(summary_written=written, annotations=int(printed), summary_file=summary_file)
