"""The Actions runner's interface: job detection, workflow-command annotations, the step summary."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, TextIO

from gate.github._markdown import MESSAGE_LIMIT, clip

#: GitHub refuses a step summary larger than 1 MiB (and then shows none of it).
SUMMARY_LIMIT_BYTES = 1024 * 1024


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
        return f"{head}::{escape_data(clip(self.message, MESSAGE_LIMIT))}"


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
    rel = workspace_relative(file, env) if file is not None else None
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


def workspace_relative(file: str | os.PathLike[str], env: Mapping[str, str]) -> str:
    """GitHub links an annotation to a file only by its path relative to the repository root."""
    path = Path(file)
    workspace = env.get("GITHUB_WORKSPACE")
    if workspace and path.is_absolute():
        try:
            return PurePosixPath(path.relative_to(Path(workspace))).as_posix()
        except ValueError:
            pass
    return path.as_posix()
