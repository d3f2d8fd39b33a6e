"""Health (no auth), Prometheus metrics, the caller's identity, API tokens, training runs."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.exceptions import NotFoundException
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from sqlalchemy import func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gate.service.auth import Principal, issue_token
from gate.service.domain.schemas import TokenCreate, TokenCreated, TokenRead
from gate.service.guards import db, requires
from gate.service.models import ApiToken, Job, Release
from gate.service.reader import Prepared
from gate.service.state import app_state

__all__ = ["RunController", "SystemController", "TokenController"]


# On the connection the API's reads use (gate.service.reader).
_PING = Prepared(lambda _: select(literal_column("1")))


async def _status_counts(s: AsyncSession) -> tuple[dict[str, int], dict[str, int]]:
    """(releases by status, jobs by status)."""
    rel = dict(
        (await s.execute(select(Release.status, func.count()).group_by(Release.status))).tuples().all()
    )
    jobs = dict((await s.execute(select(Job.status, func.count()).group_by(Job.status))).tuples().all())
    return rel, jobs


class SystemController(Controller):
    """Health, metrics and whoami."""

    tags = ["system"]  # noqa: RUF012

    @get("/health", exclude_from_auth=True)
    async def health(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """Liveness and database reachability (the only endpoint without auth)."""
        st = app_state(request)
        try:
            await st.reader.rows(request.scope, _PING, {})
        except Exception as e:
            return Response(
                {"status": "unavailable", "database": str(e)[:200]}, status_code=HTTP_503_SERVICE_UNAVAILABLE
            )
        alive = sum(1 for w in st.workers if w.poll() is None)
        return Response(
            {"status": "ok", "database": "ok", "workers": alive, "executor": st.settings.executor}
        )

    @get("/metrics", opt=requires("read"), media_type="text/plain; version=0.0.4")
    async def metrics(self, request: Request[Any, Any, Any]) -> bytes:
        """Prometheus exposition."""
        st = app_state(request)
        rel, jobs = await _status_counts(db(request))
        st.metrics.releases.clear()
        for k, v in rel.items():
            st.metrics.releases.labels(k).set(v)
        st.metrics.jobs.clear()
        for k, v in jobs.items():
            st.metrics.jobs.labels(k).set(v)
        return st.metrics.render()

    @get("/api/whoami", opt=requires("read"))
    async def whoami(self, request: Request[Principal, Any, Any]) -> dict[str, str]:
        """Who the server thinks the caller is."""
        return {"name": request.user.name, "role": request.user.role, "kind": request.user.kind}


class TokenController(Controller):
    """``/api/tokens`` (admin)."""

    path = "/api/tokens"
    opt = requires("admin")
    tags = ["tokens"]  # noqa: RUF012

    @post("/", status_code=201)
    async def create(self, request: Request[Principal, Any, Any], data: TokenCreate) -> TokenCreated:
        """Create a token; its secret is in this response only."""
        s = db(request)
        token = await s.run_sync(
            lambda sync: issue_token(sync, data.name, data.role, expires_in_s=data.expires_in_s)
        )
        await s.commit()
        return TokenCreated(name=data.name, role=data.role, token=token)

    @get("/")
    async def read_all(self, request: Request[Principal, Any, Any]) -> list[TokenRead]:
        """Every token (never the secrets)."""
        rows = (await db(request).scalars(select(ApiToken).order_by(ApiToken.id))).all()
        return [
            TokenRead(
                name=t.name, role=t.role, created_at=t.created_at, expires_at=t.expires_at, revoked=t.revoked
            )
            for t in rows
        ]

    @delete("/{name:str}", status_code=204)
    async def revoke(self, request: Request[Principal, Any, Any], name: str) -> None:
        """Revoke a token."""
        s = db(request)
        res = await s.execute(update(ApiToken).where(ApiToken.name == name).values(revoked=True))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFoundException(f"no token {name[:200]!r}")
        await s.commit()


class RunController(Controller):
    """``/api/runs``: the training runs releases were made from."""

    path = "/api/runs"
    opt = requires("read")
    tags = ["runs"]  # noqa: RUF012

    @get("/")
    async def read_all(self, request: Request[Principal, Any, Any]) -> list[dict[str, Any]]:
        """Each run directory with the releases made from it."""
        q = select(Release.run_dir, Release.id, Release.name, Release.version).order_by(Release.id)
        rows = (await db(request).execute(q)).tuples().all()
        runs: dict[str, dict[str, Any]] = {}
        for run_dir, rid, name, version in rows:
            runs.setdefault(run_dir, {"run_dir": run_dir, "releases": []})["releases"].append(
                {"id": rid, "name": name, "version": version}
            )
        return list(runs.values())
