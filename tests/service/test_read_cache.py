"""The SQLite read cache never serves what another connection changed: the real server, two HTTP processes.

The status reads, list pages and token lookups of ``gate serve`` on SQLite are
kept per process until ``PRAGMA data_version`` says another connection committed
(``gate/service/read_cache.py``). Here the writes come from this test process on
its own sqlite3 connection to the server's database file, as a queue worker's
would; each read goes on a new connection, so both HTTP processes answer some.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gate.service.db import sqlite_file
from gate.service.read_cache import ReadCache
from tests.fixtures.service import ServiceFactory, ServiceProcess
from tests.fixtures.service_seed import SeedRelease, seed_releases

# Enough new connections that both processes answer some of them.
_READS = 8


@dataclass
class Cached:
    svc: ServiceProcess
    db: Path
    #: id -> (name, status, created on day) of the seeded releases.
    rows: dict[int, tuple[str, str, int]]
    # No connection kept alive: a new one per request, so the two processes take turns accepting.
    http: httpx.Client = field(
        default_factory=lambda: httpx.Client(timeout=60, limits=httpx.Limits(max_keepalive_connections=0))
    )

    def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        return self.http.get(self.svc.url + path, params=params, headers={"Authorization": f"Bearer {token}"})

    def reads(self, path: str, token: str, **params: Any) -> list[httpx.Response]:
        return [self.get(path, token, **params) for _ in range(_READS)]

    def write(self, sql: str, *args: Any) -> None:
        """Commit ``sql`` on a connection of this process (not the server's)."""
        with sqlite3.connect(self.db, timeout=30) as conn:
            conn.execute(sql, args)


@pytest.fixture(scope="module")
def cached(module_services: ServiceFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cached]:
    root = tmp_path_factory.mktemp("read-cache")
    svc = module_services(database_url=f"sqlite:///{root / 'gate.db'}", processes=2)
    statuses = ("published", "failed", "error")
    specs = [
        SeedRelease(
            name="alpha" if i % 2 else "beta",
            version=f"1.0.{i}",
            status=statuses[i % 3],
            error="vLLM died" if i % 3 == 2 else None,
            last_gate_status={"published": "passed", "failed": "failed", "error": "error"}[statuses[i % 3]],
            created_at=dt.datetime(2026, 11, 1 + i, tzinfo=dt.UTC),
        )
        for i in range(24)
    ]
    ids = seed_releases(svc.settings, specs, run_dir=root)
    rows = {rid: (s.name, s.status, 1 + i) for i, (rid, s) in enumerate(zip(ids, specs, strict=True))}
    db = sqlite_file(svc.settings)
    assert db is not None
    state = Cached(svc.start(), Path(db), rows)
    yield state
    state.http.close()


def test_a_release_another_process_updates_is_served_fresh_on_the_next_request(cached: Cached) -> None:
    token = cached.svc.token("read")
    rid = next(i for i, (_, status, _) in cached.rows.items() if status == "published")
    name, _, _ = cached.rows[rid]
    version = cached.get(f"/api/releases/{rid}", token).json()["version"]
    for path in (f"/api/releases/{rid}", f"/api/releases/by-version/{name}/{version}"):
        assert {r.json()["status"] for r in cached.reads(path, token)} == {"published"}
    assert all(r.json()[0]["id"] == max(cached.rows) for r in cached.reads("/api/releases", token, limit=100))

    cached.write("UPDATE releases SET status = 'failed', error = 'revoked by ops' WHERE id = ?", rid)
    cached.rows[rid] = (name, "failed", cached.rows[rid][2])
    for path in (f"/api/releases/{rid}", f"/api/releases/by-version/{name}/{version}"):
        answers = [r.json() for r in cached.reads(path, token)]
        assert {(a["status"], a["error"]) for a in answers} == {("failed", "revoked by ops")}
    for r in cached.reads("/api/releases", token, limit=100):
        (mine,) = (x for x in r.json() if x["id"] == rid)
        assert mine["status"] == "failed"

    # A gate row written by another connection (as a worker writes one) shows in the same way.
    cached.write("UPDATE gate_results SET seconds = 4242.5 WHERE release_id = ? AND gate = 'check'", rid)
    for r in cached.reads(f"/api/releases/{rid}", token):
        assert [g["seconds"] for g in r.json()["gates"] if g["gate"] == "check"] == [4242.5]


def test_a_token_revoked_by_another_process_is_refused_on_the_next_request(cached: Cached) -> None:
    token = cached.svc.token("approve")  # the only token with that role
    assert {r.status_code for r in cached.reads("/api/releases", token, limit=1)} == {200}
    cached.write("UPDATE api_tokens SET revoked = 1 WHERE role = 'approve'")
    refused = cached.reads("/api/releases", token, limit=1)
    assert {r.status_code for r in refused} == {401}
    assert all("was revoked" in r.json()["detail"] for r in refused)


def test_a_cached_token_is_refused_once_it_expires(cached: Cached) -> None:
    with cached.svc.client("admin") as admin:
        made = time.monotonic()
        token = admin.post("/api/tokens", json={"name": "brief", "role": "read", "expires_in_s": 2}).json()
    assert {r.status_code for r in cached.reads("/api/releases", token["token"], limit=1)} == {200}
    assert time.monotonic() - made < 2, "the reads took longer than the token lives"
    # Nothing is committed meanwhile: the cached lookup is still checked against the clock.
    time.sleep(2.2 - (time.monotonic() - made))
    refused = cached.reads("/api/releases", token["token"], limit=1)
    assert {r.status_code for r in refused} == {401}
    assert all("expired" in r.json()["detail"] for r in refused)


def test_each_caller_gets_its_own_role_not_the_one_cached_before_it(cached: Cached) -> None:
    reader, admin = cached.svc.token("read"), cached.svc.token("admin")
    for _ in range(3):
        assert {r.status_code for r in cached.reads("/api/tokens", admin)} == {200}
        refused = cached.reads("/api/tokens", reader)
        assert {r.status_code for r in refused} == {403}
        assert all(r.json()["detail"].startswith("token:read-") for r in refused)
        assert all("has role 'read'; this needs role 'admin'" in r.json()["detail"] for r in refused)


def _expected(rows: dict[int, tuple[str, str, int]], **flt: Any) -> list[int]:
    keep = [
        rid
        for rid, (name, status, day) in rows.items()
        if (not flt.get("status") or status in flt["status"].split(","))
        and (not flt.get("name") or name == flt["name"])
        and (not flt.get("since") or day >= int(flt["since"][-2:]))
    ]
    ids = sorted(keep, reverse=True)
    offset = int(flt.get("offset", 0))
    return ids[offset : offset + int(flt.get("limit", 100))]


_FILTERS = (
    {},
    {"status": "published"},
    {"status": "failed,error"},
    {"name": "alpha"},
    {"name": "beta", "status": "error"},
    {"since": "2026-11-15"},
    {"limit": "5", "offset": "3"},
    {"status": "published", "limit": "2", "offset": "1"},
)


def test_list_filters_and_pages_stay_exact_through_the_cache_and_after_a_write(cached: Cached) -> None:
    token = cached.svc.token("read")
    for _ in range(2):  # the second round is served from the cache
        for flt in _FILTERS:
            for r in cached.reads("/api/releases", token, **flt):
                assert [x["id"] for x in r.json()] == _expected(cached.rows, **flt), flt
    beta = next(i for i, (n, s, _) in cached.rows.items() if n == "beta" and s == "published")
    cached.write("UPDATE releases SET status = 'error' WHERE id = ?", beta)
    cached.rows[beta] = ("beta", "error", cached.rows[beta][2])
    for flt in _FILTERS:
        for r in cached.reads("/api/releases", token, **flt):
            assert [x["id"] for x in r.json()] == _expected(cached.rows, **flt), flt


def test_an_action_answers_with_the_state_it_just_wrote(cached: Cached) -> None:
    """The retry's own session commits, then the answer is read: it must not come from the cache."""
    token = cached.svc.token("submit")
    rid = next(i for i, (_, s, _) in cached.rows.items() if s == "error")
    assert {r.json()["status"] for r in cached.reads(f"/api/releases/{rid}", token)} == {"error"}
    with cached.svc.client("submit") as c:
        answer = c.post(f"/api/releases/{rid}/retry")
        assert answer.status_code == 200 and answer.json()["status"] == "queued"
    name, _, day = cached.rows[rid]
    cached.rows[rid] = (name, "queued", day)
    assert {r.json()["status"] for r in cached.reads(f"/api/releases/{rid}", token)} == {"queued"}


def test_the_cache_is_bounded_and_keeps_nothing_empty_or_read_before_a_drop() -> None:
    cache = ReadCache(max_entries=3, max_bytes=10_000)
    cache.validate(1)
    gen = cache.generation
    for i in range(5):
        cache.put(("k", i), (("x" * 10,),), gen)
    # The oldest go first.
    assert len(cache) == 3 and cache.get(("k", 0)) is None and cache.get(("k", 4)) == (("x" * 10,),)
    cache.put(("big",), (("y" * 2000,),), gen)
    cache.put(("big2",), (("y" * 2000,),), gen)
    assert cache.get(("big",)) and cache.get(("big2",))
    cache.put(("huge",), (("z" * 9000,),), gen)  # over a quarter of the bytes: never kept
    assert cache.get(("huge",)) is None
    cache.put(("empty",), (), gen)
    assert cache.get(("empty",)) is None
    cache.validate(1)  # the same data_version: nothing dropped
    assert cache.get(("big",))
    cache.validate(2)  # another connection committed: everything dropped
    assert len(cache) == 0
    cache.put(("stale",), (("read before the drop",),), gen)
    assert cache.get(("stale",)) is None
    # Many entries by bytes: the total stays under the bound.
    cache = ReadCache(max_entries=100, max_bytes=5_000)
    cache.validate(7)
    for i in range(20):
        cache.put(i, (("w" * 1000,),), cache.generation)
    assert 0 < len(cache) <= 5
