"""Load on the real ``gate serve``: status reads by 50 concurrent clients, SQLite vs PostgreSQL.

For each database the real server (uvicorn subprocess, no workers) is started on
loopback and seeded with releases; then 50 concurrent HTTP clients (one
keep-alive connection each) read release status (``GET /api/releases/{id}``,
authenticated, with per-gate rows) for a fixed number of requests. The baseline,
measured in the same run against the same server, is ``GET /health`` (no auth,
a ``SELECT 1``): the ratio says what auth + the status query cost on top of the
HTTP stack.

    python bench/bench_service.py [--clients 50] [--requests 4000] [--seed 200]

Writes bench/results/service.json and prints a summary. Loopback only; the total
number of requests is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from gate.console import atomic_write_json  # noqa: E402
from gate.service.settings import Settings  # noqa: E402
from tests.fixtures.service import ServiceProcess, free_port, running_postgres, write_run_dir  # noqa: E402


async def _load(
    url: str, paths: list[str], headers: dict[str, str], clients: int, total: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def client(i: int) -> None:
        nonlocal errors
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as c:
            for n in counter:
                t0 = time.perf_counter()
                r = await c.get(paths[(n + i) % len(paths)])
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(wall, 3),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2),
    }


def _bench_one(label: str, database_url: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    runs = work / f"runs-{label}"
    run = write_run_dir(runs)
    settings = Settings(
        data_dir=work / f"data-{label}",
        database_url=database_url,
        port=free_port(),
        workers=0,
        allowed_roots=(runs,),
        log_level="warning",
    )
    svc = ServiceProcess(
        settings=settings, env={**os.environ, **settings.to_env()}, log=work / f"{label}.log"
    )
    svc.start()
    try:
        ids = []
        with svc.client("submit") as c:
            for i in range(args.seed):
                r = c.post("/api/releases", json={"name": "bench", "version": f"1.0.{i}", "run": str(run)})
                r.raise_for_status()
                ids.append(r.json()["id"])
        token = svc.token("read")
        headers = {"Authorization": f"Bearer {token}"}
        # Warm up connections, caches and the interpreter's code paths.
        asyncio.run(_load(svc.url, ["/health"], {}, args.clients, args.clients * 4))
        asyncio.run(
            _load(svc.url, [f"/api/releases/{i}" for i in ids], headers, args.clients, args.clients * 4)
        )
        baseline = asyncio.run(_load(svc.url, ["/health"], {}, args.clients, args.requests))
        status = asyncio.run(
            _load(svc.url, [f"/api/releases/{i}" for i in ids], headers, args.clients, args.requests)
        )
    finally:
        svc.stop()
    return {
        "database": label,
        "health_baseline": baseline,
        "status_reads": status,
        "rps_ratio_vs_health": round(status["rps"] / baseline["rps"], 3),
        "p99_ratio_vs_health": round(status["p99_ms"] / baseline["p99_ms"], 3),
    }


def main() -> int:
    """Run the benchmark and write bench/results/service.json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--requests", type=int, default=4000, help="requests per measurement (bounded)")
    p.add_argument("--seed", type=int, default=200, help="releases in the database")
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="gate-bench-service-") as tmp:
        work = Path(tmp)
        results.append(_bench_one("sqlite", f"sqlite:///{work / 'gate.db'}", work, args))
        with running_postgres() as pg:
            results.append(_bench_one("postgresql", pg.new_database(), work, args))
    out = {
        "benchmark": "service_status_reads",
        "clients": args.clients,
        "requests": args.requests,
        "seeded_releases": args.seed,
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "results": results,
    }
    atomic_write_json(ROOT / "bench" / "results" / "service.json", out)
    print(f"status reads, {args.clients} concurrent clients, {args.requests} requests each run:")
    for r in results:
        s, b = r["status_reads"], r["health_baseline"]
        print(
            f"  {r['database']:<10} GET /api/releases/ID {s['rps']:>8.1f} req/s  p50 {s['p50_ms']:>7.2f} ms  "
            f"p99 {s['p99_ms']:>7.2f} ms  errors {s['errors']}   | /health {b['rps']:>8.1f} req/s  "
            f"p99 {b['p99_ms']:>7.2f} ms   ratio rps {r['rps_ratio_vs_health']:.2f}  "
            f"p99 {r['p99_ratio_vs_health']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
