"""`gate check` on a ~100 MB adapter against loading the same adapter with safetensors + torch.

The adapter is real PEFT layout for the SmolLM2 base (rank 80 on all seven
projections of all 30 layers, float32: 420 tensors, about 98 MB), built with
numpy + safetensors. Measured in the same run, page cache warm for all:

- ``check``: ``run_check`` in-process (every rule: headers, tokenizer, template, one streamed NaN/Inf pass);
- ``check_cli``: ``gate check --json`` as a fresh process (interpreter start and imports included);
- ``torch_load``: ``safetensors.torch.load_file`` in the ``base`` environment (torch 2.13 CPU), timed
  inside that process after torch is imported; ``torch_load_nan``: the same plus ``torch.isfinite`` over
  every tensor (what a loader-based NaN check would cost).

    python bench/bench_check.py [--rank 80] [--repeat 5]

Writes bench/results/check.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gate.base_model import base_env_spec, cached_smollm2  # noqa: E402
from gate.check import run_check  # noqa: E402
from gate.console import atomic_write_json  # noqa: E402
from gate.contract import Contract  # noqa: E402
from gate.envs import ensure  # noqa: E402
from gate.resources import default_contract  # noqa: E402
from gate.safetensors_io import read_header, scan_nonfinite  # noqa: E402
from tests.fixtures.adapters import ALL_TARGETS, write_adapter  # noqa: E402

_TORCH_LOAD = r"""
import json, sys, time
import torch
from safetensors.torch import load_file
torch.set_num_threads(1)  # numpy's scan is single-threaded too; and 2 shared cores oversubscribe badly
path = sys.argv[1]
times, nan_times = [], []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); tensors = load_file(path); times.append(time.perf_counter() - t)
    t = time.perf_counter(); tensors = load_file(path)
    bad = sum(int((~torch.isfinite(v)).sum()) for v in tensors.values())
    nan_times.append(time.perf_counter() - t)
print(json.dumps({"load": times, "load_nan": nan_times, "tensors": len(tensors), "nonfinite": bad}))
"""


def _median(fn: object, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    base = cached_smollm2()
    shipped = Contract.from_yaml(default_contract())
    # a server with --max-lora-rank 128 serves rank 80: the contract the bench adapter is released under
    contract = shipped.model_copy(
        update={"serving": shipped.serving.model_copy(update={"max_lora_rank": 128})}
    )
    with tempfile.TemporaryDirectory(prefix="gate-bench-check-") as tmp:
        adapter = write_adapter(Path(tmp) / "adapter", base_dir=base, rank=args.rank, targets=ALL_TARGETS)
        weights = adapter / "adapter_model.safetensors"
        size = weights.stat().st_size
        n_tensors = len(read_header(weights).tensors)
        report = run_check(adapter, contract, base)  # warms the page cache like the others
        assert report.passed, [f.to_dict() for f in report.findings]

        check_s, check_all = _median(lambda: run_check(adapter, contract, base), args.repeat)
        check_nobase_s, _ = _median(lambda: run_check(adapter, contract), args.repeat)
        header_s, _ = _median(lambda: read_header(weights), args.repeat)
        scan_s, _ = _median(lambda: scan_nonfinite(weights), args.repeat)

        contract_file = Path(tmp) / "rank128.yaml"
        contract_file.write_text(
            default_contract().read_text().replace("max_lora_rank: 16", "max_lora_rank: 128")
        )
        (Path(tmp) / "smollm2-chat.jinja").write_bytes(
            (default_contract().parent / "smollm2-chat.jinja").read_bytes()
        )
        cli = [
            sys.executable,
            "-m",
            "gate",
            "check",
            str(adapter),
            "--contract",
            str(contract_file),
            "--json",
        ]

        def run_cli() -> None:
            done = subprocess.run([*cli, "--base", str(base)], capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr

        cli_runs = max(3, args.repeat // 2)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_s, _ = _median(run_cli, cli_runs)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds per process: less sensitive than wall time to other jobs on a shared machine
        cli_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / cli_runs

        env = ensure(base_env_spec(), quiet=True)
        done = subprocess.run(
            [str(env.python), "-c", _TORCH_LOAD, str(weights), str(args.repeat)],
            capture_output=True,
            text=True,
            check=True,
        )
        torch = json.loads(done.stdout.strip().splitlines()[-1])
        torch_s = statistics.median(torch["load"])
        torch_nan_s = statistics.median(torch["load_nan"])

    result = {
        "adapter": {"rank": args.rank, "targets": list(ALL_TARGETS), "tensors": n_tensors, "bytes": size},
        "seconds": {
            "check": round(check_s, 4),
            "check_runs": [round(t, 4) for t in check_all],
            "check_without_base": round(check_nobase_s, 4),
            "check_cli_process": round(cli_s, 4),
            "check_cli_process_cpu": round(cli_cpu, 4),
            "header_only": round(header_s, 5),
            "nan_scan": round(scan_s, 4),
            "torch_load": round(torch_s, 4),
            "torch_load_and_isfinite": round(torch_nan_s, 4),
        },
        "ratios": {
            "torch_load_over_check": round(torch_s / check_s, 2),
            "torch_load_and_isfinite_over_check": round(torch_nan_s / check_s, 2),
            "nan_scan_mb_per_s": round(size / scan_s / 1e6, 1),
        },
        "repeat": args.repeat,
        "load_average": os.getloadavg(),
        "note": "page cache warm for every measurement; medians; torch timed after its import",
    }
    atomic_write_json(ROOT / "bench" / "results" / "check.json", result)
    s = result["seconds"]
    print(
        f"gate check on a {size / 1e6:.0f} MB adapter ({n_tensors} tensors, rank {args.rank}):\n"
        f"  run_check {s['check']:.3f} s (without --base {s['check_without_base']:.3f} s; "
        f"headers {s['header_only'] * 1000:.1f} ms, NaN scan {s['nan_scan']:.3f} s = "
        f"{result['ratios']['nan_scan_mb_per_s']} MB/s)\n"
        f"  gate check CLI process {s['check_cli_process']:.3f} s wall, "
        f"{s['check_cli_process_cpu']:.3f} s CPU\n"
        f"  safetensors+torch load {s['torch_load']:.3f} s "
        f"({result['ratios']['torch_load_over_check']}x check); "
        f"load + isfinite {s['torch_load_and_isfinite']:.3f} s "
        f"({result['ratios']['torch_load_and_isfinite_over_check']}x)\n"
        f"  wrote bench/results/check.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
