"""aiosqlite with reads answered on the event loop and writes on its thread.

aiosqlite runs every call (cursor, execute, each fetch, commit, rollback) on one
thread per connection and hands the result back through the loop: a status read
made about ten such hops, and on two cores each hop cost more than the SQLite
work behind it. In WAL mode a read never waits for a writer's lock (readers see
the last committed snapshot) and reading the few rows a request needs takes
microseconds, so reads run inline. What can wait for the write lock (up to
``busy_timeout``) still goes through the thread, so the loop is never held by
another process's transaction: statements other than SELECT (which begin the
write transaction), ``commit`` and ``rollback`` of an open transaction. (A WAL reader
can still be made to wait in rare cases, such as rebuilding the WAL index after a
crash; that wait is bounded by ``busy_timeout`` like any other.)
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite

__all__ = ["inline_reads_connector"]


def _may_wait(conn: sqlite3.Connection, fn: Any, args: tuple[Any, ...]) -> bool:
    """Whether ``fn(*args)`` can block on a lock held by another connection."""
    owner, name = getattr(fn, "__self__", None), getattr(fn, "__name__", "")
    if name in ("execute", "executemany") and isinstance(owner, sqlite3.Cursor | sqlite3.Connection):
        return not (args and isinstance(args[0], str) and args[0].lstrip()[:6].upper() == "SELECT")
    if isinstance(owner, sqlite3.Cursor):
        return name not in ("fetchone", "fetchmany", "fetchall", "close")
    if isinstance(owner, sqlite3.Connection):
        if name == "cursor":
            return False
        if name in ("commit", "rollback"):
            return conn.in_transaction
    # Anything else, closing the connection included (it may checkpoint the WAL), runs on the thread.
    return True


class _InlineReads(aiosqlite.Connection):
    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        conn = self._connection
        if conn is not None and self._running and not _may_wait(conn, fn, args):
            return fn(*args, **kwargs)
        return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]


def inline_reads_connector(path: str) -> Callable[[], Awaitable[Any]]:
    """``async_creator`` for ``create_async_engine``: connections to the SQLite file at ``path``."""

    async def connect() -> Any:
        # The connection is made on aiosqlite's thread and used from the loop's too.
        conn = _InlineReads(functools.partial(sqlite3.connect, path, check_same_thread=False), 64)
        conn._thread.daemon = True
        return await conn

    return connect
