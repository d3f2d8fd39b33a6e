"""Reads of releases for the API and the UI: one statement each, the response's JSON built by the database.

A status read and a list page are each one prebuilt SELECT (:class:`Prepared`,
run by the :class:`Reader`) whose single value is the response body: the
release, or the page of releases (filters, order, limit, offset), as JSON in
:class:`ReleaseRead`'s shape, gates included. Building and encoding 100 releases
with 300 gates cost about 2 ms of Python per page; SQLite's and PostgreSQL's
JSON functions do it in C, and the API sends the text as it comes. The UI
decodes the same text into the structs (msgspec). Gate reports and verdicts are
never read for a list: ``has_report`` is a flag written with the report. Gates
are in pipeline order, not in the order their rows were written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.exceptions import NotFoundException
from sqlalchemy import BigInteger, Text, bindparam, case, cast, func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from gate.bundle import REQUIRED_GATES
from gate.errors import InputError
from gate.service.domain.schemas import ReleaseRead
from gate.service.models import GateResult, Release
from gate.service.reader import Prepared, Reader, bind_time

__all__ = [
    "GATE_ORDER",
    "MAX_ID",
    "STATUSES",
    "ReleaseFilter",
    "check_id",
    "list_releases",
    "page_json",
    "read_release",
    "release_json",
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

    def shape(self) -> tuple[int, bool, bool, bool, bool]:
        """What the statement of this filter depends on (not the values: those are parameters)."""
        return (len(self.status), bool(self.name), bool(self.contract), bool(self.since), bool(self.until))

    def apply(self, q: Any) -> Any:
        """``q`` narrowed to the releases this filter keeps, with the values as parameters."""
        if self.status:
            q = q.where(or_(*(Release.status == bindparam(f"status{i}") for i in range(len(self.status)))))
        if self.name:
            q = q.where(Release.name == bindparam("name"))
        if self.contract:
            q = q.where(Release.contract_name == bindparam("contract"))
        if self.since:
            q = q.where(Release.created_at >= bindparam("since", type_=Release.created_at.type))
        if self.until:
            q = q.where(Release.created_at < bindparam("until", type_=Release.created_at.type))
        return q

    def params(self, dialect: str) -> dict[str, Any]:
        """The parameters of :meth:`apply`'s statement."""
        out: dict[str, Any] = {f"status{i}": s for i, s in enumerate(self.status)}
        if self.name:
            out["name"] = self.name
        if self.contract:
            out["contract"] = self.contract
        if self.since:
            out["since"] = bind_time(dialect, self.since)
        if self.until:
            out["until"] = bind_time(dialect, self.until)
        return out

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


def _key(name: str) -> Any:
    # Inlined, not bound: PostgreSQL cannot type a parameter passed to json_build_object.
    return literal_column(f"'{name}'")


