"""Release reads: one SQL statement per list page, no report or verdict column, pipeline order, filters."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from gate.errors import InputError
from gate.service.db import async_engine, async_sessions, migrate, sqlite_file, sync_engine, sync_session
from gate.service.domain.queries import MAX_ID, ReleaseFilter, list_releases, read_release
from gate.service.models import GateResult, Release
from gate.service.reader import Reader
from gate.service.settings import Settings


def _seed(settings: Settings, n: int) -> None:
    engine = sync_engine(settings)
    try:
        with sync_session(engine) as s:
            for i in range(n):
                r = Release(
                    name="alpha" if i % 2 else "beta",
                    version=f"1.0.{i}",
                    status="published" if i % 3 else "error",
                    contract_name="smollm2-vllm" if i % 4 else "other",
                    contract_path="/c.yaml",
                    contract_sha256="0" * 64,
                    source_kind="upload",
                    run_dir="/runs/x",
                    target=f"oci://r/x:1.0.{i}",
                    submitted_by="token:ci",
                    created_at=dt.datetime(2026, 11, 1 + i % 28, tzinfo=dt.UTC),
                    verdict={"passed": True, "big": "x" * 1000},
                )
                s.add(r)
                s.flush()
                # Written in the reverse of pipeline order: the read must reorder them.
                for gate in ("publish", "eval", "smoke", "check"):
                    report = {"passed": True} if gate != "publish" else None
                    s.add(GateResult(release_id=r.id, gate=gate, status="passed", seconds=1.5, report=report))
    finally:
        engine.dispose()


def _statements(settings: Settings, call: Any) -> tuple[Any, list[str]]:
    """``call(reader, scope)`` as the API runs it, and every SQL statement it sent."""

    async def go() -> tuple[Any, list[str]]:
        engine = async_engine(settings)
        seen: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
        reader = Reader(async_sessions(engine), engine.dialect, sqlite_file(settings))
        if reader.dialect.name == "sqlite":
            # The reads run on the process's read connection, past SQLAlchemy; the read cache's
            # PRAGMA data_version (one per request) is no read of the releases.
            reader._local().set_trace_callback(lambda sql: sql == "PRAGMA data_version" or seen.append(sql))
        scope: dict[str, Any] = {"state": {}}
        try:
            return await call(reader, scope), seen
        finally:
            await reader.close_session(scope)
            reader.close()
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("queries")
    url = f"sqlite:///{root / 'gate.db'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").new_database()
    settings = Settings(data_dir=root, database_url=url)
    migrate(settings)
    _seed(settings, 120)
    return settings


def test_a_list_page_of_100_is_one_statement_without_reports_or_verdicts(seeded: Settings) -> None:
    page, sql = _statements(seeded, lambda r, sc: list_releases(r, sc, ReleaseFilter(), limit=100, offset=0))
    assert len(page) == 100 and len(sql) == 1
    # The key "verdict" is written null; neither column is read.
    assert "releases.verdict" not in sql[0] and "gate_results.report" not in sql[0]
    assert [r.id for r in page] == list(range(120, 20, -1))
    assert all(r.verdict is None for r in page)
    assert [g.gate for g in page[0].gates] == ["check", "smoke", "eval", "publish"]
    assert [g.has_report for g in page[0].gates] == [True, True, True, False]
    # The gates' times come back as aware UTC datetimes on both databases.
    assert all(g.updated_at.tzinfo is dt.UTC for r in page for g in r.gates)


def test_a_status_read_is_one_statement_with_the_verdict_and_gates_in_pipeline_order(
    seeded: Settings,
) -> None:
    r, sql = _statements(seeded, lambda r, sc: read_release(r, sc, 7))
    assert len(sql) == 1 and r.id == 7 and r.verdict is not None and r.verdict["passed"] is True
    assert [g.gate for g in r.gates] == ["check", "smoke", "eval", "publish"]


def test_filters_and_pagination_narrow_the_list(seeded: Settings) -> None:
    flt = ReleaseFilter.parse(status="error", name="alpha", contract="smollm2-vllm", since="2026-11-05")
    page, _ = _statements(seeded, lambda r, sc: list_releases(r, sc, flt, limit=1000, offset=0))
    assert page and all(
        r.status == "error" and r.name == "alpha" and r.contract == "smollm2-vllm" for r in page
    )
    assert all(r.created_at >= dt.datetime(2026, 11, 5, tzinfo=dt.UTC) for r in page)
    second, _ = _statements(seeded, lambda r, sc: list_releases(r, sc, ReleaseFilter(), limit=10, offset=10))
    assert [r.id for r in second] == list(range(110, 100, -1))
    # Past the end (the largest offset the API takes): an empty page, on PostgreSQL too (a 64-bit OFFSET).
    far, _ = _statements(seeded, lambda r, sc: list_releases(r, sc, ReleaseFilter(), limit=10, offset=MAX_ID))
    assert far == []
    with pytest.raises(InputError, match="unknown status 'bogus'"):
        ReleaseFilter.parse(status="published,bogus")
    with pytest.raises(InputError, match="not an ISO date"):
        ReleaseFilter.parse(until="soon")


def test_the_service_extra_brings_greenlet_and_without_it_serve_names_what_to_install(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    extra = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "service"
    ]
    assert any(r.startswith("greenlet") for r in extra), extra
    # An interpreter where the extra's modules cannot be imported (as after installing without the extra).
    code = (
        "import sys, importlib.abc\n"
        "class Missing(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.partition('.')[0] in ('litestar', 'greenlet'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Missing())\n"
        "from gate.cli import main\n"
        "sys.exit(main(['serve']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "gate serve needs the service extra (missing: litestar, greenlet)" in done.stderr
    assert "[service]'" in done.stderr


def test_the_has_report_migration_flags_stored_reports_and_puts_the_report_last(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'gate.db'}")
    migrate(settings, "0002")
    engine = sync_engine(settings)
    try:
        with engine.begin() as c:
            c.exec_driver_sql(
                "INSERT INTO releases (id, name, version, status, contract_name, contract_path,"
                " contract_sha256, approval_required, source_kind, run_dir, target, submitted_by,"
                " created_at, updated_at)"
                " VALUES (1, 'a', '1', 'published', 'c', '/c', 'x', 0, 'upload', '/r', 't', 'me',"
                " '2026-12-01 00:00:00', '2026-12-01 00:00:00')"
            )
            for gate, report in (("check", '{"passed": true}'), ("smoke", "null"), ("eval", None)):
                c.exec_driver_sql(
                    "INSERT INTO gate_results (release_id, gate, status, report, updated_at)"
                    " VALUES (1, ?, 'passed', ?, '2026-12-01 00:00:00')",
                    (gate, report),
                )
        migrate(settings)
        with engine.connect() as c:
            flags = dict(c.exec_driver_sql("SELECT gate, has_report FROM gate_results").all())
            columns = [row[1] for row in c.exec_driver_sql("PRAGMA table_info(gate_results)")]
    finally:
        engine.dispose()
    assert flags == {"check": 1, "smoke": 0, "eval": 0}
    # Past a large report SQLite reaches a column only through the report's overflow pages.
    assert columns[-1] == "report"


def test_a_report_written_later_sets_the_flag_the_reads_show(seeded: Settings) -> None:
    engine = sync_engine(seeded)
    try:
        with sync_session(engine) as s:
            row = GateResult(release_id=1, gate="sign", status="passed")
            s.add(row)
            s.flush()
            assert row.has_report is False
            row.report = {"signed": True}
            assert row.has_report is True
    finally:
        engine.dispose()
    one, _ = _statements(seeded, lambda r, sc: read_release(r, sc, 1))
    assert [(g.gate, g.has_report) for g in one.gates][-2:] == [("sign", True), ("publish", False)]
    page, _ = _statements(seeded, lambda r, sc: list_releases(r, sc, ReleaseFilter(), limit=1, offset=119))
    assert page[0].id == 1 and [g.has_report for g in page[0].gates][-2:] == [True, False]
