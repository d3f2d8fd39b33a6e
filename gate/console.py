"""Where output goes: progress and logs to stderr, results to stdout.

Results (tables, ``--json`` objects) are the only thing written to stdout, so
``gate ... --json | jq`` always works; everything meant for a person watching
(progress bars, spinners, notes) goes to stderr.

Text gate did not write (file and tensor names, messages quoting them) reaches a
terminal only through :func:`terminal_safe` (control characters, escape
sequences and bidi overrides shown as ``\\xNN`` / ``\\uNNNN``) and, in rich
output, as :func:`plain` text, never as markup. JSON output stays exact.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from gate.terminal import terminal_safe

__all__ = [
    "atomic_write_json",
    "atomic_write_text",
    "err",
    "out",
    "plain",
    "print_json",
    "progress",
    "terminal_safe",
]


#: Human-facing output (progress, notes).
err = Console(stderr=True, highlight=False)
#: Results.
out = Console(highlight=False, soft_wrap=True)


def plain(text: object, style: str = "") -> Text:
    """User-controlled ``text`` as a rich :class:`~rich.text.Text`: escaped, never parsed as markup."""
    return Text(terminal_safe(text), style=style)


def progress(*, transient: bool = False) -> Progress:
    """A progress bar on stderr (plain lines when stderr is not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        transient=transient,
    )


def print_json(obj: Any) -> None:
    """Write ``obj`` as one JSON document to stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path``, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
