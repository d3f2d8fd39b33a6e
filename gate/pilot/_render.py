"""Render a pilot matrix: Markdown, a self-contained HTML page, and the score chart as inline SVG.

One renderer for the CLI (``pilot.md``, ``pilot.html``, ``pilot-chart.svg``) and
the service's UI page: nothing is fetched (no scripts, fonts or CDN), the chart
is plain SVG with a ``<title>`` on every segment.
"""

from __future__ import annotations

import math
from html import escape

from gate.pilot._matrix import Cell, Criterion, PilotMatrix

__all__ = ["format_value", "render_html", "render_markdown", "score_chart_svg"]

#: Colour of each criterion group in the score chart.
GROUP_COLOURS = {
    "setup": "#8250df",
    "training": "#1f6feb",
    "contract": "#bf3989",
    "smoke": "#2da44e",
    "eval": "#1a7f37",
    "reproducibility": "#bc4c00",
    "reliability": "#cf222e",
    "operator effort": "#9a6700",
    "observability": "#1b7c83",
    "customizability": "#6e7781",
    "team": "#116329",
}


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def format_value(cell: Cell | None) -> str:
    """A cell for people: value with unit and its uncertainty (+-), or why it is missing / not applicable."""
    if cell is None:
        return "-"
    if cell.not_applicable:
        return cell.not_applicable.split(":")[0]
    text = _plain(cell)
    u = cell.uncertainty.value if cell.uncertainty is not None else None
    if cell.value is not None and isinstance(u, int | float) and not isinstance(u, bool) and u > 0:
        text += f" ± {_plain(cell.model_copy(update={'value': float(u), 'uncertainty': None}))}"
    return text


def _plain(cell: Cell) -> str:
    v = cell.value
    if v is None:
        return f"n/a ({cell.missing})" if cell.missing else "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if cell.unit == "bytes":
        return _bytes(float(v))
    if isinstance(v, int):
        return f"{v} {cell.unit}"
    if cell.unit == "fraction":
        return f"{v:.0%}"
    if not math.isfinite(v):
        return f"{v} {cell.unit}"
    if cell.unit == "score":
        return f"{v:.3f}"
    if cell.unit in ("loss", "abs", "0..1"):
        return f"{v:.4g}"
    return f"{v:.1f} {cell.unit}"


def _criteria(m: PilotMatrix) -> list[Criterion]:
    return list(m.criteria)


def _scored_keys(m: PilotMatrix) -> list[str]:
    """Criteria with a weight above 0, in the matrix's row order."""
    keys = [c.key for c in m.criteria if m.weights.get(c.key, 0) > 0]
    return keys + (["familiarity"] if m.weights.get("familiarity", 0) > 0 and m.familiarity else [])


def _total_weight(m: PilotMatrix) -> float:
    """The sum of the weights that carry weight (the score's denominator)."""
    return sum(w for k in _scored_keys(m) if (w := m.weights.get(k, 0)) > 0 and k not in m.unweighted)


def _verdicts(m: PilotMatrix, toolkit: str) -> str:
    for t in m.toolkits:
        if t.toolkit == toolkit and t.verdicts:
            return " / ".join(f"{g} {v}" for g, v in t.verdicts.items())
    return "-"


