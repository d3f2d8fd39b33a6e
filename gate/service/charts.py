"""Small server-rendered SVG charts for the web UI (no JavaScript, nothing fetched from a CDN)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["bar_comparison_svg", "eval_rows", "line_chart_svg", "loss_points"]

_W, _H, _PAD = 560, 240, 44


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def loss_points(run: Mapping[str, Any]) -> list[tuple[float, float]]:
    """(step, loss) pairs from a run record, wherever the toolkit plugin put its log history."""
    # gate train writes metrics.steps = [{step, loss, learning_rate}]; the others are toolkit-native shapes.
    metrics = run.get("metrics")
    candidates: list[Any] = [metrics.get("steps") if isinstance(metrics, Mapping) else None]
    for key in ("loss_curve", "losses", "log_history", "history"):
        candidates.append(run.get(key))
        if isinstance(metrics, Mapping):
            candidates.append(metrics.get(key))
    for c in candidates:
        points: list[tuple[float, float]] = []
        if isinstance(c, Sequence) and not isinstance(c, str):
            for i, item in enumerate(c):
                if isinstance(item, Mapping):
                    loss = _finite(item.get("loss", item.get("train_loss")))
                    step = _finite(item.get("step", i + 1))
                    if loss is not None and step is not None:
                        points.append((step, loss))
                elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
                    step, loss = _finite(item[0]), _finite(item[1])
                    if loss is not None and step is not None:
                        points.append((step, loss))
                elif (loss := _finite(item)) is not None:
                    points.append((float(i + 1), loss))
        if points:
            return points
    return []


def eval_rows(report: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(metric, base score, adapter score) for each judged metric of an eval report."""
    rows = []
    for m in report.get("metrics") or []:
        if not isinstance(m, Mapping):
            continue
        base, adapter = _finite(m.get("reference_score")), _finite(m.get("adapter"))
        if base is None or adapter is None:
            continue
        label = m.get("key") or f"{m.get('task')}/{m.get('metric')}"
        rows.append((str(label), base, adapter))
    return rows


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def line_chart_svg(points: Sequence[tuple[float, float]], *, title: str, x_label: str, y_label: str) -> str:
    """A line chart (the training loss curve) as an inline SVG element."""
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1

    def sx(x: float) -> float:
        return _PAD + (x - x0) / (x1 - x0) * (_W - 2 * _PAD)

    def sy(y: float) -> float:
        return _H - _PAD - (y - y0) / (y1 - y0) * (_H - 2 * _PAD)

    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    parts = [
        f'<svg class="chart" data-chart="loss" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#555"/>',
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#555"/>',
    ]
    for t in _ticks(y0, y1):
        parts.append(
            f'<text x="{_PAD - 6}" y="{sy(t) + 4:.1f}" font-size="10" text-anchor="end">{t:.2f}</text>'
        )
    parts.append(f'<text x="{_PAD}" y="{_H - _PAD + 16}" font-size="10">{x0:g}</text>')
    parts.append(f'<text x="{_W - _PAD}" y="{_H - _PAD + 16}" font-size="10" text-anchor="end">{x1:g}</text>')
    parts.append(
        f'<text x="{_W / 2}" y="{_H - 8}" font-size="11" text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="12" y="{_H / 2}" font-size="11" transform="rotate(-90 12 {_H / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    parts.append(f'<polyline class="series" fill="none" stroke="#1f6feb" stroke-width="2" points="{path}"/>')
    for x, y in points:
        parts.append(
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="#1f6feb">'
            f"<title>step {x:g}: {y:.4f}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_comparison_svg(rows: Sequence[tuple[str, float, float]], *, title: str) -> str:
    """Grouped bars: base vs adapter score per metric, as an inline SVG element."""
    if not rows:
        return ""
    hi = max(1.0, *(max(b, a) for _, b, a in rows))
    group = (_W - 2 * _PAD) / len(rows)
    bar = min(40.0, group / 3)

    def sy(v: float) -> float:
        return _H - _PAD - max(v, 0.0) / hi * (_H - 2 * _PAD)

    parts = [
        f'<svg class="chart" data-chart="eval" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#555"/>',
    ]
    for t in _ticks(0.0, hi):
        parts.append(
            f'<text x="{_PAD - 6}" y="{sy(t) + 4:.1f}" font-size="10" text-anchor="end">{t:.2f}</text>'
        )
    for i, (label, base, adapter) in enumerate(rows):
        gx = _PAD + i * group + group / 2
        for j, (who, v, color) in enumerate((("base", base, "#8b949e"), ("adapter", adapter, "#2da44e"))):
            x = gx - bar + j * bar
            parts.append(
                f'<rect class="bar {who}" x="{x:.1f}" y="{sy(v):.1f}" width="{bar - 2:.1f}" '
                f'height="{_H - _PAD - sy(v):.1f}" fill="{color}">'
                f"<title>{escape(label)} {who}: {v:.4f}</title></rect>"
            )
            parts.append(
                f'<text x="{x + bar / 2 - 1:.1f}" y="{sy(v) - 4:.1f}" font-size="10" '
                f'text-anchor="middle">{v:.2f}</text>'
            )
        parts.append(
            f'<text x="{gx:.1f}" y="{_H - _PAD + 16}" font-size="10" text-anchor="middle">'
            f"{escape(label[:40])}</text>"
        )
    parts.append(
        f'<rect x="{_W - 150}" y="8" width="10" height="10" fill="#8b949e"/>'
        f'<text x="{_W - 136}" y="17" font-size="11">base</text>'
        f'<rect x="{_W - 90}" y="8" width="10" height="10" fill="#2da44e"/>'
        f'<text x="{_W - 76}" y="17" font-size="11">adapter</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
