"""Gate throughput on one warm pool: time to verdict and adapters gated per GPU-hour (H200 or CPU).

Everything goes through the release pipeline (``run_release``: check, smoke, eval,
sign, publish to an OCI layout) with the process's warm pools installed, as a
``gate serve`` worker runs it:

* ``time_to_verdict_s``: N distinct candidates released one after another on the
  warm pool (the boot is paid before the first timed release, by a warm-up
  release); the median and the spread of the wall time of each release, from
  request to published.
* ``adapters_per_gpu_hour``: a stream of M distinct candidates released
  concurrently (``--concurrency`` threads; the pool lets at most
  ``serving.max_loras`` of them hold a smoke slot at once); ``M / wall * 3600``,
  every candidate's verdict, and the same figure with the pool's boot counted in.

Candidates are copies of one trained run (``--run``) with one weight's lowest bits
changed, so each has its own digest and is hot-loaded under its own name.

    python bench/gpu/throughput_h200.py --run RUN_DIR --contract C --base DIR \\
        [--verdicts 10] [--stream 50] [--concurrency 4] [--out bench/gpu/throughput-h200.json]

``bench/gpu/h200_session.py`` calls :func:`measure` on the pool its pilot warmed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gate.console import atomic_write_json  # noqa: E402


def candidate(run: Path, out: Path, index: int) -> Path:
    """A copy of ``run`` with one weight changed in its lowest bits (its own digest); run.json matches."""
    from gate.safetensors_io import read_header

    shutil.copytree(run, out, symlinks=False, ignore=shutil.ignore_patterns("gates"))
    weights = out / "adapter" / "adapter_model.safetensors"
    header = read_header(weights)
    name = sorted(n for n in header.tensors if "lora_B" in n)[0]
    info = header.tensors[name]
    data = bytearray(weights.read_bytes())
    # The low byte of the first element (little-endian): a different adapter, the same behaviour.
    start = header.data_start + info.data_offsets[0]
    data[start] ^= 1 + (index % 250)
    weights.write_bytes(bytes(data))
    record = json.loads((out / "run.json").read_text())
    record["adapter"]["files"]["adapter_model.safetensors"] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    (out / "run.json").write_text(json.dumps(record, indent=2))
    return out


def release(run: Path, contract: Path, base: Path, work: Path, key: Path, tag: str) -> dict[str, Any]:
    """One release of ``run`` to an OCI layout under ``work``: its verdict, per-gate seconds, wall time."""
    from gate.pipeline import ReleaseRequest, run_release
    from gate.signing import SigningConfig

    started = time.monotonic()
    request = ReleaseRequest(
        run_dir=run,
        contract_path=contract,
        target=f"oci-layout://{work / 'layout'}:{tag}",
        signing=SigningConfig(method="key", private_key=key),
        out_dir=work / "bundles" / tag,
        base_dir=base,
        work_dir=work / "work" / tag,
    )
    try:
        result = run_release(request)
    except Exception as e:  # a release that raises has no verdict: the stream counts it as such
        return {
            "tag": tag,
            "released": False,
            "verdict": None,
            "stopped_at": None,
            "reason": f"{type(e).__name__}: {e}"[:500],
            "gates": {},
            "seconds": round(time.monotonic() - started, 3),
        }
    return {
        "tag": tag,
        "released": result.passed,
        "verdict": "passed" if result.verdict.passed else "failed",
        "stopped_at": result.stopped_at,
        "reason": result.reason,
        "gates": {g.name: g.seconds for g in result.verdict.gates},
        "seconds": round(time.monotonic() - started, 3),
    }


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
    }


def measure(
    run: Path,
    contract: Path,
    base: Path,
    work: Path,
    *,
    verdicts: int,
    stream: int,
    concurrency: int,
    boot_seconds: float | None = None,
    progress: Any = print,
) -> dict[str, Any]:
    """Time to verdict (``verdicts`` sequential releases) and a concurrent stream of ``stream`` candidates.

    The caller installs the warm pools (:func:`gate.gates.install_pools`). A warm-up
    release runs first; when the pool was not warm yet it pays the boot, which is
    then reported in ``warmup`` (else ``boot_seconds`` says what the pool's boot cost).
    """
    from gate.signing import generate_key

    work.mkdir(parents=True, exist_ok=True)
    key = work / "release.key"
    generate_key(key, work / "release.pub")
    total = 1 + verdicts + stream
    runs = [candidate(run, work / "runs" / f"c{i}", i) for i in range(total)]
    results: dict[str, Any] = {"concurrency": concurrency, "source_run": str(run)}
    t0 = time.monotonic()
    warmup = release(runs[0], contract, base, work, key, "warmup")
    results["warmup"] = {**warmup, "wall_s": round(time.monotonic() - t0, 1)}
    progress(f"warm-up release: {warmup['seconds']}s released={warmup['released']} {warmup['reason'] or ''}")
    timed = []
    for i in range(verdicts):
        row = release(runs[1 + i], contract, base, work, key, f"v{i}")
        timed.append(row)
        progress(f"verdict {i}: {row['seconds']}s released={row['released']} {row['gates']}")
    if timed:
        seconds = [r["seconds"] for r in timed]
        gates = sorted({g for r in timed for g in r["gates"]})
        results["time_to_verdict_s"] = {
            **_spread(seconds),
            "n": len(timed),
            "all_released": all(r["released"] for r in timed),
            "per_gate_median_s": {
                g: round(statistics.median(r["gates"][g] for r in timed if r["gates"].get(g) is not None), 3)
                for g in gates
                if any(r["gates"].get(g) is not None for r in timed)
            },
            "releases": timed,
        }
    if stream:
        t1 = time.monotonic()
        with ThreadPoolExecutor(max_workers=concurrency) as ex:
            rows = list(
                ex.map(
                    lambda ir: release(ir[1], contract, base, work, key, f"s{ir[0]}"),
                    enumerate(runs[1 + verdicts :]),
                )
            )
        wall = time.monotonic() - t1
        with_verdict = sum(1 for r in rows if r["verdict"] is not None)
        results["adapters_per_gpu_hour"] = {
            "value": round(len(rows) / wall * 3600, 1),
            "adapters": len(rows),
            "wall_s": round(wall, 1),
            "with_verdict": with_verdict,
            "released": sum(1 for r in rows if r["released"]),
            "release_seconds": _spread([r["seconds"] for r in rows]),
            "not_released": {r["tag"]: r["reason"] for r in rows if not r["released"]},
        }
        if boot_seconds is not None:
            # An hour of a GPU that boots its pool once: the boot is paid before the stream.
            results["adapters_per_gpu_hour"]["value_with_one_boot"] = round(
                len(rows) / (wall + boot_seconds) * 3600, 1
            )
            results["adapters_per_gpu_hour"]["boot_s"] = boot_seconds
        progress(f"stream: {len(rows)} in {wall:.1f}s, {with_verdict} with a verdict")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", type=Path, required=True, help="a trained run directory (adapter/ + run.json)"
    )
    parser.add_argument("--contract", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument(
        "--verdicts", type=int, default=10, help="sequential releases timed (median of these)"
    )
    parser.add_argument("--stream", type=int, default=50, help="distinct candidates in the concurrent stream")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "gpu" / "throughput-h200.json")
    args = parser.parse_args()

    from gate.contract import Contract
    from gate.envs import has_cuda
    from gate.gates import install_pools
    from gate.serving import PoolSet

    contract = Contract.from_yaml(args.contract)
    results: dict[str, Any] = {"host": platform.node(), "cuda": has_cuda(), "contract": contract.name}
    with tempfile.TemporaryDirectory(prefix="gate-throughput-") as tmp:
        pools = PoolSet(log_dir=Path(tmp) / "pools", announce=False)
        install_pools(pools)
        try:
            results.update(
                measure(
                    args.run,
                    args.contract,
                    args.base,
                    Path(tmp),
                    verdicts=args.verdicts,
                    stream=args.stream,
                    concurrency=args.concurrency,
                )
            )
            results["pool"] = pool_summary(pools)
        finally:
            install_pools(None)
            pools.close()
    atomic_write_json(args.out, results)
    print(json.dumps({k: v for k, v in results.items() if k not in ("warmup", "time_to_verdict_s")})[:4000])
    return 0


def pool_summary(pools: Any) -> dict[str, Any]:
    """Boots, restarts, canary failures and the served vLLM version of the (single) warm pool."""
    pool = next(iter(pools._pools.values()), None)
    if pool is None:
        return {"boots": 0}
    boots = [e for e in pool.events if e["event"] == "boot"]
    version = None
    for slot in list(pool._slots.values()):
        try:
            version = slot.server.version()
        except Exception as e:  # the version is a report field; a dead server says why
            version = f"unknown ({type(e).__name__})"
    return {
        "boots": pool.boots,
        "restarts": pool.restarts,
        "boot_seconds": [e["seconds"] for e in boots],
        "canary_failures": [e for e in pool.events if e["event"] == "canary_failed"],
        "hot_loads": sum(1 for e in pool.events if e["event"] == "hot_load"),
        "vllm_version": version,
    }


if __name__ == "__main__":
    sys.exit(main())
