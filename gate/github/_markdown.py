"""Markdown for the step summary: escaped table cells and tables, bounded text."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

#: A table cell longer than this is cut: findings can quote hostile adapter files.
_CELL_LIMIT = 300
MESSAGE_LIMIT = 2000


def md_cell(value: object, *, limit: int = _CELL_LIMIT) -> str:
    """Render ``value`` safely inside a markdown table cell.

    HTML is escaped (the summary renders HTML, and messages may quote adapter
    files), pipes are escaped so they cannot split the row, and newlines become
    ``<br>`` so they cannot end it.
    """
    text = clip(plain(value), limit)
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


def plain(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
