"""The service's tables (SQLAlchemy 2 declarative models).

The schema itself is created and upgraded by the Alembic migrations in
``gate/service/migrations``; these models must match the latest revision.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "ApiToken",
    "AuditEntry",
    "Base",
    "Channel",
    "Event",
    "GateResult",
    "Job",
    "Release",
    "UTCDateTime",
    "utcnow",
]

# BIGINT autoincrement on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

#: Release statuses after which nothing runs any more.
TERMINAL_STATUSES = frozenset({"published", "failed", "error", "rejected"})
#: Statuses in which a worker owns the release.
ACTIVE_STATUSES = frozenset({"queued", "running", "publishing"})


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of the service's tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, dt.datetime: UTCDateTime()}


class Release(Base):
    """One submitted release candidate: NAME at VERSION, gated against one contract."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_releases_name_version"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    #: queued, running, awaiting_approval, publishing, published, failed, error, rejected
    status: Mapped[str] = mapped_column(String(32), index=True)
    contract_name: Mapped[str] = mapped_column(String(200))
    contract_path: Mapped[str] = mapped_column(Text)
    contract_sha256: Mapped[str] = mapped_column(String(80))
    approval_required: Mapped[bool] = mapped_column(default=False)
    #: "upload" or "reference"
    source_kind: Mapped[str] = mapped_column(String(16))
    run_dir: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    digest: Mapped[str | None] = mapped_column(String(100), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    submitted_by: Mapped[str] = mapped_column(String(200))
    approved_by: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    verdict: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class GateResult(Base):
    """The latest state and report of one gate of one release."""

    __tablename__ = "gate_results"
    __table_args__ = (UniqueConstraint("release_id", "gate", name="uq_gate_results_release_gate"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    gate: Mapped[str] = mapped_column(String(64))
    #: pending, running, passed, failed, error, skipped
    status: Mapped[str] = mapped_column(String(16))
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    report: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    #: Kept by :meth:`_set_report`, so reading it never reads the report.
    has_report: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @validates("report")
    def _set_report(self, _key: str, report: dict[str, Any] | None) -> dict[str, Any] | None:
        self.has_report = isinstance(report, dict)
        return report


class Event(Base):
    """One progress event of a release, as the pipeline reported it (the SSE stream replays these)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    ts: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column()


class Job(Base):
    """A unit of work in the durable queue: ``release`` (run the gates) or ``publish`` (after approval)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: queued, running, done, failed
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=2)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class AuditEntry(Base):
    """Who did what to which release and digest, when. Append-only (database triggers refuse changes)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    ts: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    release_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    version: Mapped[str | None] = mapped_column(String(100), default=None)
    digest: Mapped[str | None] = mapped_column(String(100), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiToken(Base):
    """An API token: only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked: Mapped[bool] = mapped_column(default=False)


class Channel(Base):
    """Which release of an adapter name a channel tag (``staging``, ``prod``) points to in the registry."""

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("name", "channel", name="uq_channels_name_channel"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(32))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(100))
    moved_by: Mapped[str] = mapped_column(String(200))
    moved_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
