"""The hot reads run as prebuilt SQL on the driver, on SQLite on a read connection of the process.

Profiled, the reads the API serves most (``/health``, the token lookup, a status
read, a list page) spent more CPU in SQLAlchemy than in the whole HTTP stack: a
session, a pool checkout and its reset, greenlet switches through the async
adapter and result processing cost about 0.13 ms even for ``SELECT 1``, where the
SQLite call behind it costs a microsecond. Each of those reads is one statement,
compiled once per dialect (:class:`Prepared`), whose result is a few columns or
one JSON text the database builds, so none of that machinery is needed:

* On SQLite they run on one connection of the process, from the event loop, in
  autocommit mode and ``query_only``: every statement reads the last committed
  snapshot, so a revoked token or a new status shows on the very next request. In
  WAL mode a reader never waits for a writer (see :mod:`gate.service.sqlite_inline`).
* A request whose session already holds a transaction (it wrote, or read through
  the ORM) reads on that session's connection instead, so it sees its own writes.
* On PostgreSQL they run on the request session's connection with
  ``exec_driver_sql`` (no compilation, no ORM), one checkout per request as before.
* On SQLite, the results of statements built with ``cached=True`` (a status read,
  a list page, a token lookup; not ``/health``'s ping) are kept in a
  :class:`ReadCache` that is dropped whenever another connection commits (``PRAGMA
  data_version``, checked once per request, and again at every read of a request
  that opened a session, since that session may have committed in between).
  PostgreSQL has no per-connection commit counter as cheap as that, so it stays uncached.

The request's ORM session is opened lazily (:meth:`Reader.session`), so a request
served by these reads alone never opens one.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import ClauseElement

from gate.service.read_cache import ReadCache

__all__ = ["Prepared", "Reader", "as_utc", "bind_time"]

_SESSION = "gate.db"
# Set in a request's scope state once it checked PRAGMA data_version.
_CHECKED = "gate.data_version"
# SQL text with :name parameters, which sqlite3 takes with a dict of them.
_SQLITE_NAMED = sqlite.dialect(paramstyle="named")


class Prepared:
    """One statement, built by ``build(dialect_name)`` and compiled once per dialect.

    ``cached``: its results may be served from the SQLite read cache (its result
    must depend on nothing but the parameters and the database's content).
    """

    def __init__(self, build: Callable[[str], ClauseElement], *, cached: bool = False) -> None:
        self._build = build
        self._sql: dict[str, str] = {}
        self.cached = cached

    def sql(self, dialect: Dialect) -> str:
        """The statement's SQL for ``dialect`` (SQLite: ``:name`` parameters)."""
        text = self._sql.get(dialect.name)
        if text is None:
            target = _SQLITE_NAMED if dialect.name == "sqlite" else dialect
            text = self._sql[dialect.name] = str(self._build(dialect.name).compile(dialect=target))
        return text


def bind_time(dialect: str, value: dt.datetime) -> Any:
    """A datetime as a parameter: SQLite compares the text SQLAlchemy stores (UTC, microseconds)."""
    utc = (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else utc


def as_utc(value: Any) -> dt.datetime | None:
    """A selected timestamp (SQLite's text, or PostgreSQL's datetime) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Reader:
    """Runs :class:`Prepared` reads for a request (see the module docstring for where)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], dialect: Dialect, sqlite_path: str | None
    ) -> None:
        self._sessions = sessions
        self.dialect = dialect
        self._path = sqlite_path
        self._conn: sqlite3.Connection | None = None
        # Reads are synchronous calls from the loop; the lock only matters to apps driven from threads.
        self._lock = threading.Lock()
        self.cache = ReadCache()

    def session(self, scope: Any) -> AsyncSession:
        """The request's ORM session, opened on first use (closed by :meth:`close_session`)."""
        state = scope.setdefault("state", {})
        s: AsyncSession | None = state.get(_SESSION)
        if s is None:
            s = state[_SESSION] = self._sessions()
        return s

    @staticmethod
    async def close_session(scope: Any) -> None:
        """Close the request's session if it was opened."""
        s: AsyncSession | None = scope.get("state", {}).pop(_SESSION, None)
        if s is not None:
            await s.close()

    async def rows(self, scope: Any, stmt: Prepared, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of ``stmt`` with ``params``, for the request of ``scope`` (an ASGI scope)."""
        state = scope.setdefault("state", {})
        s: AsyncSession | None = state.get(_SESSION)
        if self._path is not None and (s is None or not s.in_transaction()):
            with self._lock:
                conn = self._local()
                if not stmt.cached:
                    return conn.execute(stmt.sql(self.dialect), params).fetchall()
                # Once per request, unless the request opened a session (whose commit the cache must see).
                if s is not None or _CHECKED not in state:
                    self.cache.validate(conn.execute("PRAGMA data_version").fetchone()[0])
                    state[_CHECKED] = True
                key: Hashable = (stmt, *sorted(params.items()))
                rows = self.cache.get(key)
                if rows is None:
                    generation = self.cache.generation
                    rows = tuple(conn.execute(stmt.sql(self.dialect), params).fetchall())
                    self.cache.put(key, rows, generation)
                return list(rows)
        on = await self.session(scope).connection()
        result = await on.exec_driver_sql(stmt.sql(self.dialect), dict(params))
        return [tuple(r) for r in result.all()]

    def _local(self) -> sqlite3.Connection:
        if self._conn is None:
            assert self._path is not None
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA query_only=ON")
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Close the process's read connection (at shutdown)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
