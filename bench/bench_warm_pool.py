"""Gating N adapters: a fresh vLLM server per adapter (cold) against one warm server (hot-load).

Both modes run, in the same process and on the same machine, the serving part
of the smoke gate for each adapter: get a server whose base answers the canary,
hot-load the adapter (POST /v1/load_lora_adapter), ask every contract smoke
prompt through /v1/chat/completions, unload. The transformers + PEFT parity
reference is left out: it costs the same in both modes.

- ``cold``: ``VLLMServer.start`` for each adapter, canary baseline, the probes, stop.
- ``warm``: one ``WarmPool``; the boot is paid once, each adapter is canary-checked
  before and after (as ``WarmPool.smoke`` does).

    python bench/bench_warm_pool.py [--n 3]

Writes bench/results/warm_pool.json (with the cold/warm ratio) and prints a summary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gate.base_model import cached_smollm2  # noqa: E402
from gate.console import atomic_write_json  # noqa: E402
from gate.contract import Contract  # noqa: E402
from gate.envs import has_cuda  # noqa: E402
from gate.resources import default_contract  # noqa: E402
from gate.serving import Canary, VLLMServer, WarmPool  # noqa: E402
from tests.fixtures.serving import write_lora  # noqa: E402


def _probe(server: VLLMServer, contract: Contract, adapter: Path, name: str) -> dict[str, Any]:
    """Hot-load, ask every smoke prompt, unload; return the timings."""
    with server.client() as client:
        started = time.monotonic()
        load = client.load_adapter(name, str(adapter))
        if not load.ok:
            raise SystemExit(f"{adapter}: {load.message}")
        answers = []
        for prompt in contract.smoke.prompts:
            msgs = [{"role": m.role, "content": m.content} for m in prompt.messages]
            answers.append(client.chat(name, msgs, max_tokens=prompt.max_tokens).seconds)
        client.unload_adapter(name)
        return {
            "hot_load_s": round(load.seconds, 4),
            "chat_s": round(sum(answers), 2),
            "probe_s": round(time.monotonic() - started, 2),
        }


def cold(contract: Contract, base: Path, adapters: list[Path], logs: Path) -> dict[str, Any]:
    canary = Canary.from_contract(contract)
    rows = []
    started = time.monotonic()
    for i, adapter in enumerate(adapters):
        t0 = time.monotonic()
        with VLLMServer.start(base, contract, log_dir=logs / f"cold-{i}") as server:
            boot = time.monotonic() - t0
            with server.client() as client:
                canary.read(client, server.served_model)
            row = _probe(server, contract, adapter, f"cold-{i}")
        rows.append(
            {
                "adapter": adapter.name,
                "boot_s": round(boot, 2),
                **row,
                "total_s": round(time.monotonic() - t0, 2),
            }
        )
        print(f"  cold {i + 1}/{len(adapters)}: {rows[-1]}", flush=True)
    return {"total_s": round(time.monotonic() - started, 2), "adapters": rows}


def warm(contract: Contract, base: Path, adapters: list[Path], logs: Path) -> dict[str, Any]:
    rows = []
    started = time.monotonic()
    with WarmPool(contract, log_dir=logs / "warm") as pool:
        for i, adapter in enumerate(adapters):
            t0 = time.monotonic()
            server = pool.server(base)  # boot on first use, canary before each candidate
            acquire = time.monotonic() - t0
            row = _probe(server, contract, adapter, f"warm-{i}")
            after = pool.check(base)
            rows.append(
                {
                    "adapter": adapter.name,
                    "acquire_s": round(acquire, 2),
                    **row,
                    "canary_after_ok": after.ok,
                    "canary_after_s": round(after.seconds, 3),
                    "total_s": round(time.monotonic() - t0, 2),
                }
            )
            print(f"  warm {i + 1}/{len(adapters)}: {rows[-1]}", flush=True)
        events = list(pool.events)
    return {"total_s": round(time.monotonic() - started, 2), "adapters": rows, "events": events}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3, help="adapters to gate (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "warm_pool.json")
    args = parser.parse_args()
    contract = Contract.from_yaml(default_contract())
    base = cached_smollm2()
    with tempfile.TemporaryDirectory(prefix="gate-bench-pool-") as tmp:
        work = Path(tmp)
        adapters = [write_lora(work / f"adapter-{i}", seed=i) for i in range(args.n)]
        print(f"warm pool: {args.n} adapters, one server", flush=True)
        warm_result = warm(contract, base, adapters, work / "logs")
        print(f"cold: {args.n} adapters, one server each", flush=True)
        cold_result = cold(contract, base, adapters, work / "logs")
    ratio = cold_result["total_s"] / warm_result["total_s"]
    result = {
        "bench": "warm_pool",
        "n_adapters": args.n,
        "device": "cuda" if has_cuda() else "cpu",
        "cold": cold_result,
        "warm": warm_result,
        "ratio_cold_over_warm": round(ratio, 2),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(args.out, result)
    print(
        f"gating {args.n} adapters: cold {cold_result['total_s']:.1f}s, warm {warm_result['total_s']:.1f}s "
        f"-> warm pool is {ratio:.1f}x faster\nwrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
