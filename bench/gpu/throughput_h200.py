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
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gate.console import atomic_write_json  # noqa: E402

#: Tokenizer files a candidate takes from the base it is gated against (see :func:`candidate`).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def candidate(run: Path, out: Path, index: int, base: Path | None = None) -> Path:
    """A copy of ``run`` with one weight changed in its lowest bits (its own digest); run.json matches.

    With ``base``, the adapter's tokenizer files are the base's: a run trained on another host
    carries that host's serialization of the same tokenizer (on the H200 host transformers 5.17
    writes another tokenizer.json than the CPU build; the v2 base identity is equal), and an
    export against this base writes this base's files.
    """
    from gate.safetensors_io import read_header

    shutil.copytree(run, out, symlinks=False, ignore=shutil.ignore_patterns("gates"))
    record = json.loads((out / "run.json").read_text())
    files = record["adapter"]["files"]
    if base is not None:
        for name in TOKENIZER_FILES:
            if name in files and (base / name).is_file():
                raw = (base / name).read_bytes()
                (out / "adapter" / name).write_bytes(raw)
                files[name] = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    weights = out / "adapter" / "adapter_model.safetensors"
    header = read_header(weights)
    name = sorted(n for n in header.tensors if "lora_B" in n)[0]
    info = header.tensors[name]
    data = bytearray(weights.read_bytes())
    # The low byte of the first element (little-endian): a different adapter, the same behaviour.
    start = header.data_start + info.data_offsets[0]
    data[start] ^= 1 + (index % 250)
    weights.write_bytes(bytes(data))
    files["adapter_model.safetensors"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    record["adapter"]["size_bytes"] = sum(int(f["size"]) for f in files.values())
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
            "traceback": traceback.format_exc()[-3000:],
            "gates": {},
            "seconds": round(time.monotonic() - started, 3),
        }
    seconds = round(time.monotonic() - started, 3)
    gates = {g.name: g.seconds for g in result.verdict.gates}
    return {
        "tag": tag,
        "released": result.passed,
        "verdict": "passed" if result.verdict.passed else "failed",
        "stopped_at": result.stopped_at,
        "reason": result.reason,
        "gates": gates,
        # Everything outside the three gates: run.json checks, bundle, sign, publish.
        "other_s": round(seconds - sum(v for v in gates.values() if v is not None), 3),
        "seconds": seconds,
    }


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
    }


