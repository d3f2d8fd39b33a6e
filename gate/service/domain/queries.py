"""Reads of releases for the API and the UI: one query per page, only the columns a response shows.

A list page is one SELECT: the page of releases (filters, order, limit, offset),
each row carrying its gates as one JSON array the database builds. Gate reports
and verdicts are never read for a list: ``has_report`` is a flag written with the
report. A status read is one prebuilt SELECT of the release joined to its gates.
Gates are returned in pipeline order, not in the order their rows were written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.exceptions import NotFoundException
from sqlalchemy import Text, bindparam, case, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from gate.bundle import REQUIRED_GATES
from gate.errors import InputError
from gate.service.domain.schemas import GateRead, ReleaseRead
from gate.service.models import GateResult, Release

__all__ = [
    "GATE_ORDER",
    "MAX_ID",
    "STATUSES",
    "ReleaseFilter",
    "check_id",
    "list_releases",
    "read_release",
]

#: Release statuses, in the order a release moves through them.
STATUSES = (
    "queued",
    "running",
    "awaiting_approval",
    "publishing",
    "published",
    "failed",
    "error",
    "rejected",
)
#: Gates in the order the pipeline runs them (then signing and publishing).
GATE_ORDER = (*REQUIRED_GATES, "sign", "publish")
#: Ids are 64-bit: a larger one is no release (SQLite would overflow converting it).
MAX_ID = (1 << 63) - 1

_RELEASE_COLS = (
    Release.id,
    Release.name,
    Release.version,
    Release.status,
    Release.contract_name,
    Release.contract_sha256,
    Release.approval_required,
    Release.source_kind,
    Release.target,
    Release.digest,
    Release.error,
    Release.submitted_by,
    Release.approved_by,
    Release.created_at,
    Release.updated_at,
)
# A flag written with the report: the report itself is neither read nor decoded.
_GATE_COLS = (
    GateResult.gate.label("g_gate"),
    GateResult.status.label("g_status"),
    GateResult.seconds.label("g_seconds"),
    GateResult.updated_at.label("g_updated_at"),
    GateResult.has_report.label("has_report"),
)
# The status read's statements, built once: building a select costs more than running it.
# The verdict as stored text: every joined row repeats it, and only one copy is decoded.
_VERDICT = cast(Release.verdict, Text).label("verdict")
_ONE = select(*_RELEASE_COLS, _VERDICT, *_GATE_COLS).outerjoin(
    GateResult, GateResult.release_id == Release.id
)
_BY_ID = {
    True: _ONE.where(Release.id == bindparam("id")).order_by(GateResult.id),
    False: select(*_RELEASE_COLS, *_GATE_COLS)
    .outerjoin(GateResult, GateResult.release_id == Release.id)
    .where(Release.id == bindparam("id"))
    .order_by(GateResult.id),
}
_BY_VERSION = _ONE.where(Release.name == bindparam("name"), Release.version == bindparam("version")).order_by(
    GateResult.id
)


def check_id(release_id: int) -> None:
    """404 for an id no release can have (negative, zero, or over 64 bits)."""
    if not 0 < release_id <= MAX_ID:
        raise NotFoundException(f"no release {release_id}")


def _parse_time(raw: str, flag: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(raw[:40])
    except ValueError:
        raise InputError(f"{flag}={raw[:40]!r} is not an ISO date or time", hint="e.g. 2026-12-01") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class ReleaseFilter:
    """What a list may be narrowed by (the API's and the UI's query parameters)."""

    status: tuple[str, ...] = ()
    name: str | None = None
    contract: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @classmethod
    def parse(
        cls,
        *,
        status: str | None = None,
        name: str | None = None,
        contract: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> ReleaseFilter:
        """From query strings; an unknown status or a bad date is a 400 naming it."""
        wanted = tuple(s for s in (status or "").split(",") if s)
        for s in wanted:
            if s not in STATUSES:
                raise InputError(f"unknown status {s[:40]!r}", hint="one of " + ", ".join(STATUSES))
        return cls(
            status=wanted,
            name=name or None,
            contract=contract or None,
            since=_parse_time(since, "since") if since else None,
            until=_parse_time(until, "until") if until else None,
        )

    def apply(self, q: Any) -> Any:
        """``q`` narrowed to the releases this filter keeps."""
        if self.status:
            q = q.where(Release.status.in_(self.status))
        if self.name:
            q = q.where(Release.name == self.name)
        if self.contract:
            q = q.where(Release.contract_name == self.contract)
        if self.since:
            q = q.where(Release.created_at >= self.since)
        if self.until:
            q = q.where(Release.created_at < self.until)
        return q

    def query_string(self) -> dict[str, str]:
        """The filter as query parameters (for the UI's links)."""
        out: dict[str, str] = {}
        if self.status:
            out["status"] = ",".join(self.status)
        for key in ("name", "contract"):
            if value := getattr(self, key):
                out[key] = value
        for key in ("since", "until"):
            if value := getattr(self, key):
                out[key] = value.isoformat()
        return out


def _gate_key(g: GateRead) -> tuple[int, str]:
    return (GATE_ORDER.index(g.gate) if g.gate in GATE_ORDER else len(GATE_ORDER), g.gate)


def _release(m: Any, gates: list[GateRead], verdict: dict[str, Any] | None) -> ReleaseRead:
    return ReleaseRead(
        id=m["id"],
        name=m["name"],
        version=m["version"],
        status=m["status"],
        contract=m["contract_name"],
        contract_sha256=m["contract_sha256"],
        approval_required=m["approval_required"],
        source=m["source_kind"],
        target=m["target"],
        digest=m["digest"],
        error=m["error"],
        submitted_by=m["submitted_by"],
        approved_by=m["approved_by"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        gates=sorted(gates, key=_gate_key),
        verdict=verdict,
    )


def _assemble(rows: Sequence[Any], *, with_verdict: bool) -> list[ReleaseRead]:
    """Releases from rows of a release joined to its gates (one row per gate)."""
    gates: dict[int, list[GateRead]] = {}
    first: dict[int, Any] = {}
    for row in rows:
        m = row._mapping
        first.setdefault(m["id"], m)
        these = gates.setdefault(m["id"], [])
        if m["g_gate"] is not None:
            these.append(
                GateRead(
                    gate=m["g_gate"],
                    status=m["g_status"],
                    seconds=m["g_seconds"],
                    updated_at=m["g_updated_at"],
                    has_report=bool(m["has_report"]),
                )
            )
    return [
        _release(m, gates[i], _decode_verdict(m["verdict"]) if with_verdict else None)
        for i, m in first.items()
    ]


def _decode_verdict(raw: str | None) -> dict[str, Any] | None:
    value = json.loads(raw) if raw is not None else None
    return value if isinstance(value, dict) else None


def _key(name: str) -> Any:
    # Inlined, not bound: PostgreSQL cannot type a parameter passed to json_build_object.
    return literal_column(f"'{name}'")


def _gates_json(dialect: str) -> Any:
    """A release's gates as the JSON text of a list of :class:`GateRead` objects, built by the database.

    A list page is one row per release: joined rows would repeat the release's
    columns for every gate and convert its timestamps three times over. The times
    are written as RFC 3339 UTC, which msgspec decodes straight into the structs.
    """
    g = GateResult
    if dialect == "postgresql":
        stamp: Any = func.to_char(
            func.timezone(_key("UTC"), g.updated_at), _key('YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        )
        flag: Any = g.has_report
        agg, obj = func.json_agg, func.json_build_object
    else:
        # SQLite holds "YYYY-MM-DD HH:MM:SS.ffffff" in UTC.
        stamp = func.replace(g.updated_at, _key(" "), _key("T")).op("||")(_key("Z"))
        flag = func.json(case((g.has_report, _key("true")), else_=_key("false")))
        agg, obj = func.json_group_array, func.json_object
    fields = (("gate", g.gate), ("status", g.status), ("seconds", g.seconds), ("has_report", flag))
    body = obj(*(x for name, col in fields for x in (_key(name), col)), _key("updated_at"), stamp)
    return (
        select(cast(agg(body), Text))
        .where(g.release_id == Release.id)
        .correlate(Release)
        .scalar_subquery()
        .label("gates")
    )


_GATES = msgspec.json.Decoder(list[GateRead])


async def list_releases(s: AsyncSession, flt: ReleaseFilter, *, limit: int, offset: int) -> list[ReleaseRead]:
    """One page of releases, newest first, with their gates: one query, one row per release."""
    conn = await s.connection()
    q = flt.apply(select(*_RELEASE_COLS, _gates_json(conn.dialect.name)))
    rows = (await conn.execute(q.order_by(Release.id.desc()).limit(limit).offset(offset))).all()
    out = []
    for row in rows:
        m = row._mapping
        out.append(_release(m, _GATES.decode(m["gates"]) if m["gates"] else [], None))
    return out


async def read_release(
    s: AsyncSession,
    release_id: int | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    with_verdict: bool = True,
) -> ReleaseRead:
    """One release with its gates (and its verdict): one query, or 404."""
    conn = await s.connection()
    if release_id is not None:
        check_id(release_id)
        rows = (await conn.execute(_BY_ID[with_verdict], {"id": release_id})).all()
        missing = f"no release {release_id}"
    else:
        rows = (await conn.execute(_BY_VERSION, {"name": name, "version": version})).all()
        missing = f"no release {name} {version}"
        with_verdict = True
    found = _assemble(rows, with_verdict=with_verdict)
    if not found:
        raise NotFoundException(missing)
    return found[0]
