"""The append-only audit log: ``/api/audit`` and the pages of it the UI shows."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.params import Parameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gate.service.auth import Principal
from gate.service.domain.queries import MAX_ID
from gate.service.domain.schemas import AuditRead
from gate.service.guards import db, requires
from gate.service.models import AuditEntry

__all__ = ["AuditController", "audit_entries"]


class AuditController(Controller):
    """``/api/audit``: the append-only audit log."""

    path = "/api/audit"
    opt = requires("read")
    tags = ["audit"]  # noqa: RUF012

    @get("/")
    async def read_all(
        self,
        request: Request[Principal, Any, Any],
        release_id: int | None = Parameter(default=None, ge=1, le=MAX_ID),
        limit: int = Parameter(default=200, ge=1, le=5000),
        offset: int = Parameter(default=0, ge=0, le=MAX_ID),
    ) -> list[AuditRead]:
        """Audit entries, oldest first."""
        return await audit_entries(db(request), release_id=release_id, limit=limit, offset=offset)


async def audit_entries(
    s: AsyncSession,
    *,
    release_id: int | None = None,
    limit: int = 200,
    offset: int = 0,
    newest_first: bool = False,
) -> list[AuditRead]:
    """A page of the audit log (of one release, when given)."""
    order = AuditEntry.id.desc() if newest_first else AuditEntry.id
    q = select(AuditEntry).order_by(order).limit(limit).offset(offset)
    if release_id is not None:
        q = q.where(AuditEntry.release_id == release_id)
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