def _concurrently(
    runs: list[Path], contract: Path, base: Path, work: Path, key: Path, prefix: str, threads: int
) -> tuple[list[dict[str, Any]], float]:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as ex:
        rows = list(
            ex.map(lambda ir: release(ir[1], contract, base, work, key, f"{prefix}{ir[0]}"), enumerate(runs))
        )
    return rows, time.monotonic() - started


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
    save: Any = None,
) -> dict[str, Any]:
    """Time to verdict (``verdicts`` sequential releases) and a concurrent stream of ``stream`` candidates.

    The caller installs the warm pools (:func:`gate.gates.install_pools`). A warm-up
    release runs first; when the pool was not warm yet it pays the boot, which is
    then reported in ``warmup`` (else ``boot_seconds`` says what the pool's boot cost).
    Before the stream, ``concurrency`` candidates are released at once (untimed, reported
    as ``stream_warmup``): each concurrent candidate's warm lm-eval process starts there,
    so the stream measures a warm pool's steady state. ``save(results)`` is called after
    each phase (a session cut short keeps what it measured).
    """
    save = save or (lambda results: None)
    from gate.signing import generate_key

    work.mkdir(parents=True, exist_ok=True)
    key = work / "release.key"
    generate_key(key, work / "release.pub")
    total = 1 + verdicts + (concurrency if stream else 0) + stream
    runs = [candidate(run, work / "runs" / f"c{i}", i, base) for i in range(total)]
    results: dict[str, Any] = {"concurrency": concurrency, "source_run": str(run), "candidates": total}
    t0 = time.monotonic()
    warmup = release(runs[0], contract, base, work, key, "warmup")
    results["warmup"] = {**warmup, "wall_s": round(time.monotonic() - t0, 1)}
    progress(f"warm-up release: {warmup['seconds']}s released={warmup['released']} {warmup['reason'] or ''}")
    save(results)
    timed = []
    for i in range(verdicts):
        row = release(runs[1 + i], contract, base, work, key, f"v{i}")
        timed.append(row)
        progress(
            f"verdict {i}: {row['seconds']}s released={row['released']} {row['gates']}"
            f" other {row.get('other_s')}"
        )
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
            "other_median_s": round(statistics.median(r.get("other_s") or 0.0 for r in timed), 3),
            "releases": timed,
        }
        save(results)
    if stream:
        first = 1 + verdicts
        rows, wall = _concurrently(
            runs[first : first + concurrency], contract, base, work, key, "w", concurrency
        )
        results["stream_warmup"] = {
            "adapters": len(rows),
            "wall_s": round(wall, 1),
            "with_verdict": sum(1 for r in rows if r["verdict"] is not None),
            "released": sum(1 for r in rows if r["released"]),
            "release_seconds": _spread([r["seconds"] for r in rows]),
            "not_released": {
                r["tag"]: {k: r.get(k) for k in ("stopped_at", "reason", "gates", "traceback")}
                for r in rows
                if not r["released"]
            },
        }
        progress(f"stream warm-up: {len(rows)} at once in {wall:.1f}s")
        save(results)
        rows, wall = _concurrently(runs[first + concurrency :], contract, base, work, key, "s", concurrency)
        with_verdict = sum(1 for r in rows if r["verdict"] is not None)
        gates = sorted({g for r in rows for g in r["gates"]})
        results["adapters_per_gpu_hour"] = {
            "value": round(len(rows) / wall * 3600, 1),
            "measured": True,
            "adapters": len(rows),
            "distinct_digests": len(
                {hashlib.sha256(_weights(r).read_bytes()).hexdigest() for r in runs[first + concurrency :]}
            ),
            "wall_s": round(wall, 1),
            "with_verdict": with_verdict,
            "released": sum(1 for r in rows if r["released"]),
            "release_seconds": _spread([r["seconds"] for r in rows]),
            "per_gate_median_s": {
                g: round(statistics.median(r["gates"][g] for r in rows if r["gates"].get(g) is not None), 3)
                for g in gates
                if any(r["gates"].get(g) is not None for r in rows)
            },
            "not_released": {
                r["tag"]: {k: r.get(k) for k in ("stopped_at", "reason", "gates", "traceback")}
                for r in rows
                if not r["released"]
            },
            # Each release's wall time and gates: which ones a restart or a slow gate held up.
            "releases": [{k: r.get(k) for k in ("tag", "verdict", "seconds", "gates")} for r in rows],
        }
        if boot_seconds is not None:
            # An hour of a GPU that boots its pool once: the boot is paid before the stream.
            results["adapters_per_gpu_hour"]["value_with_one_boot"] = round(
                len(rows) / (wall + boot_seconds) * 3600, 1
            )
            results["adapters_per_gpu_hour"]["boot_s"] = boot_seconds
        progress(f"stream: {len(rows)} in {wall:.1f}s, {with_verdict} with a verdict")
    return results


def _weights(run: Path) -> Path:
    return run / "adapter" / "adapter_model.safetensors"


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
    parser.add_argument("--work", type=Path, default=None, help="keep candidates and logs here")
    args = parser.parse_args()

    from gate.contract import Contract
    from gate.envs import has_cuda
    from gate.gates import install_pools
    from gate.serving import PoolSet

    contract = Contract.from_yaml(args.contract)
    results: dict[str, Any] = {"host": platform.node(), "cuda": has_cuda(), "contract": contract.name}
    with tempfile.TemporaryDirectory(prefix="gate-throughput-") as scratch:
        tmp = str(args.work) if args.work is not None else scratch
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
