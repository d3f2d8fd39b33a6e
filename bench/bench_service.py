"""Load on the real ``gate serve`` with wrk: ``/health``, a status read, the list of 100; SQLite, PostgreSQL.

For each database and each number of HTTP processes, the real server
(``python -m gate serve``, no queue workers) is started on loopback over a
database holding 100 published releases with their gate reports and verdicts
(the rows a release leaves, written directly; the verdict and reports are those of a
real release, captured once: see ``tests/fixtures/service_seed.py``). wrk
then drives, with 50 connections each for the same duration:

* ``GET /health`` (no auth, ``SELECT 1``): the baseline of the HTTP stack;
* ``GET /api/releases/{id}``, the id going over all 100 in turn (``bench/status_rotation.lua``):
  auth + release + gates + verdict;
* ``GET /api/releases?limit=100``: auth + the list page of 100 with their gates;
* on SQLite, the status read and the list again while another connection commits
  ``--writes-per-s`` times a second (each commit drops the servers' read cache).

They run in turn, ``--rounds`` times on the same server; each figure is reported
as a ratio to the ``/health`` of its own round (seconds apart: the other load on
a shared machine drifts), and the median round's run is the one reported, with
every round's requests/s and ratio beside it.

    python bench/bench_service.py [--seconds 5] [--rounds 3] [--connections 50] [--processes 1,2]

Needs the service extra, wrk (Debian package ``wrk``) and, for PostgreSQL, the
server binaries (``pg_config --bindir``). Writes bench/results/service.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gate.console import atomic_write_json  # noqa: E402
from gate.service.auth import issue_token  # noqa: E402
from gate.service.db import sync_engine, sync_session  # noqa: E402
from gate.service.settings import Settings  # noqa: E402
from tests.fixtures.service_seed import (  # noqa: E402
    SeedRelease,
    free_port,
    running_postgres,
    seed_releases,
    seed_reports,
)

_STATUS_LUA = ROOT / "bench" / "status_rotation.lua"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"cannot read the latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    threads: int,
    token: str | None,
    script: Path | None = None,
    script_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One wrk run: requests/s, latency percentiles, errors (any non-2xx answer fails the run)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    row = {
        "rps": round(rps, 1),
        "p50_ms": round(pct["50"], 2),
        "p90_ms": round(pct["90"], 2),
        "p99_ms": round(pct["99"], 2),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }
    if row["non_2xx"]:
        raise RuntimeError(f"{url}: {row['non_2xx']} answers were not 2xx:\n{out}")
    return row


@contextlib.contextmanager
def server(settings: Settings, processes: int, log: Path) -> Iterator[str]:
    """``gate serve`` with ``processes`` HTTP processes and no queue workers; yields its URL."""
    env = {**os.environ, **settings.to_env(), "GATE_SERVICE_PROCESSES": str(processes)}
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gate", "serve"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{settings.port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gate serve exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gate serve did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def committing(settings: Settings, per_s: float) -> Iterator[dict[str, int]]:
    """Another connection committing ``per_s`` times a second (a queue worker's heartbeat, faster).

    On SQLite every commit drops the read cache of each server process (``gate/service/read_cache.py``),
    so the reads measured meanwhile pay for building their results again after each one.
    """
    count = {"commits": 0}
    stop = threading.Event()
    engine = sync_engine(settings)

    def run() -> None:
        with engine.connect() as conn:
            while not stop.wait(1.0 / per_s):
                conn.execute(
                    text("UPDATE jobs SET heartbeat_at = :now WHERE id = 1"), {"now": dt.datetime.now()}
                )
                conn.commit()
                count["commits"] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield count
    finally:
        stop.set()
        thread.join()
        engine.dispose()


def _prepare(settings: Settings, work: Path, n: int) -> str:
    run = work / "run"
    run.mkdir(parents=True, exist_ok=True)
    ids = seed_releases(
        settings,
        [SeedRelease(name=f"adapter-{i % 10}", version=f"1.0.{i}") for i in range(n)],
        run_dir=run,
    )
    # bench/status_rotation.lua reads ids 1..n.
    if ids != list(range(1, n + 1)):
        raise RuntimeError(f"the seeded releases have ids {ids[:3]}..., not 1..{n}")
    engine = sync_engine(settings)
    try:
        with sync_session(engine) as s:
            return issue_token(s, "bench", "read")
    finally:
        engine.dispose()


def _summary(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per endpoint: the run of its median round (by the ratio to that round's /health), and every round's."""
    health = rounds["health"]
    out: dict[str, Any] = {}
    for key, runs in rounds.items():
        ratios = [round(r["rps"] / h["rps"], 3) for r, h in zip(runs, health, strict=True)]
        median = sorted(range(len(runs)), key=lambda i: (ratios[i], i))[len(runs) // 2]
        row = dict(runs[median])
        if key != "health":
            row["ratio_to_health"] = ratios[median]
            row["ratios"] = ratios
        row["rounds_rps"] = [r["rps"] for r in runs]
        row["p99_ms_worst"] = max(r["p99_ms"] for r in runs)
        out[key] = row
    # /health's row: the round whose status read is reported, so both figures come from the same round.
    if "status_read" in rounds:
        ratios = out["status_read"]["ratios"]
        chosen = sorted(range(len(ratios)), key=lambda i: (ratios[i], i))[len(ratios) // 2]
        out["health"] = {
            **dict(health[chosen]),
            **{k: out["health"][k] for k in ("rounds_rps", "p99_ms_worst")},
        }
    return out


def bench_database(label: str, url: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every endpoint at every process count on one database."""
    settings = Settings(
        data_dir=work / label, database_url=url, port=free_port(), workers=0, log_level="warning"
    )
    token = _prepare(settings, work / label, args.releases)
    results: dict[str, Any] = {}
    rotation = (str(args.releases),)  # every one of the releases in turn (ids 1..N, checked by _prepare)
    runs: list[tuple[str, str, Path | None]] = [
        ("health", "/health", None),
        ("status_read", "/api/releases", _STATUS_LUA),
        ("list_100", "/api/releases?limit=100", None),
    ]
    if args.writes_per_s and label == "sqlite":
        runs += [
            ("status_read_writing", "/api/releases", _STATUS_LUA),
            ("list_100_writing", "/api/releases?limit=100", None),
        ]
    for processes in args.processes:
        rounds: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in runs}
        with server(settings, processes, work / f"{label}-{processes}.log") as base:
            common = {"seconds": args.seconds, "connections": args.connections, "threads": args.threads}
            wrk(f"{base}/health", token=None, **{**common, "seconds": 2})  # warm-up
            # Rounds of every endpoint in turn: the other helpers' load on the shared machine drifts within
            # minutes, so each ratio compares runs seconds apart, and the median round is reported.
            for _ in range(args.rounds):
                for key, path, script in runs:
                    args_ = {"script": script, "script_args": rotation if script else ()}
                    token_ = None if key == "health" else token
                    if key.endswith("_writing"):
                        with committing(settings, args.writes_per_s) as count:
                            row = wrk(base + path, token=token_, **args_, **common)
                        row["commits"] = count["commits"]
                    else:
                        row = wrk(base + path, token=token_, **args_, **common)
                    rounds[key].append(row)
        results[f"processes={processes}"] = rows = _summary(rounds)
        print(
            f"{label:10} processes={processes}: /health {rows['health']['rps']:.0f} req/s "
            f"(p99 {rows['health']['p99_ms']:.1f} ms)",
            flush=True,
        )
        for key in rounds:
            if key != "health":
                r = rows[key]
                print(
                    f"{'':10} {key}: {r['rps']:.0f} req/s = {r['ratio_to_health']:.2f}x (rounds "
                    f"{', '.join(f'{x:.2f}' for x in r['ratios'])}; p99 {r['p99_ms']:.1f} ms, worst "
                    f"{r['p99_ms_worst']:.1f} ms)",
                    flush=True,
                )
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=50)
    # One wrk thread drives thousands of requests/s; on 2 cores a second one competes with the server.
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--releases", type=int, default=100)
    p.add_argument("--processes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    p.add_argument("--databases", default="sqlite,postgresql")
    # SQLite: the status read and the list again while another connection commits this often (0: not).
    p.add_argument("--writes-per-s", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "service.json")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print("bench_service: wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "command": " ".join(["python", "bench/bench_service.py", *sys.argv[1:]]),
        "reports": seed_reports()["source"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        # What uvicorn picks when they are installed (the service extra brings both).
        "http_parser": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "event_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "connections": args.connections,
        "wrk_threads": args.threads,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "releases": args.releases,
        "writes_per_s": args.writes_per_s,
        "results": {},
    }
    with tempfile.TemporaryDirectory(prefix="gate-bench-service-") as tmp:
        work = Path(tmp)
        dbs = args.databases.split(",")
        if "sqlite" in dbs:
            url = f"sqlite:///{work / 'sqlite' / 'gate.db'}"
            report["results"]["sqlite"] = bench_database("sqlite", url, work, args)
        if "postgresql" in dbs:
            with running_postgres() as pg:
                report["results"]["postgresql"] = bench_database("postgresql", pg.new_database(), work, args)
    report["machine"]["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
