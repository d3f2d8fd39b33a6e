"""Database engines and schema migrations.

The API server uses an async engine (aiosqlite / psycopg 3); workers and
migrations use a sync engine on the same database. SQLite runs in WAL mode with
a busy timeout so the server and its worker processes can share one file.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from gate.errors import InputError
from gate.service.settings import Settings
from gate.service.sqlite_inline import inline_reads_connector

__all__ = ["async_engine", "async_sessions", "migrate", "sqlite_file", "sync_engine", "sync_session"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_migrate_lock = threading.Lock()


def _urls(url: str) -> tuple[str, str]:
    """(sync URL, async URL) for one database URL."""
    try:
        u = make_url(url)
    except Exception as e:
        raise InputError(f"bad database URL {url!r}: {e}") from e
    backend = u.get_backend_name()
    if backend == "sqlite":
        return (
            u.set(drivername="sqlite").render_as_string(hide_password=False),
            u.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False),
        )
    if backend == "postgresql":
        s = u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return s, s
    raise InputError(
        f"unsupported database {backend!r} in {url!r}", hint="use sqlite:///PATH or postgresql://..."
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def sqlite_file(settings: Settings) -> str | None:
    """The path of the service's SQLite file (None for PostgreSQL or an in-memory database)."""
    u = make_url(_urls(settings.db_url)[0])
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        return u.database
    return None


def _prepare_sqlite_dir(url: str) -> None:
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)


def sync_engine(settings: Settings) -> Engine:
    """A sync engine on the service database (workers, migrations, CLI)."""
    url, _ = _urls(settings.db_url)
    _prepare_sqlite_dir(url)
    # A pre-ping is a round trip per checkout; a SQLite file never drops a connection.
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def async_engine(settings: Settings) -> AsyncEngine:
    """An async engine on the service database (the API server)."""
    _, url = _urls(settings.db_url)
    _prepare_sqlite_dir(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            kwargs["async_creator"] = inline_reads_connector(database)
    else:
        kwargs.update(pool_pre_ping=True, pool_size=20, max_overflow=20)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def async_sessions(engine: AsyncEngine) -> async_sessionmaker[Any]:
    """Session factory for the API server."""
    return async_sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def sync_session(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def migrate(settings: Settings, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` with the packaged Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    engine = sync_engine(settings)
    with _migrate_lock:
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Two servers starting at once must not both create the tables.
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(74117007)")
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        finally:
            engine.dispose()