def render_markdown(m: PilotMatrix) -> str:
    """The matrix, the weighted scores with contributions, and the default weights, as Markdown."""
    tks = [t.toolkit for t in m.toolkits]
    versions = {t.toolkit: t.version or "?" for t in m.toolkits}
    s = m.settings
    lines = [
        f"# gate pilot: {', '.join(tks)}",
        "",
        f"- spec `{m.spec.get('name')}` (sha256 `{m.spec.get('sha256', '')[:12]}`), contract "
        f"`{m.contract.get('name')}` (sha256 `{m.contract.get('sha256', '')[:12]}`)",
        f"- {s.get('repeats')} repeat(s) per toolkit, {s.get('steps') or 'spec default'} step(s); "
        "gates on repeat 1; "
        f"eval limit {s.get('eval_limit') or 'none (every document)'} per task; "
        f"device {s.get('device', '?')}",
        f"- matrix {'complete' if m.complete else 'INCOMPLETE'}; weights: {m.weights_source}",
        "",
        *(f"**{h}**  " for h in m.headline),
        "",
        "## Weighted score",
        "",
        "| toolkit | version | gates | score (0-100) | most points lost on |",
        "|---|---|---|---:|---|",
    ]
    total = _total_weight(m) or 1.0
    for sc in sorted(m.scores, key=lambda x: -x.score):
        # Points a criterion could have given (100 * weight / total) minus what it gave.
        lost = sorted(
            (
                (k, 100 * t.weight / total - t.contribution)
                for k, t in sc.terms.items()
                if k not in m.unweighted
            ),
            key=lambda kv: -kv[1],
        )
        shown = ", ".join(f"{k} (-{pts:.1f})" for k, pts in lost[:3] if pts > 0.05) or "nothing"
        lines.append(
            f"| {sc.toolkit} | {versions.get(sc.toolkit)} | {_verdicts(m, sc.toolkit)} | "
            f"{sc.score:.1f} ± {sc.uncertainty:.1f} | {shown} |"
        )
    lines += ["", "![score chart](pilot-chart.svg)", "", "## Matrix", ""]
    lines.append("| criterion | unit | " + " | ".join(tks) + " | source (first toolkit) |")
    lines.append("|---|---|" + "---:|" * len(tks) + "---|")
    first = m.toolkits[0] if m.toolkits else None
    for c in _criteria(m):
        cells = [format_value(m.cell(tk, c.key)).replace("|", "\\|") for tk in tks]
        src = ""
        if first is not None and (cell := first.cells.get(c.key)) is not None and cell.sources:
            s0 = cell.sources[0]
            src = (
                f"`{s0.file}#{s0.pointer}`"
                if s0.pointer
                else f"`{s0.file}`" + (f" ({cell.derive})" if cell.derive != "value" else "")
            )
            if len(cell.sources) > 1:
                src += f" +{len(cell.sources) - 1}"
        lines.append(f"| {c.label} | {c.unit} | " + " | ".join(cells) + f" | {src} |")
    lines += ["", "## Score contributions", ""]
    scored = _scored_keys(m)
    lines.append("| criterion | weight | " + " | ".join(f"{tk} (normalised → points)" for tk in tks) + " |")
    lines.append("|---|---:|" + "---:|" * len(tks))
    by_tk = {sc.toolkit: sc for sc in m.scores}
    for key in scored:
        row = []
        for tk in tks:
            t = by_tk[tk].terms.get(key) if tk in by_tk else None
            row.append(
                "-"
                if t is None
                else f"{'n/a' if t.normalised is None else f'{t.normalised:.2f}'} → {t.contribution:.1f}"
                + (f" ± {t.uncertainty:.1f}" if t.uncertainty > 0.05 else "")
            )
        weight = f"{m.weights[key]:g}" if key not in m.unweighted else f"0 ({m.unweighted[key]})"
        lines.append(f"| {key} | {weight} | " + " | ".join(row) + " |")
    lines += ["", f"Normalisation: {m.normalisation}.", ""]
    if m.phases:
        lines += ["## Phases (wall seconds)", ""]
        lines += [f"- {k}: {v:.1f} s" for k, v in m.phases.items()]
        lines.append("")
    runs = [r for t in m.toolkits for r in t.runs]
    lines += ["## Runs", "", "| run | status | directory |", "|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.id} | {r.status}{f' ({r.failure})' if r.failure else ''} | `{r.dir}` |")
    if m.missing:
        lines += ["", "## Not measured", ""] + [f"- {x}" for x in m.missing]
    lines.append("")
    return "\n".join(lines)


