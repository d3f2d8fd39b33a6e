"""Releases over HTTP: submit (by reference or upload), list, read, follow (SSE), approve, reject, retry."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import anyio
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import ServerSentEvent
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gate.errors import InputError
from gate.service.archives import find_run_dir, unpack_archive
from gate.service.auth import Principal
from gate.service.domain import actions
from gate.service.domain.actions import Conflict
from gate.service.domain.contracts import find_contract
from gate.service.domain.events import event_stream, last_event_id
from gate.service.domain.queries import MAX_ID, ReleaseFilter, check_id, page_json, read_release, release_json
from gate.service.domain.run_records import read_run_record
from gate.service.domain.schemas import PromoteRequest, ReleaseRead, ReleaseSubmit
from gate.service.domain.submissions import TooLarge, check_ids, resolve_reference
from gate.service.guards import db, requires
from gate.service.models import GateResult, Release
from gate.service.state import AppState, app_state

__all__ = ["ReleaseController", "load_release"]


async def load_release(s: AsyncSession, release_id: int) -> Release:
    """The release row or 404."""
    check_id(release_id)
    r = await s.get(Release, release_id)
    if r is None:
        raise NotFoundException(f"no release {release_id}")
    return r


async def _exists(s: AsyncSession, name: str, version: str) -> str | None:
    status: str | None = await s.scalar(
        select(Release.status).where(Release.name == name, Release.version == version)
    )
    return status


# The reads send the JSON the database built (gate.service.domain.queries); the schema still names its shape.
_ONE = {200: ResponseSpec(ReleaseRead, description="The release")}
_LIST = {200: ResponseSpec(list[ReleaseRead], description="A page of releases")}


def _json(body: bytes) -> Response[bytes]:
    return Response(body, media_type=MediaType.JSON)


class ReleaseController(Controller):
    """``/api/releases``."""

    path = "/api/releases"
    tags = ["releases"]  # noqa: RUF012

    @post("/", opt=requires("submit"), status_code=201)
    async def submit(self, request: Request[Principal, Any, Any], data: ReleaseSubmit) -> ReleaseRead:
        """Submit a run the server can read (a directory under an allowed root)."""
        st = app_state(request)
        check_ids(data.name, data.version)
        contract = await anyio.to_thread.run_sync(find_contract, st.settings, data.contract)
        run_dir = resolve_reference(st.settings, data.run)
        s = db(request)
        rid = await actions.create_release(
            s,
            st.settings,
            request.user,
            name=data.name,
            version=data.version,
            contract=contract,
            run_dir=run_dir,
            source="reference",
        )
        _count_submit(st)
        return await read_release(st.reader, request.scope, rid)

    @post("/upload", opt=requires("submit"), status_code=201, request_max_body_size=None)
    async def upload(
        self,
        request: Request[Principal, Any, Any],
        name: str,
        version: str,
        contract: str,
    ) -> ReleaseRead:
        """Submit a run as a tar(.gz) or zip archive in the body, streamed to disk with a size limit."""
        st = app_state(request)
        check_ids(name, version)
        limits = st.settings.archive
        declared = request.headers.get("content-length", "")
        if declared and (not declared.isdigit() or len(declared) > 19):
            raise InputError(f"Content-Length {declared[:40]!r} is not a byte count")
        if declared and int(declared) > limits.max_upload_bytes:
            raise TooLarge(f"upload of {declared} bytes is over the limit of {limits.max_upload_bytes} bytes")
        the_contract = await anyio.to_thread.run_sync(find_contract, st.settings, contract)
        s = db(request)
        if (existing := await _exists(s, name, version)) is not None:
            st.metrics.conflicts.inc()
            raise Conflict(f"release {name} {version} already exists (status {existing})")
        # The upload may take minutes: no transaction (and no pooled connection) is held meanwhile.
        await s.rollback()
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
            label = f"upload of {name} {version}"
            await anyio.to_thread.run_sync(lambda: unpack_archive(part, unpacked, limits, name=label))
            run_dir = find_run_dir(unpacked)
            rid = await actions.create_release(
                s,
                st.settings,
                request.user,
                name=name,
                version=version,
                contract=the_contract,
                run_dir=run_dir,
                source="upload",
            )
        except BaseException as e:
            shutil.rmtree(unpacked, ignore_errors=True)
            if isinstance(e, Conflict):
                st.metrics.conflicts.inc()
            raise
        finally:
            part.unlink(missing_ok=True)
        _count_submit(st)
        return await read_release(st.reader, request.scope, rid)

    @get("/", opt=requires("read"), responses=_LIST)
    async def read_all(
        self,
        request: Request[Principal, Any, Any],
        status: str | None = Parameter(
            default=None, max_length=400, description="one or more, comma-separated"
        ),
        name: str | None = Parameter(default=None, max_length=200),
        contract: str | None = Parameter(default=None, max_length=200),
        since: str | None = Parameter(default=None, max_length=40, description="created at or after (ISO)"),
        until: str | None = Parameter(default=None, max_length=40, description="created before (ISO)"),
        limit: int = Parameter(default=100, ge=1, le=1000),
        offset: int = Parameter(default=0, ge=0, le=MAX_ID),
    ) -> Response[bytes]:
        """Releases, newest first, with their gates (no verdicts: read one release for that)."""
        flt = ReleaseFilter.parse(status=status, name=name, contract=contract, since=since, until=until)
        reader = app_state(request).reader
        return _json(await page_json(reader, request.scope, flt, limit=limit, offset=offset))

    @get("/{release_id:int}", opt=requires("read"), responses=_ONE)
    async def read_one(self, request: Request[Principal, Any, Any], release_id: int) -> Response[bytes]:
        """One release with per-gate status and its verdict."""
        return _json(await release_json(app_state(request).reader, request.scope, release_id))

    @get("/by-version/{name:str}/{version:str}", opt=requires("read"), responses=_ONE)
    async def by_version(
        self, request: Request[Principal, Any, Any], name: str, version: str
    ) -> Response[bytes]:
        """One release by name and version."""
        return _json(await release_json(app_state(request).reader, request.scope, name=name, version=version))

    @get("/{release_id:int}/reports/{gate:str}", opt=requires("read"))
    async def report(
        self, request: Request[Principal, Any, Any], release_id: int, gate: str
    ) -> dict[str, Any]:
        """The report one gate wrote."""
        s = db(request)
        await load_release(s, release_id)
        report = await s.scalar(
            select(GateResult.report).where(GateResult.release_id == release_id, GateResult.gate == gate)
        )
        if not isinstance(report, dict):
            raise NotFoundException(f"release {release_id} has no {gate[:64]} report")
        return report

    @get("/{release_id:int}/run", opt=requires("read"))
    async def run(self, request: Request[Principal, Any, Any], release_id: int) -> dict[str, Any]:
        """The training run record (run.json) of the release's run."""
        r = await load_release(db(request), release_id)
        return await anyio.to_thread.run_sync(read_run_record, Path(r.run_dir))

    @get("/{release_id:int}/events", opt=requires("read"))
    async def events(
        self,
        request: Request[Principal, Any, Any],
        release_id: int,
        follow: bool = True,
        after: int = Parameter(default=0, ge=0, le=MAX_ID),
    ) -> ServerSentEvent:
        """Server-sent events of the release: every stored event, then live ones until it is done."""
        st = app_state(request)
        last = last_event_id(request.headers.get("last-event-id", ""))
        s = db(request)
        await load_release(s, release_id)
        # The stream polls with sessions of its own; the request's one must not hold a connection for hours.
        await s.close()
        return ServerSentEvent(event_stream(st, release_id, after if last is None else last, follow))

    @post("/{release_id:int}/approve", opt=requires("approve"), status_code=200)
    async def approve(self, request: Request[Principal, Any, Any], release_id: int) -> ReleaseRead:
        """Approve a release whose gates all passed: it is queued for publishing (not by its submitter)."""
        s = db(request)
        await actions.approve(s, app_state(request).settings, request.user, release_id)
        return await read_release(app_state(request).reader, request.scope, release_id)

    @post("/{release_id:int}/reject", opt=requires("approve"), status_code=200)
    async def reject(self, request: Request[Principal, Any, Any], release_id: int) -> ReleaseRead:
        """Reject a release awaiting approval: it is never published."""
        s = db(request)
        await actions.reject(s, request.user, release_id)
        return await read_release(app_state(request).reader, request.scope, release_id)

    @post("/{release_id:int}/retry", opt=requires("submit"), status_code=200)
    async def retry(self, request: Request[Principal, Any, Any], release_id: int) -> ReleaseRead:
        """Run a release whose pipeline could not run (status ``error``) again, under the same version."""
        s = db(request)
        await actions.retry(s, app_state(request).settings, request.user, release_id)
        return await read_release(app_state(request).reader, request.scope, release_id)

    @post("/{release_id:int}/promote", opt=requires("approve"), status_code=200)
    async def promote(
        self, request: Request[Principal, Any, Any], release_id: int, data: PromoteRequest
    ) -> dict[str, Any]:
        """Verify the published artifact, then move the channel tag (staging, prod) to it; audited."""
        ref = await actions.promote(
            db(request), app_state(request).settings, request.user, release_id, data.channel
        )
        return {"release_id": release_id, "channel": data.channel, "ref": ref}


def _count_submit(st: AppState) -> None:
    st.metrics.submitted.inc()
