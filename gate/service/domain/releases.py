"""Releases: submit (by reference or upload), list, read, follow (SSE), approve or reject."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from litestar import Controller, Request, get, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import HTTP_409_CONFLICT, HTTP_413_REQUEST_ENTITY_TOO_LARGE
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gate.contract import Contract
from gate.errors import InputError
from gate.service.archives import find_run_dir, unpack_archive
from gate.service.auth import Principal
from gate.service.domain.contracts import find_contract
from gate.service.domain.schemas import AuditRead, GateRead, ReleaseRead, ReleaseSubmit
from gate.service.guards import requires
from gate.service.models import TERMINAL_STATUSES, AuditEntry, Event, GateResult, Job, Release, utcnow
from gate.service.settings import Settings
from gate.service.state import AppState, app_state

__all__ = ["AuditController", "ReleaseController", "load_release", "release_read"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
# An OCI tag: what the version becomes in the registry reference.
_VERSION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")


class Conflict(ClientException):
    """409: the release version already exists."""

    status_code = HTTP_409_CONFLICT


class TooLarge(ClientException):
    """413: the upload is over the limit."""

    status_code = HTTP_413_REQUEST_ENTITY_TOO_LARGE


def _check_ids(name: str, version: str) -> None:
    if not _NAME.match(name):
        raise InputError(
            f"release name {name!r} is not allowed", hint="lowercase letters, digits, '.', '_', '-'"
        )
    if not _VERSION.match(version):
        raise InputError(
            f"release version {version!r} is not a valid OCI tag", hint="e.g. 1.2.0 or 2026-11-28.1"
        )


def _target(settings: Settings, contract: Contract, name: str, version: str) -> str:
    if settings.publish.target_prefix:
        return f"{settings.publish.target_prefix.rstrip('/')}/{name}:{version}"
    return contract.publish.target


def _resolve_reference(settings: Settings, raw: str) -> Path:
    """A run directory the caller named: it must resolve inside one of the allowed roots."""
    if not settings.allowed_roots:
        raise InputError(
            "this server accepts no run references",
            hint="upload an archive, or set GATE_SERVICE_ALLOWED_ROOTS",
        )
    path = Path(raw)
    if not path.is_absolute():
        raise InputError(f"run reference {raw!r} must be an absolute path on the server")
    real = path.resolve()
    roots = [r.resolve() for r in settings.allowed_roots]
    if not any(real == r or r in real.parents for r in roots):
        raise InputError(
            f"run {raw!r} is outside the directories this server may read",
            hint="allowed: " + ", ".join(str(r) for r in roots),
        )
    if not (real / "run.json").is_file():
        raise InputError(f"{raw} is not a training run directory (no run.json)")
    return real


async def release_read(s: AsyncSession, r: Release, *, with_verdict: bool = False) -> ReleaseRead:
    """The API form of a release, with its gates."""
    gates = (
        await s.scalars(select(GateResult).where(GateResult.release_id == r.id).order_by(GateResult.id))
    ).all()
    return ReleaseRead(
        id=r.id,
        name=r.name,
        version=r.version,
        status=r.status,
        contract=r.contract_name,
        contract_sha256=r.contract_sha256,
        approval_required=r.approval_required,
        source=r.source_kind,
        target=r.target,
        digest=r.digest,
        error=r.error,
        submitted_by=r.submitted_by,
        approved_by=r.approved_by,
        created_at=r.created_at,
        updated_at=r.updated_at,
        gates=[
            GateRead(
                gate=g.gate,
                status=g.status,
                seconds=g.seconds,
                updated_at=g.updated_at,
                has_report=g.report is not None,
            )
            for g in gates
        ],
        verdict=r.verdict if with_verdict else None,
    )


async def load_release(s: AsyncSession, release_id: int) -> Release:
    """The release or 404."""
    r = await s.get(Release, release_id)
    if r is None:
        raise NotFoundException(f"no release {release_id}")
    return r


async def _create(
    st: AppState, who: Principal, *, name: str, version: str, contract: Contract, run_dir: Path, source: str
) -> Release:
    release = Release(
        name=name,
        version=version,
        status="queued",
        contract_name=contract.name,
        contract_path=str(contract.source_path),
        contract_sha256=contract.sha256,
        approval_required=contract.approval.required,
        source_kind=source,
        run_dir=str(run_dir),
        target=_target(st.settings, contract, name, version),
        submitted_by=who.name,
    )
    async with st.sessions() as s:
        try:
            async with s.begin():
                s.add(release)
                await s.flush()
                s.add(
                    Job(
                        release_id=release.id,
                        kind="release",
                        status="queued",
                        max_attempts=st.settings.max_attempts,
                    )
                )
                s.add(
                    AuditEntry(
                        actor=who.name,
                        action="submitted",
                        release_id=release.id,
                        name=name,
                        version=version,
                        detail={
                            "contract": contract.name,
                            "source": source,
                            "contract_sha256": contract.sha256,
                            "target": release.target,
                        },
                    )
                )
                s.add(
                    Event(
                        release_id=release.id,
                        kind="submitted",
                        data={"event": "submitted", "by": who.name, "source": source},
                    )
                )
        except IntegrityError as e:
            st.metrics.conflicts.inc()
            raise Conflict(f"release {name} {version} already exists") from e
    st.metrics.submitted.inc()
    return release


async def _exists(st: AppState, name: str, version: str) -> Release | None:
    async with st.sessions() as s:
        r: Release | None = await s.scalar(
            select(Release).where(Release.name == name, Release.version == version)
        )
        return r


class ReleaseController(Controller):
    """``/api/releases``."""

    path = "/api/releases"
    tags = ["releases"]  # noqa: RUF012

    @post("/", guards=[requires("submit")], status_code=201)
    async def submit(self, request: Request[Principal, Any, Any], data: ReleaseSubmit) -> ReleaseRead:
        """Submit a run the server can read (a directory under an allowed root)."""
        st = app_state(request)
        _check_ids(data.name, data.version)
        contract = await anyio.to_thread.run_sync(find_contract, st.settings, data.contract)
        run_dir = _resolve_reference(st.settings, data.run)
        release = await _create(
            st,
            request.user,
            name=data.name,
            version=data.version,
            contract=contract,
            run_dir=run_dir,
            source="reference",
        )
        async with st.sessions() as s:
            return await release_read(s, await load_release(s, release.id))

    @post("/upload", guards=[requires("submit")], status_code=201, request_max_body_size=None)
    async def upload(
        self,
        request: Request[Principal, Any, Any],
        name: str,
        version: str,
        contract: str = "smollm2-vllm",
    ) -> ReleaseRead:
        """Submit a run as a tar(.gz) or zip archive in the body, streamed to disk with a size limit."""
        st = app_state(request)
        _check_ids(name, version)
        limits = st.settings.archive
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_upload_bytes:
            raise TooLarge(f"upload of {declared} bytes is over the limit of {limits.max_upload_bytes} bytes")
        the_contract = await anyio.to_thread.run_sync(find_contract, st.settings, contract)
        if (existing := await _exists(st, name, version)) is not None:
            st.metrics.conflicts.inc()
            raise Conflict(f"release {name} {version} already exists (status {existing.status})")
        uploads = st.settings.data_dir / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        uid = uuid.uuid4().hex
        part = uploads / f"{uid}.part"
        unpacked = uploads / uid
        size = 0
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_upload_bytes:
                        raise TooLarge(f"upload is over the limit of {limits.max_upload_bytes} bytes")
                    fh.write(chunk)
            if size == 0:
                raise InputError("the request body is empty: send the run archive as the body")
            await anyio.to_thread.run_sync(
                lambda: unpack_archive(part, unpacked, limits, name=f"upload of {name} {version}")
            )
            run_dir = find_run_dir(unpacked)
            release = await _create(
                st,
                request.user,
                name=name,
                version=version,
                contract=the_contract,
                run_dir=run_dir,
                source="upload",
            )
        except BaseException:
            shutil.rmtree(unpacked, ignore_errors=True)
            raise
        finally:
            part.unlink(missing_ok=True)
        async with st.sessions() as s:
            return await release_read(s, await load_release(s, release.id))

    @get("/", guards=[requires("read")])
    async def read_all(
        self,
        request: Request[Principal, Any, Any],
        status: str | None = None,
        name: str | None = None,
        limit: int = Parameter(default=100, ge=1, le=1000),
        offset: int = Parameter(default=0, ge=0),
    ) -> list[ReleaseRead]:
        """Releases, newest first."""
        st = app_state(request)
        q = select(Release).order_by(Release.id.desc()).limit(limit).offset(offset)
        if status:
            q = q.where(Release.status == status)
        if name:
            q = q.where(Release.name == name)
        async with st.sessions() as s:
            return [await release_read(s, r) for r in (await s.scalars(q)).all()]

    @get("/{release_id:int}", guards=[requires("read")])
    async def read_one(self, request: Request[Principal, Any, Any], release_id: int) -> ReleaseRead:
        """One release with per-gate status and its verdict."""
        async with app_state(request).sessions() as s:
            return await release_read(s, await load_release(s, release_id), with_verdict=True)

    @get("/by-version/{name:str}/{version:str}", guards=[requires("read")])
    async def by_version(self, request: Request[Principal, Any, Any], name: str, version: str) -> ReleaseRead:
        """One release by name and version."""
        async with app_state(request).sessions() as s:
            r = await s.scalar(select(Release).where(Release.name == name, Release.version == version))
            if r is None:
                raise NotFoundException(f"no release {name} {version}")
            return await release_read(s, r, with_verdict=True)

    @get("/{release_id:int}/reports/{gate:str}", guards=[requires("read")])
    async def report(
        self, request: Request[Principal, Any, Any], release_id: int, gate: str
    ) -> dict[str, Any]:
        """The report one gate wrote."""
        async with app_state(request).sessions() as s:
            await load_release(s, release_id)
            row = await s.scalar(
                select(GateResult).where(GateResult.release_id == release_id, GateResult.gate == gate)
            )
            if row is None or row.report is None:
                raise NotFoundException(f"release {release_id} has no {gate} report")
            return row.report

    @get("/{release_id:int}/run", guards=[requires("read")])
    async def run(self, request: Request[Principal, Any, Any], release_id: int) -> dict[str, Any]:
        """The training run record (run.json) of the release's run."""
        async with app_state(request).sessions() as s:
            r = await load_release(s, release_id)
        return await anyio.to_thread.run_sync(read_run_record, Path(r.run_dir))

    @get("/{release_id:int}/events", guards=[requires("read")])
    async def events(
        self,
        request: Request[Principal, Any, Any],
        release_id: int,
        follow: bool = True,
        after: int = Parameter(default=0, ge=0),
    ) -> ServerSentEvent:
        """Server-sent events of the release: every stored event, then live ones until it is done."""
        st = app_state(request)
        async with st.sessions() as s:
            await load_release(s, release_id)
        last_id = request.headers.get("last-event-id", "")
        start = int(last_id) if last_id.isdigit() else after
        return ServerSentEvent(_event_stream(st, release_id, start, follow))

    @post("/{release_id:int}/approve", guards=[requires("approve")], status_code=200)
    async def approve(self, request: Request[Principal, Any, Any], release_id: int) -> ReleaseRead:
        """Approve a release whose gates all passed: it is queued for publishing."""
        st = app_state(request)
        who = request.user
        async with st.sessions() as s, s.begin():
            r = await load_release(s, release_id)
            if r.submitted_by == who.name and who.role != "admin":
                raise ClientException(
                    f"{who.name} submitted release {release_id} and cannot also approve it", status_code=403
                )
            res = await s.execute(
                update(Release)
                .where(Release.id == release_id, Release.status == "awaiting_approval")
                .values(status="queued", approved_by=who.name, updated_at=utcnow())
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(f"release {release_id} is {r.status}, not awaiting approval")
            s.add(
                Job(
                    release_id=release_id,
                    kind="publish",
                    status="queued",
                    max_attempts=st.settings.max_attempts,
                )
            )
            s.add(
                AuditEntry(
                    actor=who.name,
                    action="approved",
                    release_id=release_id,
                    name=r.name,
                    version=r.version,
                    detail={"contract_sha256": r.contract_sha256},
                )
            )
            s.add(Event(release_id=release_id, kind="approved", data={"event": "approved", "by": who.name}))
        async with st.sessions() as s:
            return await release_read(s, await load_release(s, release_id))

    @post("/{release_id:int}/reject", guards=[requires("approve")], status_code=200)
    async def reject(self, request: Request[Principal, Any, Any], release_id: int) -> ReleaseRead:
        """Reject a release awaiting approval: it is never published."""
        st = app_state(request)
        who = request.user
        async with st.sessions() as s, s.begin():
            r = await load_release(s, release_id)
            res = await s.execute(
                update(Release)
                .where(Release.id == release_id, Release.status == "awaiting_approval")
                .values(status="rejected", updated_at=utcnow())
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(f"release {release_id} is {r.status}, not awaiting approval")
            s.add(
                AuditEntry(
                    actor=who.name,
                    action="rejected",
                    release_id=release_id,
                    name=r.name,
                    version=r.version,
                    detail={},
                )
            )
            s.add(
                Event(
                    release_id=release_id,
                    kind="finished",
                    data={"event": "finished", "status": "rejected", "by": who.name},
                )
            )
        async with st.sessions() as s:
            return await release_read(s, await load_release(s, release_id))


async def _event_stream(st: AppState, release_id: int, after: int, follow: bool) -> AsyncIterator[Any]:
    last = after
    while True:
        async with st.sessions() as s:
            rows = (
                await s.scalars(
                    select(Event)
                    .where(Event.release_id == release_id, Event.id > last)
                    .order_by(Event.id)
                    .limit(500)
                )
            ).all()
            status = await s.scalar(select(Release.status).where(Release.id == release_id))
        for ev in rows:
            last = ev.id
            yield ServerSentEventMessage(data=json.dumps(ev.data, default=str), event=ev.kind, id=ev.id)
        if not rows and (not follow or status in TERMINAL_STATUSES or status == "awaiting_approval"):
            yield ServerSentEventMessage(data=json.dumps({"event": "end", "status": status}), event="end")
            return
        if not rows:
            await asyncio.sleep(0.5)


_MAX_RUN_JSON = 8 << 20


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """run.json of a run directory (bounded; a symlinked run.json is refused)."""
    path = run_dir / "run.json"
    if path.is_symlink() or not path.is_file():
        raise NotFoundException(f"{run_dir} has no run.json")
    with path.open("rb") as fh:
        raw = fh.read(_MAX_RUN_JSON + 1)
    if len(raw) > _MAX_RUN_JSON:
        raise InputError(f"{path} is larger than {_MAX_RUN_JSON} bytes")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise InputError(f"{path} is not JSON: {e}") from e
    return data if isinstance(data, dict) else {"value": data}


class AuditController(Controller):
    """``/api/audit``: the append-only audit log."""

    path = "/api/audit"
    guards = [requires("read")]  # noqa: RUF012
    tags = ["audit"]  # noqa: RUF012

    @get("/")
    async def read_all(
        self,
        request: Request[Principal, Any, Any],
        release_id: int | None = None,
        limit: int = Parameter(default=200, ge=1, le=5000),
    ) -> list[AuditRead]:
        """Audit entries, oldest first."""
        q = select(AuditEntry).order_by(AuditEntry.id).limit(limit)
        if release_id is not None:
            q = q.where(AuditEntry.release_id == release_id)
        async with app_state(request).sessions() as s:
            return [
                AuditRead(
                    id=a.id,
                    ts=a.ts,
                    actor=a.actor,
                    action=a.action,
                    release_id=a.release_id,
                    name=a.name,
                    version=a.version,
                    digest=a.digest,
                    detail=a.detail,
                )
                for a in (await s.scalars(q)).all()
            ]


async def status_counts(s: AsyncSession) -> tuple[dict[str, int], dict[str, int]]:
    """(releases by status, jobs by status)."""
    rel = dict(
        (await s.execute(select(Release.status, func.count()).group_by(Release.status))).tuples().all()
    )
    jobs = dict((await s.execute(select(Job.status, func.count()).group_by(Job.status))).tuples().all())
    return rel, jobs
