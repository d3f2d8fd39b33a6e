"""The web UI: server-rendered pages over the API's data (read role, token in a cookie or header)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
from litestar import Controller, Request, get
from litestar.response import Template
from markupsafe import Markup
from sqlalchemy import select

from gate.service.auth import Principal
from gate.service.charts import bar_comparison_svg, eval_rows, line_chart_svg, loss_points
from gate.service.domain.queries import ReleaseFilter, list_releases, read_release
from gate.service.domain.releases import read_run_record
from gate.service.guards import requires
from gate.service.models import AuditEntry, Event, GateResult, Release
from gate.service.state import app_state

__all__ = ["UIController"]


def _run_record(run_dir: str) -> dict[str, Any]:
    try:
        return read_run_record(Path(run_dir))
    except Exception:
        return {}


class UIController(Controller):
    """``/`` and ``/releases/{id}``."""

    guards = [requires("read")]  # noqa: RUF012
    include_in_schema = False

    @get("/")
    async def index(self, request: Request[Principal, Any, Any]) -> Template:
        """The release list with per-gate badges."""
        st = app_state(request)
        async with st.sessions() as s:
            releases = await list_releases(s, ReleaseFilter(), limit=200, offset=0)
        return Template(template_name="releases.html.j2", context={"releases": releases, "who": request.user})

    @get("/releases/{release_id:int}")
    async def release(self, request: Request[Principal, Any, Any], release_id: int) -> Template:
        """One release: gates and their reports, loss curve, eval comparison, events, audit trail."""
        st = app_state(request)
        async with st.sessions() as s:
            rel = await read_release(s, release_id)
            run_dir = await s.scalar(select(Release.run_dir).where(Release.id == release_id))
            gates = (
                await s.scalars(
                    select(GateResult).where(GateResult.release_id == release_id).order_by(GateResult.id)
                )
            ).all()
            audit = (
                await s.scalars(
                    select(AuditEntry).where(AuditEntry.release_id == release_id).order_by(AuditEntry.id)
                )
            ).all()
            events = (
                await s.scalars(
                    select(Event).where(Event.release_id == release_id).order_by(Event.id.desc()).limit(50)
                )
            ).all()
        run = await anyio.to_thread.run_sync(_run_record, run_dir or "")
        loss = loss_points(run)
        eval_report = next((g.report for g in gates if g.gate == "eval" and g.report), None)
        comparison = eval_rows(eval_report) if eval_report else []
        context = {
            "who": request.user,
            "r": rel,
            "gates": [
                {
                    "gate": g.gate,
                    "status": g.status,
                    "seconds": g.seconds,
                    "report": json.dumps(g.report, indent=2, default=str) if g.report else None,
                }
                for g in gates
            ],
            "loss_chart": Markup(line_chart_svg(loss, title="Training loss", x_label="step", y_label="loss")),
            "eval_chart": Markup(bar_comparison_svg(comparison, title="Evaluation: base vs adapter")),
            "comparison": comparison,
            "audit": audit,
            "events": list(reversed(events)),
            "run": run,
        }
        return Template(template_name="release.html.j2", context=context)