def _stamp(dialect: str, col: Any) -> Any:
    """A timestamp as RFC 3339 UTC text (what msgspec writes and reads for an aware datetime)."""
    if dialect == "postgresql":
        return func.to_char(func.timezone(_key("UTC"), col), _key('YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
    # SQLite holds "YYYY-MM-DD HH:MM:SS.ffffff" in UTC.
    return func.replace(col, _key(" "), _key("T")).op("||")(_key("Z"))


def _flag(dialect: str, col: Any) -> Any:
    """A boolean column as JSON true/false (SQLite stores 0/1)."""
    if dialect == "postgresql":
        return col
    return func.json(case((col, _key("true")), else_=_key("false")))


def _object(dialect: str, fields: tuple[tuple[str, Any], ...]) -> Any:
    build = func.json_build_object if dialect == "postgresql" else func.json_object
    return build(*(x for name, col in fields for x in (_key(name), col)))


# Literals, not parameters: the prebuilt statements take only the request's values.
_GATE_RANK = case(
    *((GateResult.gate == _key(gate), literal_column(str(i))) for i, gate in enumerate(GATE_ORDER)),
    else_=literal_column(str(len(GATE_ORDER))),
)


def _gates(dialect: str) -> Any:
    """A release's gates, in pipeline order, as a JSON array of :class:`GateRead` objects."""
    g = GateResult
    obj = _object(
        dialect,
        (
            ("gate", g.gate),
            ("status", g.status),
            ("seconds", g.seconds),
            ("updated_at", _stamp(dialect, g.updated_at)),
            ("has_report", _flag(dialect, g.has_report)),
        ),
    )
    mine = g.release_id == Release.id
    if dialect == "postgresql":
        agg = func.json_agg(aggregate_order_by(obj, _GATE_RANK, g.gate))
        return select(func.coalesce(agg, literal_column("'[]'::json"))).where(mine).scalar_subquery()
    # SQLite before 3.44 has no ORDER BY in an aggregate: it concatenates the rows of an ordered subquery
    # in that order (an aggregate over a subquery with ORDER BY is not flattened).
    rows = select(obj.label("g")).where(mine).order_by(_GATE_RANK, g.gate).correlate(Release).subquery()
    text = (
        _key("[")
        .op("||")(func.coalesce(func.group_concat(rows.c.g, _key(",")), _key("")))
        .op("||")(_key("]"))
    )
    return func.json(select(text).scalar_subquery())


def _release(dialect: str) -> Any:
    """A release as a JSON object in :class:`ReleaseRead`'s shape, its verdict null (it is the last key)."""
    r = Release
    return _object(
        dialect,
        (
            ("id", r.id),
            ("name", r.name),
            ("version", r.version),
            ("status", r.status),
            ("contract", r.contract_name),
            ("contract_sha256", r.contract_sha256),
            ("approval_required", _flag(dialect, r.approval_required)),
            ("source", r.source_kind),
            ("target", r.target),
            ("digest", r.digest),
            ("error", r.error),
            ("submitted_by", r.submitted_by),
            ("approved_by", r.approved_by),
            ("created_at", _stamp(dialect, r.created_at)),
            ("updated_at", _stamp(dialect, r.updated_at)),
            ("gates", _gates(dialect)),
            ("verdict", literal_column("NULL")),
        ),
    )


def _one(where: Any) -> Prepared:
    # The verdict as its stored text beside the release: parsing kilobytes of JSON only to embed them
    # again (SQLite's json()) was a tenth of a status read's CPU.
    return Prepared(
        lambda d: select(cast(_release(d), Text), cast(Release.verdict, Text)).where(where), cached=True
    )


_BY_ID = _one(Release.id == bindparam("id"))
_BY_VERSION = _one((Release.name == bindparam("name")) & (Release.version == bindparam("version")))
_NULL_VERDICT = "null}"


def _page(flt: ReleaseFilter) -> Prepared:
    """A page of releases, newest first, as one JSON array."""

    def build(d: str) -> Any:
        rows = (
            flt.apply(select(Release.id, _release(d).label("j")))
            .order_by(Release.id.desc())
            .limit(bindparam("limit", type_=BigInteger))
            .offset(bindparam("offset", type_=BigInteger))
            .subquery()
        )
        if d == "postgresql":
            agg = func.json_agg(aggregate_order_by(rows.c.j, rows.c.id.desc()))
            return select(cast(func.coalesce(agg, literal_column("'[]'::json")), Text))
        # In the subquery's order, as for the gates.
        body = func.coalesce(func.group_concat(rows.c.j, _key(",")), _key(""))
        return select(_key("[").op("||")(body).op("||")(_key("]")))

    return Prepared(build, cached=True)


_PAGES: dict[tuple[int, bool, bool, bool, bool], Prepared] = {}
_RELEASE = msgspec.json.Decoder(ReleaseRead)
_RELEASES = msgspec.json.Decoder(list[ReleaseRead])


async def page_json(reader: Reader, scope: Any, flt: ReleaseFilter, *, limit: int, offset: int) -> bytes:
    """One page of releases, newest first, with their gates (no verdicts), as the API's JSON body."""
    stmt = _PAGES.get(flt.shape())
    if stmt is None:
        stmt = _PAGES[flt.shape()] = _page(flt)
    params = {**flt.params(reader.dialect.name), "limit": limit, "offset": offset}
    (text,) = (await reader.rows(scope, stmt, params))[0]
    return str(text).encode()


async def release_json(
    reader: Reader,
    scope: Any,
    release_id: int | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    with_verdict: bool = True,
) -> bytes:
    """One release with its gates (and its verdict) as the API's JSON body, or 404."""
    if release_id is not None:
        check_id(release_id)
        rows = await reader.rows(scope, _BY_ID, {"id": release_id})
        missing = f"no release {release_id}"
    else:
        rows = await reader.rows(scope, _BY_VERSION, {"name": name, "version": version})
        missing = f"no release {name} {version}"
    if not rows:
        raise NotFoundException(missing)
    body, verdict = rows[0]
    # The stored verdict is JSON written by the service (SQLAlchemy's JSON type); one that is not
    # an object (none yet is stored as null) stays null.
    if with_verdict and verdict and verdict.lstrip().startswith("{"):
        body = body[: -len(_NULL_VERDICT)] + verdict + "}"
    return str(body).encode()


async def list_releases(
    reader: Reader, scope: Any, flt: ReleaseFilter, *, limit: int, offset: int
) -> list[ReleaseRead]:
    """:func:`page_json` as structs (for the UI)."""
    return _RELEASES.decode(await page_json(reader, scope, flt, limit=limit, offset=offset))


async def read_release(
    reader: Reader,
    scope: Any,
    release_id: int | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    with_verdict: bool = True,
) -> ReleaseRead:
    """:func:`release_json` as a struct."""
    raw = await release_json(reader, scope, release_id, name=name, version=version, with_verdict=with_verdict)
    return _RELEASE.decode(raw)