def score_chart_svg(m: PilotMatrix, *, width: int = 720) -> str:
    """Stacked horizontal bars: each toolkit's score split into its criterion groups' contributions."""
    groups: list[str] = []
    group_of = {c.key: c.group for c in m.criteria}
    for sc in m.scores:
        for key in sc.terms:
            g = group_of.get(key, "team")
            if g not in groups:
                groups.append(g)
    rows = sorted(m.scores, key=lambda x: -x.score)
    warnings = [h for h in m.headline if h.startswith("No ")]
    left, right, bar_h, gap, top = 110, 90, 26, 14, 34 + 16 * len(warnings)
    legend_h = 18 * math.ceil(len(groups) / 3) + 10
    height = top + len(rows) * (bar_h + gap) + 24 + legend_h
    plot = width - left - right

    def sx(points: float) -> float:
        return left + points / 100 * plot

    title = "gate pilot: weighted score (0-100) by criterion group"
    parts = [
        f'<svg class="chart" data-chart="pilot-score" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left}" y="20" font-size="13" font-weight="600">{escape(title)}</text>',
        *(
            f'<text class="headline" x="{left}" y="{36 + 16 * j}" font-size="12" fill="#cf222e">'
            f"{escape(h)}</text>"
            for j, h in enumerate(warnings)
        ),
    ]
    for t in range(0, 101, 25):
        x = sx(t)
        y1 = top + len(rows) * (bar_h + gap)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{y1}" stroke="#d0d7de"/>')
        parts.append(f'<text x="{x:.1f}" y="{y1 + 14}" font-size="10" text-anchor="middle">{t}</text>')
    for i, sc in enumerate(rows):
        y = top + i * (bar_h + gap)
        parts.append(
            f'<text x="{left - 8}" y="{y + bar_h / 2 + 4:.1f}" font-size="12" text-anchor="end">'
            f"{escape(sc.toolkit)}</text>"
        )
        x = float(left)
        for g in groups:
            pts = sum(t.contribution for k, t in sc.terms.items() if group_of.get(k, "team") == g)
            if pts <= 0:
                continue
            w = pts / 100 * plot
            keys = ", ".join(
                f"{k} {t.contribution:.1f}"
                for k, t in sc.terms.items()
                if group_of.get(k, "team") == g and t.contribution > 0
            )
            parts.append(
                f'<rect class="segment" data-group="{escape(g)}" x="{x:.1f}" y="{y}" width="{w:.1f}" '
                f'height="{bar_h}" fill="{GROUP_COLOURS.get(g, "#57606a")}">'
                f"<title>{escape(sc.toolkit)} · {escape(g)}: {pts:.1f} points ({escape(keys)})</title></rect>"
            )
            x += w
        if sc.uncertainty > 0:
            # The score's own uncertainty as a whisker around the bar's end.
            lo, hi, mid = (
                sx(max(0.0, sc.score - sc.uncertainty)),
                sx(min(100.0, sc.score + sc.uncertainty)),
                y + bar_h / 2,
            )
            parts.append(
                f'<path class="uncertainty" d="M{lo:.1f} {mid:.1f}H{hi:.1f}'
                f'M{lo:.1f} {mid - 6:.1f}V{mid + 6:.1f}M{hi:.1f} {mid - 6:.1f}V{mid + 6:.1f}" '
                f'stroke="#1f2328" stroke-width="1.5" fill="none">'
                f"<title>{escape(sc.toolkit)}: {sc.score:.1f} ± {sc.uncertainty:.1f}</title></path>"
            )
        parts.append(
            f'<text x="{max(x, sx(sc.score + sc.uncertainty)) + 6:.1f}" y="{y + bar_h / 2 + 4:.1f}" '
            f'font-size="12" font-weight="600">{sc.score:.1f} ± {sc.uncertainty:.1f}</text>'
        )
    ly = top + len(rows) * (bar_h + gap) + 30
    keys_of = {g: {k for sc in m.scores for k in sc.terms if group_of.get(k, "team") == g} for g in groups}
    for j, g in enumerate(groups):
        lx = left + (j % 3) * (plot / 3)
        yy = ly + (j // 3) * 18
        # A group none of whose criteria carry weight gave nobody points: say so rather than show a colour.
        label = f"{g} (no weight)" if keys_of[g] and keys_of[g] <= set(m.unweighted) else g
        parts.append(
            f'<rect x="{lx:.1f}" y="{yy}" width="10" height="10" fill="{GROUP_COLOURS.get(g, "#57606a")}"/>'
            f'<text x="{lx + 14:.1f}" y="{yy + 9}" font-size="11">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #d0d7de; font-size: .85rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.missing { color: #cf222e; }
tr.group th { background: #f6f8fa; }
code { font-size: .8rem; }
"""


def render_fragment(m: PilotMatrix) -> str:
    """The matrix as an HTML fragment (chart, scores, matrix, weights, runs); escaped throughout."""
    tks = [t.toolkit for t in m.toolkits]
    s = m.settings
    out = [
        f"<h2>gate pilot: {escape(', '.join(tks))}</h2>",
        "<p>",
        f"spec <code>{escape(m.spec.get('name', ''))}</code>, "
        f"contract <code>{escape(m.contract.get('name', ''))}</code>; "
        f"{escape(str(s.get('repeats')))} repeat(s), {escape(str(s.get('steps') or 'default'))} step(s); "
        f"eval limit {escape(str(s.get('eval_limit') or 'none'))}; matrix "
        f"<strong>{'complete' if m.complete else 'INCOMPLETE'}</strong>; weights {escape(m.weights_source)}.",
        "</p>",
        *(f'<p class="headline"><strong>{escape(h)}</strong></p>' for h in m.headline),
        score_chart_svg(m),
        "<h3>Matrix</h3><table><thead><tr><th>criterion</th><th>unit</th>",
        *(f"<th>{escape(tk)}</th>" for tk in tks),
        "</tr></thead><tbody>",
    ]
    group = None
    for c in m.criteria:
        if c.group != group:
            group = c.group
            out.append(f'<tr class="group"><th colspan="{len(tks) + 2}">{escape(group)}</th></tr>')
        out.append(f'<tr title="{escape(c.description)}"><td>{escape(c.label)}</td><td>{escape(c.unit)}</td>')
        for tk in tks:
            cell = m.cell(tk, c.key)
            cls = "num missing" if cell is not None and cell.value is None else "num"
            src = ""
            if cell is not None and cell.sources:
                src = "; ".join(f"{x.file}#{x.pointer}" if x.pointer else x.file for x in cell.sources)
                src += f" ({cell.derive})"
            out.append(f'<td class="{cls}" title="{escape(src)}">{escape(format_value(cell))}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    out.append("<h3>Score contributions</h3><table><thead><tr><th>criterion</th><th>weight</th>")
    out += [f"<th>{escape(tk)}</th>" for tk in tks]
    out.append("</tr></thead><tbody>")
    by_tk = {sc.toolkit: sc for sc in m.scores}
    for key in _scored_keys(m):
        w = m.weights[key]
        why = m.unweighted.get(key)
        weight = f"{w:g}" if why is None else f"0 ({why})"
        out.append(f"<tr><td>{escape(key)}</td><td class='num'>{escape(weight)}</td>")
        for tk in tks:
            t = by_tk[tk].terms.get(key) if tk in by_tk else None
            text = "-" if t is None else f"{t.contribution:.1f}"
            if t is not None and t.uncertainty > 0.05:
                text += f" ± {t.uncertainty:.1f}"
            out.append(f"<td class='num'>{escape(text)}</td>")
        out.append("</tr>")
    out.append("<tr><th>gates</th><th></th>")
    out += [f"<th>{escape(_verdicts(m, tk))}</th>" for tk in tks]
    out.append("</tr><tr><th>score</th><th></th>")
    out += [
        f"<th class='num'>{by_tk[tk].score:.1f} ± {by_tk[tk].uncertainty:.1f}</th>"
        if tk in by_tk
        else "<th>-</th>"
        for tk in tks
    ]
    out.append("</tr></tbody></table>")
    out.append(f"<p>Normalisation: {escape(m.normalisation)}.</p>")
    if m.phases:
        out.append("<h3>Phases</h3><ul>")
        out += [f"<li>{escape(k)}: {v:.1f} s</li>" for k, v in m.phases.items()]
        out.append("</ul>")
    out.append("<h3>Runs</h3><ul>")
    for col in m.toolkits:
        for r in col.runs:
            fail = f" ({r.failure})" if r.failure else ""
            out.append(f"<li><code>{escape(r.dir)}</code>: {escape(r.status + fail)}</li>")
    out.append("</ul>")
    if m.missing:
        out.append("<h3>Not measured</h3><ul>")
        out += [f"<li>{escape(x)}</li>" for x in m.missing]
        out.append("</ul>")
    return "".join(out)


def render_html(m: PilotMatrix) -> str:
    """A self-contained HTML page of the matrix (no network: inline CSS and SVG only)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>gate pilot: {escape(', '.join(t.toolkit for t in m.toolkits))}</title>"
        f"<style>{_CSS}</style></head><body>{render_fragment(m)}</body></html>\n"
    )
