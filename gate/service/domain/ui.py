"""The web UI: server-rendered pages over the same queries and actions as the API.

A browser logs in with an API token (kept in an HttpOnly, SameSite=Strict cookie);
every form that changes something carries the session's CSRF token. Pages need
the read role; the approve, reject and retry buttons appear for the roles that
may use them and call the same actions as the API.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio
from litestar import Controller, Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import PermissionDeniedException
from litestar.params import Body, Parameter
from litestar.response import Redirect, Template
from markupsafe import Markup
from sqlalchemy import select

from gate.service.auth import AuthError, Principal, allows, lookup_token
from gate.service.channels import CHANNELS
from gate.service.charts import bar_comparison_svg, eval_rows, line_chart_svg, loss_points
from gate.service.domain import actions
from gate.service.domain.audit import audit_entries
from gate.service.domain.contracts import list_contracts
from gate.service.domain.queries import MAX_ID, STATUSES, ReleaseFilter, list_releases, read_release
from gate.service.domain.run_records import read_run_record
from gate.service.domain.schemas import ReleaseRead
from gate.service.evidence import tables_for
from gate.service.guards import COOKIE, csrf_token, db, requires
from gate.service.models import Event, GateResult, Release
from gate.service.state import app_state

__all__ = ["LoginController", "UIController"]

PAGE = 50
_SESSION_S = 8 * 3600
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


def _run_record(run_dir: str) -> dict[str, Any]:
    try:
        return read_run_record(Path(run_dir))
    except Exception:
        return {}


def _safe_next(raw: str | None) -> str:
    """Only a path on this server (never ``//host`` or a scheme): no open redirect."""
    if raw and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw and len(raw) < 2000:
        return raw
    return "/"


def _context(request: Request[Principal, Any, Any], **values: Any) -> dict[str, Any]:
    token, _ = request.auth
    return {"who": request.user, "csrf": csrf_token(token), **values}


def _check_csrf(request: Request[Principal, Any, Any], form: dict[str, str]) -> None:
    token, _ = request.auth
    if not hmac.compare_digest(str(form.get("csrf", "")), csrf_token(token)):
        raise PermissionDeniedException(
            "the form's CSRF token is missing or wrong: reload the page and retry"
        )


class LoginController(Controller):
    """``/login`` and ``/logout``: a token in, an HttpOnly cookie out."""

    include_in_schema = False

    @get("/login", exclude_from_auth=True)
    async def login_page(self, next: str | None = Parameter(default=None, max_length=2000)) -> Template:
        """The login form."""
        return Template(template_name="login.html.j2", context={"next": _safe_next(next), "error": None})

    @post("/login", exclude_from_auth=True, status_code=303)
    async def login(self, request: Request[Any, Any, Any], data: Form) -> Response[Any]:
        """Check the token; set the session cookie and go where the user was going."""
        token = str(data.get("token", "")).strip()
        nxt = _safe_next(data.get("next"))
        try:
            if not token or len(token) > 1000:
                raise AuthError("paste an API token (gate serve --create-token NAME:ROLE makes one)")
            await lookup_token(app_state(request).reader, request.scope, token)
        except AuthError as e:
            return Template(
                template_name="login.html.j2", context={"next": nxt, "error": str(e)}, status_code=401
            )
        response: Response[Any] = Redirect(nxt, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=_SESSION_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @post("/logout", opt=requires("read"), status_code=303)
    async def logout(self, request: Request[Principal, Any, Any], data: Form) -> Response[Any]:
        """Forget the session cookie."""
        _check_csrf(request, data)
        response: Response[Any] = Redirect("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response


class UIController(Controller):
    """Release list and detail, version history, audit, runs and contracts pages; the action buttons."""

    opt = requires("read")
    include_in_schema = False

    @get("/")
    async def index(
        self,
        request: Request[Principal, Any, Any],
        status: str | None = Parameter(default=None, max_length=400),
        name: str | None = Parameter(default=None, max_length=200),
        contract: str | None = Parameter(default=None, max_length=200),
        since: str | None = Parameter(default=None, max_length=40),
        until: str | None = Parameter(default=None, max_length=40),
        offset: int = Parameter(default=0, ge=0, le=MAX_ID),
    ) -> Template:
        """The release list: filters, per-gate badges, pages of 50."""
        flt = ReleaseFilter.parse(status=status, name=name, contract=contract, since=since, until=until)
        reader = app_state(request).reader
        releases = await list_releases(reader, request.scope, flt, limit=PAGE + 1, offset=offset)
        qs = flt.query_string()
        pages = {
            "prev": "?" + urlencode({**qs, "offset": max(0, offset - PAGE)}) if offset else None,
            "next": "?" + urlencode({**qs, "offset": offset + PAGE}) if len(releases) > PAGE else None,
        }
        return Template(
            template_name="releases.html.j2",
            context=_context(
                request, releases=releases[:PAGE], flt=flt, statuses=STATUSES, pages=pages, offset=offset
            ),
        )

    @get("/releases/{release_id:int}")
    async def release(self, request: Request[Principal, Any, Any], release_id: int) -> Template:
        """One release: actions, gates in pipeline order with durations, evidence tables, charts, audit."""
        s = db(request)
        rel = await read_release(app_state(request).reader, request.scope, release_id)
        run_dir = await s.scalar(select(Release.run_dir).where(Release.id == release_id))
        reports: dict[str, Any] = dict(
            (
                await s.execute(
                    select(GateResult.gate, GateResult.report).where(GateResult.release_id == release_id)
                )
            )
            .tuples()
            .all()
        )
        audit = await audit_entries(s, release_id=release_id, limit=500)
        events = (
            await s.scalars(
                select(Event).where(Event.release_id == release_id).order_by(Event.id.desc()).limit(50)
            )
        ).all()
        run = await anyio.to_thread.run_sync(_run_record, run_dir or "")
        eval_report = reports.get("eval")
        comparison = eval_rows(eval_report) if isinstance(eval_report, dict) else []
        who = request.user
        context = _context(
            request,
            r=rel,
            evidence={g.gate: tables_for(g.gate, reports.get(g.gate)) for g in rel.gates},
            can_approve=rel.status == "awaiting_approval"
            and allows(who.role, "approve")
            and (rel.submitted_by != who.name or who.role == "admin"),
            own_release=rel.submitted_by == who.name,
            can_retry=rel.status == "error" and allows(who.role, "submit"),
            can_promote=rel.status == "published" and bool(rel.digest) and allows(who.role, "approve"),
            channels=CHANNELS,
            on_channels=(await actions.channels_of(s, rel.name)).get(rel.id, []),
            loss_chart=Markup(
                line_chart_svg(loss_points(run), title="Training loss", x_label="step", y_label="loss")
            ),
            eval_chart=Markup(bar_comparison_svg(comparison, title="Evaluation: base vs adapter")),
            audit=audit,
            events=list(reversed(events)),
            last_event=events[0].id if events else 0,
        )
        return Template(template_name="release.html.j2", context=context)

    @post("/releases/{release_id:int}/{action:str}", status_code=303)
    async def act(
        self, request: Request[Principal, Any, Any], release_id: int, action: str, data: Form
    ) -> Response[Any]:
        """The approve, reject and retry buttons (CSRF-checked; same actions and rules as the API)."""
        _check_csrf(request, data)
        s, who, settings = db(request), request.user, app_state(request).settings
        needed = {"approve": "approve", "reject": "approve", "retry": "submit", "promote": "approve"}.get(
            action
        )
        if needed is None:
            raise PermissionDeniedException(f"no action {action[:40]!r}: approve, reject, retry or promote")
        if not allows(who.role, needed):  # type: ignore[arg-type]
            raise PermissionDeniedException(
                f"{who.name} has role '{who.role}'; {action} needs role '{needed}'"
            )
        if action == "approve":
            await actions.approve(s, settings, who, release_id)
        elif action == "reject":
            await actions.reject(s, who, release_id)
        elif action == "retry":
            await actions.retry(s, settings, who, release_id)
        else:
            await actions.promote(s, settings, who, release_id, str(data.get("channel", "")))
        return Redirect(f"/releases/{release_id}", status_code=303)

    @get("/adapters/{name:str}")
    async def adapter(self, request: Request[Principal, Any, Any], name: str) -> Template:
        """Version history of one adapter name, newest first."""
        s = db(request)
        releases: list[ReleaseRead] = await list_releases(
            app_state(request).reader, request.scope, ReleaseFilter(name=name[:200]), limit=1000, offset=0
        )
        channels = await actions.channels_of(s, name[:200])
        return Template(
            template_name="adapter.html.j2",
            context=_context(request, name=name, releases=releases, channels=channels),
        )

    @get("/audit")
    async def audit(
        self, request: Request[Principal, Any, Any], offset: int = Parameter(default=0, ge=0, le=MAX_ID)
    ) -> Template:
        """The audit log, newest first."""
        entries = await audit_entries(db(request), limit=PAGE + 1, offset=offset, newest_first=True)
        pages = {
            "prev": f"?offset={max(0, offset - PAGE)}" if offset else None,
            "next": f"?offset={offset + PAGE}" if len(entries) > PAGE else None,
        }
        return Template(
            template_name="audit.html.j2", context=_context(request, entries=entries[:PAGE], pages=pages)
        )

    @get("/runs")
    async def runs(self, request: Request[Principal, Any, Any]) -> Template:
        """Training runs and the releases made from each."""
        q = select(Release.run_dir, Release.id, Release.name, Release.version, Release.status).order_by(
            Release.id.desc()
        )
        grouped: dict[str, list[tuple[int, str, str, str]]] = {}
        for run_dir, rid, name, version, status in (await db(request).execute(q.limit(2000))).tuples():
            grouped.setdefault(run_dir, []).append((rid, name, version, status))
        return Template(template_name="runs.html.j2", context=_context(request, runs=grouped))

    @get("/contracts")
    async def contracts(self, request: Request[Principal, Any, Any]) -> Template:
        """The contracts this server gates against."""
        found = await anyio.to_thread.run_sync(list_contracts, app_state(request).settings)
        return Template(template_name="contracts.html.j2", context=_context(request, contracts=found))
