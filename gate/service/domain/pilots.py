"""Pilot matrices (``gate pilot``'s ``pilot.json``): upload, list, read, and a UI page.

A matrix is validated against :class:`gate.pilot.PilotMatrix` and stored as a
file under ``DATA_DIR/pilots/<id>.json`` (id: the first 16 hex digits of the
body's sha256, so uploading the same matrix twice is idempotent). The page
renders it with the CLI's own renderer (:func:`gate.pilot.render_fragment`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import anyio
from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Template
from markupsafe import Markup
from pydantic import BaseModel

from gate.console import atomic_write_text
from gate.errors import InputError
from gate.pilot import PilotMatrix, render_fragment
from gate.service.auth import Principal
from gate.service.domain.submissions import TooLarge
from gate.service.guards import requires
from gate.service.state import app_state

__all__ = ["MAX_PILOT_BYTES", "PilotController", "PilotRead", "PilotUIController"]

#: A matrix of a few toolkits is tens of KB; anything this large is not one.
MAX_PILOT_BYTES = 4 << 20
#: Matrices a listing reads at most (the newest).
MAX_LISTED = 200
_ID = re.compile(r"^[0-9a-f]{16}$")


class PilotRead(BaseModel):
    """A stored pilot matrix, summarised."""

    id: str
    created_at: str
    toolkits: list[str]
    complete: bool
    scores: dict[str, float]
    spec: str
    contract: str


def _dir(request: Request[Any, Any, Any]) -> Path:
    return app_state(request).settings.data_dir / "pilots"


def _summary(ident: str, m: PilotMatrix) -> PilotRead:
    return PilotRead(
        id=ident,
        created_at=m.created_at,
        toolkits=[t.toolkit for t in m.toolkits],
        complete=m.complete,
        scores={s.toolkit: s.score for s in m.scores},
        spec=m.spec.get("name", ""),
        contract=m.contract.get("name", ""),
    )


def _parse(body: bytes, where: str) -> PilotMatrix:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{where}: not valid JSON: {e}") from None
    return PilotMatrix.from_dict(data, where=where)


def _load(directory: Path, ident: str) -> PilotMatrix:
    if not _ID.match(ident):
        raise NotFoundException(f"no pilot {ident!r}")
    path = directory / f"{ident}.json"
    if path.is_symlink() or not path.is_file():
        raise NotFoundException(f"no pilot {ident!r}")
    return _parse(path.read_bytes(), f"pilot {ident}")


def _list(directory: Path) -> list[PilotRead]:
    out = []
    if directory.is_dir():
        # Newest first, bounded: a listing never parses more than MAX_LISTED matrices.
        paths = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in paths[:MAX_LISTED]:
            if path.is_symlink() or not _ID.match(path.stem) or path.stat().st_size > MAX_PILOT_BYTES:
                continue
            try:
                out.append(_summary(path.stem, _parse(path.read_bytes(), path.name)))
            except InputError:
                continue
    return sorted(out, key=lambda p: p.created_at, reverse=True)


class PilotController(Controller):
    """``/api/pilots``: upload (submit role), list and read (read role)."""

    path = "/api/pilots"
    tags = ["pilots"]  # noqa: RUF012 - Litestar's declaration style

    @post("/", opt=requires("submit"), status_code=201, request_max_body_size=MAX_PILOT_BYTES)
    async def upload(self, request: Request[Principal, Any, Any]) -> PilotRead:
        """Store a ``pilot.json`` sent as the body (validated against the matrix model)."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_PILOT_BYTES:
            raise TooLarge(f"a pilot matrix of {declared} bytes is over the limit of {MAX_PILOT_BYTES} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_PILOT_BYTES:
                raise TooLarge(f"a pilot matrix is limited to {MAX_PILOT_BYTES} bytes")
        if not body:
            raise InputError("the request body is empty: send pilot.json as the body")
        matrix = _parse(body, "uploaded pilot.json")
        ident = hashlib.sha256(body).hexdigest()[:16]
        directory = _dir(request)

        def store() -> None:
            directory.mkdir(parents=True, exist_ok=True)
            atomic_write_text(directory / f"{ident}.json", body.decode("utf-8"))
            os.chmod(directory / f"{ident}.json", 0o600)

        await anyio.to_thread.run_sync(store)
        return _summary(ident, matrix)

    @get("/", opt=requires("read"))
    async def read_all(self, request: Request[Principal, Any, Any]) -> list[PilotRead]:
        """Every stored pilot, newest first."""
        return await anyio.to_thread.run_sync(_list, _dir(request))

    @get("/{ident:str}", opt=requires("read"))
    async def read_one(self, request: Request[Principal, Any, Any], ident: str) -> dict[str, Any]:
        """One pilot's full matrix (the ``pilot.json`` as uploaded, validated)."""
        matrix = await anyio.to_thread.run_sync(_load, _dir(request), ident)
        return matrix.to_dict()


class PilotUIController(Controller):
    """``/pilots`` and ``/pilots/{id}``: the same HTML and chart as ``gate pilot``'s pilot.html."""

    opt = requires("read")
    include_in_schema = False

    @get("/pilots")
    async def index(self, request: Request[Principal, Any, Any]) -> Template:
        """The stored pilots with their scores."""
        pilots = await anyio.to_thread.run_sync(_list, _dir(request))
        return Template(template_name="pilots.html.j2", context={"pilots": pilots, "who": request.user})

    @get("/pilots/{ident:str}")
    async def page(self, request: Request[Principal, Any, Any], ident: str) -> Template:
        """One pilot's matrix, score chart and contributions."""
        matrix = await anyio.to_thread.run_sync(_load, _dir(request), ident)
        # render_fragment escapes every value it interpolates.
        fragment = Markup(render_fragment(matrix))
        return Template(
            template_name="pilot.html.j2", context={"fragment": fragment, "who": request.user, "id": ident}
        )
