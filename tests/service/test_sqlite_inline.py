"""SQLite reads run on the event loop; a write waiting for another connection's lock does not hold it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select, text

from gate.service.db import async_engine, migrate
from gate.service.models import ApiToken
from gate.service.settings import Settings


def test_a_write_waiting_for_the_lock_leaves_the_loop_free_while_reads_answer_inline(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'gate.db'}")
    migrate(settings)
    # Another process's write transaction, as a worker recording a gate holds it.
    blocker = sqlite3.connect(tmp_path / "gate.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    async def go() -> tuple[int, bool, int, int]:
        engine = async_engine(settings)
        loop_thread = threading.get_ident()

        def on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Called by SQLite on whichever thread runs the statement.
            dbapi_conn.create_function("thread_ident", 0, threading.get_ident)

        event.listen(engine.sync_engine, "connect", on_connect)

        async def write() -> None:
            async with engine.begin() as c:
                await c.execute(insert(ApiToken).values(name="t", role="read", token_sha256="0" * 64))

        try:
            task = asyncio.create_task(write())
            ticks, start = 0, time.monotonic()
            while time.monotonic() - start < 1.0:
                await asyncio.sleep(0.01)
                ticks += 1
            assert not task.done(), "the write should be waiting for the lock"
            async with engine.connect() as c:
                reader = (await c.execute(text("SELECT thread_ident()"))).scalar_one()
                before = (await c.execute(select(func.count()).select_from(ApiToken))).scalar_one()
            blocker.execute("COMMIT")
            await asyncio.wait_for(task, 30)
            async with engine.connect() as c:
                after = (await c.execute(select(func.count()).select_from(ApiToken))).scalar_one()
            return ticks, reader == loop_thread, before, after
        finally:
            await engine.dispose()

    try:
        ticks, inline, before, after = asyncio.run(go())
    finally:
        blocker.close()
    # The loop ticked about every 10 ms for the second the write waited (not stalled by it).
    assert ticks >= 50
    assert inline
    # Nothing was visible before the lock was released; the write landed after.
    assert (before, after) == (0, 1)
