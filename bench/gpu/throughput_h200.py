"""Gate throughput on one warm pool: time to verdict and adapters gated per GPU-hour (H200 or CPU).

Everything goes through the release pipeline (``run_release``: check, smoke, eval,
sign, publish to an OCI layout) with the process's warm pools installed, as a
``gate serve`` worker runs it:

* ``time_to_verdict_s``: N distinct candidates released one after another on the
  warm pool (the boot is paid before the first timed release); the median and
  the spread of the wall time of each release, from request to published.
* ``adapters_per_gpu_hour``: a stream of M distinct candidates released
  concurrently (``--concurrency``, at most ``serving.max_loras`` gate in the server
  at once); ``M / wall * 3600``, and every candidate's verdict.

Candidates are copies of one trained run (``--run``) with one weight nudged, so
each has its own digest and is hot-loaded under its own name.

    python bench/gpu/throughput_h200.py --run RUN_DIR --contract C --base DIR \\
        [--verdicts 10] [--stream 50] [--concurrency 4] [--out bench/gpu/throughput-h200.json]
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
    """A copy of ``run`` with one weight nudged (its own digest); run.json updated to match the bytes."""
    from gate.safetensors_io import read_header

    shutil.copytree(run, out, symlinks=False)
    weights = out / "adapter" / "adapter_model.safetensors"
    header = read_header(weights)
    name = sorted(n for n in header.tensors if "lora_B" in n)[0]
    info = header.tensors[name]
    data = bytearray(weights.read_bytes())
    # Flip the lowest mantissa bit of the first element: a different adapter, the same behaviour.
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
    """One release of ``run`` to an OCI layout under ``work``; its verdict and wall time."""
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
    result = run_release(request)
    return {
        "tag": tag,
        "released": result.passed,
        "stopped_at": result.stopped_at,
        "reason": result.reason,
        "gates": {g.name: g.seconds for g in result.verdict.gates},
        "seconds": round(time.monotonic() - started, 3),
    }


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
    from gate.signing import generate_key

    contract = Contract.from_yaml(args.contract)
    results: dict[str, Any] = {
        "host": platform.node(),
        "cuda": has_cuda(),
        "contract": contract.name,
        "concurrency": args.concurrency,
    }
    with tempfile.TemporaryDirectory(prefix="gate-throughput-") as tmp:
        work = Path(tmp)
        key = work / "release.key"
        generate_key(key, work / "release.pub")
        total = 1 + args.verdicts + args.stream
        runs = [candidate(args.run, work / "runs" / f"c{i}", i) for i in range(total)]
        pools = PoolSet(log_dir=work / "pools", announce=False)
        install_pools(pools)
        try:
            t0 = time.monotonic()
            warmup = release(runs[0], args.contract, args.base, work, key, "warmup")
            results["warmup"] = {
                **warmup,
                "pool_boot_included": True,
                "wall_s": round(time.monotonic() - t0, 1),
            }
            print(
                f"warm-up release (boot included): {warmup['seconds']}s released={warmup['released']}",
                flush=True,
            )
            timed = []
            for i in range(args.verdicts):
                row = release(runs[1 + i], args.contract, args.base, work, key, f"v{i}")
                timed.append(row)
                print(f"verdict {i}: {row['seconds']}s released={row['released']} {row['gates']}", flush=True)
            seconds = [r["seconds"] for r in timed]
            results["time_to_verdict_s"] = {
                "median": round(statistics.median(seconds), 3),
                "min": min(seconds),
                "max": max(seconds),
                "n": len(seconds),
                "all_released": all(r["released"] for r in timed),
                "releases": timed,
            }
            stream = runs[1 + args.verdicts :]
            t1 = time.monotonic()
            with ThreadPoolExecutor(max_workers=args.concurrency) as ex:
                rows = list(
                    ex.map(
                        lambda ir: release(ir[1], args.contract, args.base, work, key, f"s{ir[0]}"),
                        enumerate(stream),
                    )
                )
            wall = time.monotonic() - t1
            results["adapters_per_gpu_hour"] = {
                "value": round(len(rows) / wall * 3600, 1),
                "adapters": len(rows),
                "wall_s": round(wall, 1),
                "with_verdict": sum(1 for r in rows if r["stopped_at"] is not None or r["released"]),
                "released": sum(1 for r in rows if r["released"]),
                "stopped": {r["tag"]: r["reason"] for r in rows if not r["released"]},
            }
            pool = next(iter(pools._pools.values()), None)
            results["pool"] = {
                "boots": pool.boots if pool else 0,
                "restarts": pool.restarts if pool else 0,
                "events": len(pool.events) if pool else 0,
            }
            server = pool.server(args.base.resolve()) if pool else None
            results["vllm_version"] = server.version() if server else None
        finally:
            install_pools(None)
            pools.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, results)
    summary = {k: v for k, v in results.items() if k not in ("warmup",)}
    summary["time_to_verdict_s"] = {k: v for k, v in results["time_to_verdict_s"].items() if k != "releases"}
    print(json.dumps(summary, indent=2)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
