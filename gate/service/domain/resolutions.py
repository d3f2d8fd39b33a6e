"""``POST /api/resolutions``: vLLM servers running gate's resolver plugin report every resolution here.

Each report (an adapter served, or refused and why) becomes an append-only audit
entry: ``resolve`` for a verified release handed to vLLM, ``refuse`` for one that
was not, with the digest, the failed check and the reason. A serving host uses a
token of role ``submit``.
"""

from __future__ import annotations

from typing import Any, Literal

from litestar import Controller, Request, post
from pydantic import BaseModel, ConfigDict, Field

from gate.service.auth import Principal
from gate.service.guards import db, requires
from gate.service.models import AuditEntry

__all__ = ["ResolutionController", "ResolutionReport"]


class ResolutionReport(BaseModel):
    """What the resolver reports of one request (``gate.resolver.Resolution`` plus when and for what base)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=300)
    ok: bool
    check: str = Field(max_length=32)
    reason: str = Field(max_length=4000)
    digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    path: str | None = Field(default=None, max_length=4096)
    seconds: float = Field(default=0.0, ge=0, le=86400)
    cached: bool = False
    at: str | None = Field(default=None, max_length=64)
    base_identity: str | None = Field(default=None, max_length=200)


class ResolutionController(Controller):
    """``/api/resolutions``."""

    path = "/api/resolutions"
    opt = requires("submit")
    tags = ["audit"]  # noqa: RUF012

    @post("/", status_code=201)
    async def report(self, request: Request[Principal, Any, Any], data: ResolutionReport) -> dict[str, Any]:
        """Record one resolution in the audit log."""
        name, _, version = data.name.partition(":")
        action: Literal["resolve", "refuse"] = "resolve" if data.ok else "refuse"
        s = db(request)
        entry = AuditEntry(
            actor=request.user.name,
            action=action,
            name=name.partition("@")[0][:200],
            version=version[:100] or None,
            digest=data.digest,
            detail={
                "check": data.check,
                "reason": data.reason,
                "base_identity": data.base_identity,
                "cached": data.cached,
                "seconds": data.seconds,
                "at": data.at,
            },
        )
        s.add(entry)
        await s.commit()
        return {"id": entry.id, "action": action}
